"""A child model whose default manager hides rows (soft deletes, the usual
case), in a throwaway project. The triggers count every row of the table,
as Django's own ``annotate(Count("books"))`` does: a join never goes
through a manager. ``annotate_live()`` of a model with rules over two
relations reads each through a subquery, which took the default manager
and left the hidden rows out (3 books live against 5 stored)."""

from __future__ import annotations

import pytest

from tests.conftest import assert_project_exact, migrate_and_run, throwaway_project

DATABASE = "dbrules_managers"

MODELS = '''
from django.db import models
from django.db.models import Count, Sum
import dbrules

class VisibleManager(models.Manager):
    def get_queryset(self):
        return super().get_queryset().filter(hidden=False)

class Author(models.Model):
    name = models.CharField(max_length=50)
    num_books = models.IntegerField(default=0)
    total_pages = models.IntegerField(default=0)
    num_reviews = models.IntegerField(default=0)
    class Meta:
        rules = [
            dbrules.Derived("num_books", Count("books")),
            dbrules.Derived("total_pages", Sum("books__pages")),
            dbrules.Derived("num_reviews", Count("reviews")),
        ]

class Book(models.Model):
    author = models.ForeignKey(Author, related_name="books", on_delete=models.CASCADE)
    pages = models.IntegerField(default=0)
    hidden = models.BooleanField(default=False)
    objects = VisibleManager()

class Review(models.Model):
    author = models.ForeignKey(Author, related_name="reviews", on_delete=models.CASCADE)
    hidden = models.BooleanField(default=False)
    objects = VisibleManager()
'''

SCRIPT = '''
import django; django.setup()
from django.db.models import Count, Sum
import dbrules
from shop.models import Author, Book, Review

ann = Author.objects.create(name="Ann")
Book.objects.bulk_create([Book(author=ann, pages=10 * i, hidden=i < 2) for i in range(5)])
Review.objects.bulk_create([Review(author=ann, hidden=i == 0) for i in range(3)])
live = dbrules.annotate_live(Author.objects.all()).get()
django_counts = Author.objects.annotate(b=Count("books", distinct=True), r=Count("reviews", distinct=True)).get()
print(live.num_books, live.num_books_live, django_counts.b, live.total_pages, live.total_pages_live)
print(live.num_reviews, live.num_reviews_live, django_counts.r)
'''


@pytest.fixture
def project(tmp_path, django_db_blocker):
    with django_db_blocker.unblock(), throwaway_project(tmp_path, DATABASE, MODELS):
        yield tmp_path


def test_rows_a_default_manager_hides_are_counted_like_a_join_counts_them(project):
    assert migrate_and_run(project, SCRIPT) == [*"5 5 5 100 100".split(), *"3 3 3".split()]
    assert_project_exact(project, rules=3)
