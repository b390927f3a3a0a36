"""dbrules.repair(): every drifted value back to its annotate() value.

Aggregate-only repairs group the children first; the others use the
annotate_live() form. Both must land on exactly what the oracle computes,
including parents with no children, NULL sums and extremes, NULL foreign keys
and a filter on the parent rows.
"""

from __future__ import annotations

import datetime
import threading
import time
from decimal import Decimal

import psycopg
import pytest
from django.db import connection
from django.db.models import Q

import dbrules
from tests.bookstore.models import Author, Book, Loan, Publisher, Reader, Tag
from tests.conftest import assert_exact, outside_conninfo, stored_and_live

pytestmark = pytest.mark.django_db

AGGREGATES = ["num_books", "num_published", "total_pages", "last_published", "shortest_book", "priced_total"]


@pytest.fixture
def store() -> list[Author]:
    big, small = Publisher.objects.create(name="Big"), Publisher.objects.create(name="Small")
    Publisher.objects.create(name="Empty")
    authors = [
        Author.objects.create(name=f"A{i}", email=f"A{i}@X", publisher=[big, small, None][i % 3])
        for i in range(8)
    ]
    tags = [Tag.objects.create(name=str(i)) for i in range(4)]
    books = []
    for i, author in enumerate(authors[:6]):  # the last two authors have no books
        for j in range(i + 1):
            books.append(
                Book.objects.create(
                    author=author,
                    title=f"B{i}.{j}",
                    pages=100 * j + i,
                    price=None if j % 2 else Decimal("9.50") * j,
                    published=j % 2 == 0,
                    published_on=datetime.date(2020, 1, 1) + datetime.timedelta(days=i * 10 + j) if j % 3 else None,
                )
            )
    for i, book in enumerate(books):
        book.tags.set(tags[: i % 4])
    readers = [Reader.objects.create(name=str(i)) for i in range(3)]
    for i, book in enumerate(books[:9]):
        Loan.objects.create(reader=readers[i % 2], book=book, returned=i % 3 == 0)
    return authors


def corrupt(model, **values) -> None:
    """Write wrong values straight into derived columns, past the guard."""
    assignments = ", ".join(f'"{model._meta.get_field(f).column}" = %s' for f in values)
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('dbrules.repairing', 'on', true)")
        cursor.execute(f'UPDATE "{model._meta.db_table}" SET {assignments}', list(values.values()))
        cursor.execute("SELECT set_config('dbrules.repairing', 'off', true)")


def wrong_values(model, fields=None) -> int:
    return sum(1 for _, f, s, v in stored_and_live(model) if s != v and (fields is None or f in fields))


def test_aggregate_repair_restores_every_value_including_empty_parents(store):
    corrupt(
        Author,
        num_books=99, num_published=99, total_pages=-1,
        last_published=datetime.date(1999, 1, 1), shortest_book=-5, priced_total=Decimal("-1"),
    )
    expected = wrong_values(Author, AGGREGATES)
    assert expected >= 8 * 5  # every author, nearly every column

    assert dbrules.repair(Author, AGGREGATES, dry_run=True) == expected
    assert wrong_values(Author, AGGREGATES) == expected  # the dry run wrote nothing
    assert dbrules.repair(Author, AGGREGATES) == expected
    assert dbrules.repair(Author, AGGREGATES) == 0  # idempotent
    assert_exact(Author, Publisher)


def test_repair_without_a_staging_table_runs_as_one_statement(store):
    """Repair stages the drifted rows in a temporary table (its query can run
    in parallel there); when that table cannot be created -- here because
    one already exists, as for a role without TEMP it would fail -- the same
    repair runs as one UPDATE, in the same transaction."""
    corrupt(Author, num_books=7, total_pages=7)
    expected = wrong_values(Author, ["num_books", "total_pages"])
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE dbrules_repair (pk bigint)")
        try:
            assert dbrules.repair(Author, ["num_books", "total_pages"]) == expected
            cursor.execute("SELECT count(*) FROM pg_temp.dbrules_repair")  # left as it was
            assert cursor.fetchone()[0] == 0
        finally:
            cursor.execute("DROP TABLE pg_temp.dbrules_repair")
    assert dbrules.repair(Author, ["num_books", "total_pages"]) == 0
    assert_exact(Author, Publisher)


def test_repair_with_a_filter_touches_only_the_matching_parents(store):
    corrupt(Author, num_books=42, total_pages=42)
    chosen = [a.pk for a in store[:3]]
    dbrules.repair(Author, ["num_books", "total_pages"], where=Q(pk__in=chosen))
    fixed = {pk for pk, f, s, v in stored_and_live(Author) if f == "num_books" and s == v}
    assert fixed == set(chosen)
    dbrules.repair(Author, ["num_books", "total_pages"], where=Q(name__in=[a.name for a in store[3:]]))
    assert_exact(Author)


def test_repair_of_counts_over_many_to_many_and_nullable_foreign_keys(store):
    corrupt(Tag, num_books=7)
    corrupt(Reader, num_loans=7, num_open_loans=7)
    corrupt(Publisher, num_authors=7, total_books=7)
    corrupt(Book, num_tags=7)
    for model in (Tag, Reader, Publisher, Book):
        wrong = wrong_values(model)
        assert wrong > 0
        assert dbrules.repair(model) == wrong
    assert_exact(Tag, Reader, Publisher, Book, Author)


def test_repair_mixing_aggregates_and_row_rules(store):
    corrupt(Author, num_books=3, email="WRONG")
    wrong = wrong_values(Author)
    assert dbrules.repair(Author) == wrong
    assert_exact(Author, Publisher)


@pytest.mark.django_db(transaction=True)
def test_repair_keeps_a_delta_committed_while_it_waited(outside):
    """A writer holds a drifted parent's row lock (its trigger added +1) when
    repair reaches that parent, then commits. Repair must count the writer's
    book: it locks the parents before it reads any child, so its count is
    taken after the writer committed. (Reading the children and writing the
    parent in one statement would write the count from before the writer.)"""
    ann = Author.objects.create(name="Ann")
    Book.objects.bulk_create([Book(author=ann, title=f"t{i}") for i in range(2)])
    outside.execute("SELECT set_config('dbrules.repairing', 'on', false)")
    outside.execute(f"UPDATE {Author._meta.db_table} SET num_books = 99 WHERE id = %s", [ann.pk])
    outside.execute("SELECT set_config('dbrules.repairing', 'off', false)")

    with psycopg.connect(**outside_conninfo()) as writer:
        writer.execute(
            f"INSERT INTO {Book._meta.db_table} (author_id, title, pages, published, author_name, "
            "author_standing, title_key, label, size, weight_grams, num_tags) "
            "VALUES (%s, 'late', 1, false, '', '', '', '', '', 0, 0)",
            [ann.pk],
        )  # not committed: the trigger's update holds ann's row
        outcome: dict[str, object] = {}

        def run_repair() -> None:
            try:
                outcome["changed"] = dbrules.repair(Author, ["num_books"])
            except Exception as error:  # reported by the assertion below
                outcome["error"] = error
            finally:
                connection.close()

        repair = threading.Thread(target=run_repair)
        repair.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            waiting = outside.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND datname = current_database()"
            ).fetchone()[0]
            if waiting:
                break
            time.sleep(0.02)
        assert waiting, "repair never waited for the writer's row lock"
        writer.commit()
        repair.join(20)
    assert "error" not in outcome, outcome
    assert outcome["changed"] == 1
    assert Author.objects.get(pk=ann.pk).num_books == 3
    assert_exact(Author, Book)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "fields, where",
    [((), None), (("num_books",), None), ((), Q(name="Ann"))],
    ids=["every rule", "one field", "one parent"],
)
def test_repair_inside_a_deferred_transaction_drops_what_it_repaired(fields, where):
    """The repaired value includes the transaction's own writes; the deltas
    it parked for them must not be applied again at commit."""
    ann, bob = Author.objects.create(name="Ann"), Author.objects.create(name="Bob")
    with dbrules.deferred():
        Book.objects.create(author=ann, title="a", pages=5, published=True)
        Book.objects.create(author=bob, title="b", pages=7, published=True)
        dbrules.repair(Author, fields, where=where)
    assert_exact(Author)
