"""A copy's cascade and the dependents' statement triggers, in a throwaway
project: a cascade marks its UPDATE, and the count triggers and copy checks
that read nothing it changes return at once; those that read the copy, or a same-row
rule computed from it, still count. A statement that a trigger runs inside
the cascade's UPDATE is not taken for it."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_project_exact, migrate_and_run, throwaway_project

DATABASE = "dbrules_cascades"

MODELS = '''
from django.db import models
from django.db.models import Count, F, Q
from django.db.models.functions import Upper
import dbrules

class Author(models.Model):
    name = models.CharField(max_length=50)
    num_books = models.IntegerField(default=0)
    num_loud = models.IntegerField(default=0)
    class Meta:
        rules = [
            dbrules.Derived("num_books", Count("books")),
            # A filter on a same-row rule that reads the copy of this name.
            dbrules.Derived("num_loud", Count("books", filter=Q(books__shout__startswith="A"))),
        ]

class Series(models.Model):
    name = models.CharField(max_length=50)
    num_books = models.IntegerField(default=0)
    num_by_a = models.IntegerField(default=0)
    class Meta:
        rules = [
            dbrules.Derived("num_books", Count("books")),
            # A filter on a copy another cascade writes.
            dbrules.Derived("num_by_a", Count("books", filter=Q(books__author_name__startswith="a"))),
        ]

class Shelf(models.Model):
    """Counts nothing: the book's copy of its name has a check of its own."""
    name = models.CharField(max_length=50)

class Book(models.Model):
    author = models.ForeignKey(Author, related_name="books", on_delete=models.CASCADE)
    shelf = models.ForeignKey(Shelf, null=True, on_delete=models.SET_NULL)
    series = models.ForeignKey(Series, related_name="books", null=True, on_delete=models.SET_NULL)
    author_name = models.CharField(max_length=50, default="")
    shout = models.CharField(max_length=50, default="")
    series_name = models.CharField(max_length=50, default="")
    shelf_name = models.CharField(max_length=50, default="")
    class Meta:
        rules = [
            dbrules.Derived("author_name", F("author__name")),
            dbrules.Derived("shout", Upper("author_name")),
            dbrules.Derived("series_name", F("series__name")),
            dbrules.Derived("shelf_name", F("shelf__name")),
        ]
'''

SCRIPT = '''
import django; django.setup()
from django.db import connection
from django.db.models import Value
from django.db.models.functions import Concat
from shop.models import Author, Series, Shelf, Book
authors = Author.objects.bulk_create([Author(name=n) for n in ("ann", "bob", "abe")])
series = Series.objects.bulk_create([Series(name=n) for n in ("one", "two")])
shelves = Shelf.objects.bulk_create([Shelf(name=n) for n in ("top", "low")])
Book.objects.bulk_create([Book(author=authors[i % 3], series=series[i % 2], shelf=shelves[i // 6]) for i in range(12)])
with connection.cursor() as cur:
    # What the dependents' statement triggers see: the mark, and their
    # depth (named with their schema: they may run inside dbrules functions,
    # whose search_path is pinned).
    cur.execute("CREATE TABLE seen (mark text, depth int)")
    cur.execute("""CREATE FUNCTION spy() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
        INSERT INTO public.seen VALUES (coalesce(current_setting('dbrules.cascading', true), ''), pg_trigger_depth());
        RETURN NULL; END $$""")
    cur.execute("CREATE TRIGGER spy AFTER UPDATE ON shop_book FOR EACH STATEMENT EXECUTE FUNCTION spy()")
    # A trigger of the application's own that moves books while the
    # cascade's UPDATE runs, several in one statement (one-row statements
    # never skip): that statement fires deeper than the mark.
    cur.execute(f"""CREATE FUNCTION mover() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
        UPDATE public.shop_book SET author_id = {authors[1].pk} WHERE series_name = 'moving'; RETURN NULL; END $$""")
    cur.execute("""CREATE TRIGGER mover AFTER UPDATE OF series_name ON shop_book
        FOR EACH STATEMENT EXECUTE FUNCTION mover()""")
# Names that cross the filters: ann -> bea, bob -> al, abe -> abel.
Author.objects.filter(name="ann").update(name="bea")
Author.objects.filter(name__in=["bob", "abe"]).update(name=Concat("name", Value("!")))
with connection.cursor() as cur:
    cur.execute("UPDATE shop_author SET name = CASE name WHEN 'bob!' THEN 'al' WHEN 'abe!' THEN 'abel' ELSE name END")
    cur.execute("TRUNCATE seen")
Series.objects.filter(name="one").update(name="moving")
Series.objects.update(name=Concat("name", Value("+")))
Shelf.objects.update(name=Concat("name", Value("*")))
import json
from django.db.models import Count, Q
with connection.cursor() as cur:
    cur.execute("SELECT DISTINCT mark, depth FROM seen ORDER BY depth, mark")
    seen = cur.fetchall()
def stored(model, *fields):
    return [list(row) for row in model.objects.order_by("pk").values_list(*fields)]
def live(model, **expressions):
    return [list(row) for row in model.objects.order_by("pk").annotate(**{"live_" + k: v for k, v in expressions.items()}).values_list(*["live_" + k for k in expressions])]
print(json.dumps({
    "seen": seen,
    "authors": stored(Author, "num_books", "num_loud"),
    "authors_live": live(Author, n=Count("books"), loud=Count("books", filter=Q(books__shout__startswith="A"))),
    "series": stored(Series, "num_books", "num_by_a"),
    "series_live": live(Series, n=Count("books"), by_a=Count("books", filter=Q(books__author_name__startswith="a"))),
}, separators=(",", ":")))
'''


@pytest.fixture
def project(tmp_path, django_db_blocker):
    with django_db_blocker.unblock(), throwaway_project(tmp_path, DATABASE, MODELS):
        yield tmp_path


def test_marked_cascades_skip_only_triggers_that_read_nothing_they_change(project):
    result = json.loads(migrate_and_run(project, SCRIPT)[-1])
    # The series renames: each cascade marks its UPDATE of the books for the
    # depth its statement triggers fire at (2); the application's trigger
    # moves books in statements of their own, one level deeper, and the
    # author counts see those moves.
    mark = '"public"."shop_book"."series_name":2'
    # The shelf renames mark theirs too, for the check of the copies whose
    # first hop no count carries.
    shelf_mark = '"public"."shop_book"."shelf_name":2'
    assert result["seen"] == [[mark, 2], [shelf_mark, 2], [mark, 3]]
    # ann -> bea, bob -> al, abe -> abel; the six books of series one moved
    # to al. Shouted names starting with A: AL and ABEL.
    assert result["authors"] == result["authors_live"] == [[2, 0], [8, 8], [2, 2]]
    assert result["series"] == result["series_live"] == [[6, 6], [6, 4]]
    assert_project_exact(project, rules=8)
