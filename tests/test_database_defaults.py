"""Defaults the database computes (Django 5.0's ``db_default``) on derived
columns, on copies and on the children's columns that rules read, with
the usual filters of a soft-deleting project, in a throwaway project.

A copy declared ``db_default`` stopped every process at start-up:
compiling its triggers tried to write the default's expression object into
SQL as a value. A copy whose ForeignKey is NULL now holds a literal
``db_default`` as it holds a ``default``."""

from __future__ import annotations

import django
import pytest

from tests.conftest import assert_project_exact, migrate_and_run, throwaway_project

pytestmark = pytest.mark.skipif(django.VERSION < (5, 0), reason="db_default arrived in Django 5.0")

DATABASE = "dbrules_database_defaults"

MODELS = '''
from django.db import models
from django.db.models import Count, F, Min, Q, Sum, Value
from django.db.models.functions import Cast, Concat, Lower, Now
import dbrules

class Author(models.Model):
    name = models.CharField(max_length=50)
    live_books = models.IntegerField(db_default=0)
    long_books = models.IntegerField(default=0)
    visible_pages = models.BigIntegerField(db_default=0)
    first_seen = models.DateTimeField(null=True)
    class Meta:
        rules = [
            dbrules.Derived("live_books", Count("books", filter=Q(books__deleted_at__isnull=True))),
            dbrules.Derived("long_books", Count("books", filter=Q(books__pages__gt=F("books__min_pages")))),
            dbrules.Derived(
                "visible_pages", Sum("books__pages", filter=Q(books__published=True) & ~Q(books__title=""))
            ),
            dbrules.Derived("first_seen", Min("books__created")),
        ]

class Book(models.Model):
    author = models.ForeignKey(Author, related_name="books", on_delete=models.CASCADE)
    editor = models.ForeignKey(Author, related_name="edited", null=True, on_delete=models.SET_NULL)
    title = models.CharField(max_length=50, db_default="")
    pages = models.IntegerField(db_default=10)
    min_pages = models.IntegerField(default=5)
    published = models.BooleanField(db_default=False)
    deleted_at = models.DateTimeField(null=True)
    created = models.DateTimeField(db_default=Now())
    label = models.CharField(max_length=120, db_default="")
    author_name = models.CharField(max_length=50, db_default="")
    editor_name = models.CharField(max_length=50, db_default="nobody")
    class Meta:
        rules = [
            dbrules.Derived("label", Concat(Lower("title"), Value("/"), Cast("min_pages", models.CharField()))),
            dbrules.Derived("author_name", F("author__name")),
            dbrules.Derived("editor_name", F("editor__name")),
        ]
'''

SCRIPT = '''
import django; django.setup()
from tests.project_script import exact as check, sql
from django.db import connection
from django.db.models import F
from django.utils import timezone
import dbrules
from shop.models import Author, Book

def exact(step):
    check(step, Author, Book)

ann, bob = Author.objects.create(name="Ann"), Author.objects.create(name="Bob")
Book.objects.create(author=ann)  # every default from the database
Book.objects.create(author=ann, editor=bob, title="T", pages=50, published=True)
Book.objects.bulk_create(
    [Book(author=bob, editor=ann, title=f"t{i}", pages=i, published=i % 2 == 0) for i in range(20)]
)
exact("created with database defaults")
Book.objects.filter(pages__lt=5).update(deleted_at=timezone.now())
Book.objects.filter(pages__gt=15).update(min_pages=F("pages") + 1)
exact("soft deletes, a filter comparing two columns")
sql("INSERT INTO shop_book (author_id, min_pages) VALUES (%s, 1)", [ann.pk])
sql("UPDATE shop_book SET created = now() - interval '1 year' WHERE pages = 10")
sql("UPDATE shop_book SET title = '' WHERE pages BETWEEN 18 AND 19")
exact("plain SQL leaving the defaults to the database")
Book.objects.filter(editor=ann, pages__lt=10).update(editor=None)
sql("UPDATE shop_book SET editor_id = NULL WHERE pages = 12")
bob.delete()
exact("editors set to NULL, an editor deleted")
print(sorted(set(Book.objects.filter(editor=None).values_list("editor_name", flat=True))))
print(*Author.objects.filter(pk=ann.pk).values_list("live_books", "visible_pages").get())
'''


@pytest.fixture
def project(tmp_path, django_db_blocker):
    with django_db_blocker.unblock(), throwaway_project(tmp_path, DATABASE, MODELS):
        yield tmp_path


def test_database_defaults_and_soft_delete_filters_stay_exact(project):
    # Ann keeps her three books (Bob's went with him); the one published
    # with a title has 50 pages.
    assert migrate_and_run(project, SCRIPT) == ["['nobody']", "3", "50"]
    assert_project_exact(project, rules=7)
