"""Rules deferred by declaration (``Derived(..., deferred=True)``), in a
throwaway project: their counts apply at commit, and the copies of their
parents -- folded into the count's trigger, or checked by a trigger of
their own -- are checked at commit too, against a source renamed while
the transaction was open, without locking the parent before then."""

from __future__ import annotations

import pytest

from tests.conftest import assert_project_exact, migrate_and_run, throwaway_project

DATABASE = "dbrules_deferred_rules"

MODELS = '''
from django.db import models
from django.db.models import Count, F
import dbrules

class Author(models.Model):
    name = models.CharField(max_length=50)
    num_books = models.IntegerField(default=0)
    class Meta:
        rules = [dbrules.Derived("num_books", Count("books"), deferred=True)]

class Book(models.Model):
    author = models.ForeignKey(Author, related_name="books", on_delete=models.CASCADE)
    author_name = models.CharField(max_length=50, default="")
    class Meta:
        rules = [dbrules.Derived("author_name", F("author__name"))]  # checked in the count's trigger

class Note(models.Model):
    author = models.ForeignKey(Author, related_name="notes", on_delete=models.CASCADE)
    author_name = models.CharField(max_length=50, default="")
    class Meta:
        rules = [dbrules.Derived("author_name", F("author__name"))]  # nothing counts notes
'''

SCRIPT = '''
import django; django.setup()
import psycopg
from django.db import connection, transaction
from shop.models import Author, Book, Note
ann = Author.objects.create(name="Ann")
info = {k: v for k, v in connection.get_connection_params().items() if k in {"dbname", "user", "host", "port"}}
with transaction.atomic():
    Book.objects.create(author=ann)
    Note.objects.create(author=ann)
    inside = Author.objects.get(pk=ann.pk).num_books  # applied at commit
    # No lock on the author before the commit: another program renames it.
    with psycopg.connect(**info, autocommit=True) as other:
        other.execute("UPDATE shop_author SET name = 'Anne' WHERE id = %s", [ann.pk])
    Book.objects.bulk_create([Book(author=ann), Book(author=ann)])
    Book.objects.filter(pk=Book.objects.order_by("pk").last().pk).update(author=Author.objects.create(name="Bo"))
print(inside, Author.objects.get(pk=ann.pk).num_books)
print(*sorted(set(Book.objects.values_list("author_name", flat=True))), *Note.objects.values_list("author_name", flat=True))
'''


@pytest.fixture
def project(tmp_path, django_db_blocker):
    with django_db_blocker.unblock(), throwaway_project(tmp_path, DATABASE, MODELS):
        yield tmp_path


def test_deferred_rules_apply_counts_and_check_copies_at_commit(project):
    # Inside the transaction the count is still 0; at commit Ann has two
    # books (the third moved to Bo). Every copy made before the rename
    # committed follows it: the first book's, in the count's trigger, and
    # the note's, in a trigger of its own.
    assert migrate_and_run(project, SCRIPT) == ["0", "2", "Anne", "Bo", "Anne"]
    assert_project_exact(project, rules=3)
