"""The generated migration applies, reverses and re-applies; nothing is left
to generate."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from tests.bookstore.models import Author, Book
from tests.conftest import assert_exact


def dbrules_objects() -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgtrigger_dbrules_%'")
        triggers = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE 'pgtrigger_dbrules_%'")
        functions = cursor.fetchone()[0]
    return triggers, functions


@pytest.mark.django_db
def test_makemigrations_has_nothing_to_add():
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_migration_reverses_and_reapplies():
    installed = dbrules_objects()
    assert installed[0] > 0 and installed[0] == installed[1]
    call_command("migrate", "bookstore", "zero", verbosity=0)
    assert dbrules_objects() == (0, 0)  # triggers and their functions are gone
    call_command("migrate", "bookstore", verbosity=0)
    assert dbrules_objects() == installed
    ann = Author.objects.create(name="Ann")
    Book.objects.bulk_create([Book(author=ann, title=str(i), published=True) for i in range(5)])
    assert Author.objects.get(pk=ann.pk).num_published == 5
    assert_exact(Author, Book)


@pytest.mark.django_db(transaction=True)
def test_every_trigger_and_function_names_its_rule():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT obj_description(t.oid, 'pg_trigger'), obj_description(p.oid, 'pg_proc') "
            "FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
            "WHERE t.tgname LIKE 'pgtrigger_dbrules_%'"
        )
        comments = cursor.fetchall()
    assert comments
    for trigger_comment, function_comment in comments:
        assert trigger_comment.startswith("dbrules: bookstore.")
        assert function_comment.startswith("dbrules: bookstore.")
    assert any("bookstore.Author.num_books = Count(books)" in c for c, _ in comments)
