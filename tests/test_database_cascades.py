"""Foreign keys whose actions run in the database, in a throwaway project:
``ON DELETE CASCADE``, ``ON DELETE SET NULL`` and ``ON UPDATE CASCADE``, as
a schema shared with other programs declares them (and Django 6's
``DB_CASCADE`` / ``DB_SET_NULL``). PostgreSQL carries these out in its own
AFTER row triggers on the parent, and the statement triggers of the
children they change fire after every row trigger of the parent's
statement, dbrules' included.

A parent whose key changes takes the values of the children that carry the
new key. Counted after the update, the children ``ON UPDATE CASCADE`` had
already moved were counted again when their statement trigger ran: twice.
The count is taken before the update instead, and the same-row rules that
read it (``standing``), copies of those, and sums of it on a grandparent
follow."""

from __future__ import annotations

import pytest

from tests.conftest import assert_project_exact, run_project, throwaway_project

DATABASE = "dbrules_database_cascades"

MODELS = '''
from django.db import models
from django.db.models import Case, Count, F, Max, Q, Sum, Value, When
import dbrules

class Publisher(models.Model):
    name = models.CharField(max_length=50)
    num_authors = models.IntegerField(default=0)
    total_books = models.IntegerField(default=0)
    class Meta:
        rules = [
            dbrules.Derived("num_authors", Count("authors")),
            dbrules.Derived("total_books", Sum("authors__num_books")),  # a chain
        ]

class Author(models.Model):
    publisher = models.ForeignKey(Publisher, related_name="authors", null=True, on_delete=models.SET_NULL)
    name = models.CharField(max_length=50)
    code = models.CharField(max_length=20, unique=True)
    num_books = models.IntegerField(default=0)
    num_edited = models.IntegerField(default=0)
    num_coded = models.IntegerField(default=0)
    total_pages = models.BigIntegerField(default=0)
    longest = models.IntegerField(null=True)
    standing = models.CharField(max_length=10, default="")
    class Meta:
        rules = [
            dbrules.Derived("num_books", Count("books")),
            dbrules.Derived("num_edited", Count("edited")),
            dbrules.Derived("num_coded", Count("coded")),  # through a to_field
            dbrules.Derived("total_pages", Sum("books__pages")),
            dbrules.Derived("longest", Max("books__pages")),
            dbrules.Derived("standing", Case(When(num_books__gte=12, then=Value("known")), default=Value("new"))),
        ]

class Book(models.Model):
    author = models.ForeignKey(Author, related_name="books", on_delete=models.CASCADE)
    editor = models.ForeignKey(Author, related_name="edited", null=True, on_delete=models.SET_NULL)
    by_code = models.ForeignKey(
        Author, to_field="code", related_name="coded", null=True, on_delete=models.SET_NULL, db_column="author_code"
    )
    pages = models.IntegerField(default=0)
    author_name = models.CharField(max_length=50, default="")
    author_standing = models.CharField(max_length=10, default="")
    editor_name = models.CharField(max_length=50, null=True)
    class Meta:
        rules = [
            dbrules.Derived("author_name", F("author__name")),
            dbrules.Derived("author_standing", F("author__standing")),
            dbrules.Derived("editor_name", F("editor__name")),
        ]
'''

# The foreign keys Django created, given actions the database carries out:
# a migration of its own, since Django adds foreign keys at the end of the
# migration that creates their tables.
DATABASE_ACTIONS = '''
from django.db import migrations

class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]
    operations = [migrations.RunSQL("""
DO $$
DECLARE
    fk record;
BEGIN
    FOR fk IN
        SELECT c.conname, c.conrelid::regclass AS child, a.attname AS column_name
          FROM pg_constraint AS c
          JOIN pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
         WHERE c.contype = 'f' AND c.conrelid::regclass::text IN ('shop_author', 'shop_book')
    LOOP
        EXECUTE format(
            'ALTER TABLE %s DROP CONSTRAINT %I, ADD CONSTRAINT %I FOREIGN KEY (%I) REFERENCES %s (%I) %s',
            fk.child, fk.conname, fk.conname, fk.column_name,
            CASE fk.column_name WHEN 'publisher_id' THEN 'shop_publisher' ELSE 'shop_author' END,
            CASE fk.column_name WHEN 'author_code' THEN 'code' ELSE 'id' END,
            CASE fk.column_name WHEN 'author_id' THEN 'ON DELETE CASCADE' ELSE 'ON DELETE SET NULL' END
            || ' ON UPDATE CASCADE'
        );
    END LOOP;
END
$$;
""")]
'''

SCRIPT = '''
import django; django.setup()
from tests.project_script import exact as check, sql
from django.db import connection
import dbrules
from shop.models import Author, Book, Publisher

def exact(step):
    check(step, Publisher, Author, Book)

pubs = Publisher.objects.bulk_create([Publisher(name=f"P{i}") for i in range(4)])
authors = Author.objects.bulk_create(
    [Author(publisher=pubs[i % 4], name=f"A{i}", code=f"c{i}") for i in range(30)]
)
Book.objects.bulk_create([
    Book(author=authors[i % 30], editor=authors[(i * 7) % 30], by_code=authors[(i * 3) % 30], pages=i)
    for i in range(600)
])
exact("setup")
sql("DELETE FROM shop_author WHERE id IN (1, 2, 3)")
exact("authors deleted: their books cascade, books they edited lose their editor")
sql("UPDATE shop_author SET id = id + 1000 WHERE id IN (4, 5)")
exact("authors renumbered: books follow them")
sql("UPDATE shop_author SET id = 2000 WHERE id = 6")
sql("UPDATE shop_author SET id = 6 WHERE id = 2000")
exact("renumbered and back")
sql("UPDATE shop_author SET code = code || 'x' WHERE id > 20")
exact("to_field keys changed: books follow by code")
sql("DELETE FROM shop_publisher WHERE id = 1")
exact("a publisher deleted: its authors lose it")
sql("UPDATE shop_publisher SET id = 77 WHERE id = 2")
exact("a publisher renumbered: its authors follow")
with dbrules.deferred():
    sql("DELETE FROM shop_author WHERE id IN (7, 8)")
    sql("UPDATE shop_author SET id = id + 3000 WHERE id IN (9, 10)")
    sql("UPDATE shop_publisher SET id = 78 WHERE id = 3")
exact("deferred: the same at commit")
Author.objects.filter(pk__in=[11, 12]).delete()
exact("ORM delete")
sql("UPDATE shop_book SET author_id = 13 WHERE author_id IN (14, 15)")
sql("UPDATE shop_author SET id = 4013 WHERE id = 13")
exact("a parent grown past the standing threshold, then renumbered")
print(
    Author.objects.get(pk=4013).num_books,
    Author.objects.get(pk=4013).standing,
    Book.objects.filter(author_id=4013, author_standing="known").count(),
)
'''


@pytest.fixture
def project(tmp_path, django_db_blocker):
    with django_db_blocker.unblock(), throwaway_project(tmp_path, DATABASE, MODELS):
        result = run_project(tmp_path, "-m", "django", "makemigrations", "shop")
        assert result.returncode == 0, result.stdout + result.stderr
        (tmp_path / "shop" / "migrations" / "0002_database_actions.py").write_text(DATABASE_ACTIONS)
        result = run_project(tmp_path, "-m", "django", "migrate")
        assert result.returncode == 0, result.stdout + result.stderr
        yield tmp_path


def test_database_side_foreign_key_actions_stay_exact(project):
    result = run_project(project, "-c", SCRIPT)
    assert result.returncode == 0, result.stderr
    # Author 13's own books, those of 14 and 15 moved to it: 20 each.
    assert result.stdout.split() == ["60", "known", "60"]
    assert_project_exact(project, rules=11)
