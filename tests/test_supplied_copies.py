"""Copies an INSERT supplies itself.

Django sends a copy's value when the instance holds its source in memory
(``ShelfItem(shelf=shelf)``), and any program may send one; then the BEFORE
INSERT row trigger does not look the source up, and the statement's copy
check compares every inserted copy with its source and rewrites the wrong
ones. Whatever was supplied -- right, stale, forged, or pointing at a parent
not committed yet -- the stored value ends equal to the annotate() oracle."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from django.db import transaction

import dbrules
from dbrules import registry
from tests.bookstore.models import Book, Loan, Shelf, ShelfItem
from tests.conftest import assert_exact, outside_conninfo, row_trigger_calls_during

pytestmark = pytest.mark.django_db(transaction=True)

SHELF, ITEM = Shelf._meta.db_table, ShelfItem._meta.db_table


def lookups_of_bulk_create(model, objs) -> int:
    """``bulk_create`` ``objs``; the calls of the model's BEFORE INSERT row
    trigger function it made (one per row it looked up)."""
    return row_trigger_calls_during(model, "row_ins", lambda: model.objects.bulk_create(objs))


def insert_condition(model) -> str:
    [item] = [
        c for c in registry.compiled()
        if c.model is model and c.trigger.name == f"dbrules_{model._meta.model_name}_row_ins"
    ]
    return item.trigger.condition.sql if item.trigger.condition else ""


def test_bulk_create_with_the_source_in_memory_sends_the_copy_and_skips_the_lookup():
    shelves = [Shelf.objects.create(name=f"Shelf {i}") for i in range(3)]
    items = [ShelfItem(shelf=shelves[i % 3]) for i in range(30)]
    assert lookups_of_bulk_create(ShelfItem, items) == 0
    assert [item.shelf_name for item in items] == [f"Shelf {i % 3}" for i in range(30)]
    assert_exact(Shelf, ShelfItem)


def test_bulk_create_by_key_alone_looks_each_source_up():
    shelf = Shelf.objects.create(name="Keys")
    items = [ShelfItem(shelf_id=shelf.pk) for _ in range(5)]
    assert lookups_of_bulk_create(ShelfItem, items) == 5
    assert [item.shelf_name for item in items] == ["Keys"] * 5  # read back by RETURNING
    assert_exact(Shelf, ShelfItem)


@pytest.mark.parametrize("rows", [1, 4])
def test_a_stale_instance_in_memory_is_corrected_by_the_check(rows, outside):
    shelf = Shelf.objects.create(name="Before")
    other = Shelf.objects.create(name="Other")
    outside.execute(f"UPDATE {SHELF} SET name = 'After' WHERE id = %s", [shelf.pk])
    assert shelf.name == "Before"  # this process still holds the old name
    if rows == 1:
        ShelfItem.objects.create(shelf=shelf)
    else:
        ShelfItem.objects.bulk_create([ShelfItem(shelf=shelf if i % 2 else other) for i in range(rows)])
    assert set(ShelfItem.objects.filter(shelf=shelf).values_list("shelf_name", flat=True)) == {"After"}
    assert_exact(Shelf, ShelfItem)


@pytest.mark.parametrize(
    "statement",
    [
        f"INSERT INTO {ITEM} (shelf_id, shelf_name) VALUES (%(shelf)s, 'forged')",
        f"INSERT INTO {ITEM} (shelf_id, shelf_name) SELECT %(shelf)s, 'forged ' || g FROM generate_series(1, 3) g",
        f"INSERT INTO {ITEM} (shelf_id, shelf_name) SELECT %(shelf)s, CASE WHEN g = 1 THEN 'Raw' ELSE 'forged' END "
        "FROM generate_series(1, 3) g",
        f"INSERT INTO {ITEM} (shelf_id) SELECT %(shelf)s FROM generate_series(1, 3) g",
    ],
    ids=["one forged", "several forged", "right and forged", "omitted"],
)
def test_an_outside_program_cannot_store_a_wrong_copy(statement, outside):
    shelf = Shelf.objects.create(name="Raw")
    outside.execute(statement, {"shelf": shelf.pk})
    assert set(ShelfItem.objects.values_list("shelf_name", flat=True)) == {"Raw"}
    assert_exact(Shelf, ShelfItem)


def test_copies_with_no_count_on_their_first_hop_are_checked_alike(outside):
    """Loan's copy of its book's title is checked by a trigger of its own."""
    from tests.bookstore.models import Author, Reader

    book = Book.objects.create(author=Author.objects.create(name="Ann"), title="Dune")
    reader = Reader.objects.create(name="Rae")
    loans = [Loan(reader=reader, book=book) for _ in range(3)]
    assert lookups_of_bulk_create(Loan, loans) == 0
    outside.execute(
        f"INSERT INTO {Loan._meta.db_table} (reader_id, book_id, returned, book_title) "
        "SELECT %s, %s, false, 'forged' FROM generate_series(1, 2)",
        [reader.pk, book.pk],
    )
    assert set(Loan.objects.values_list("book_title", flat=True)) == {"Dune"}
    assert_exact(Book, Loan, Reader)


def test_a_deferred_transaction_looks_copies_up_at_once(outside):
    """Deferred, the copy check waits for the commit: a supplied copy is
    looked up all the same, so the transaction reads it right before then."""
    shelf = Shelf.objects.create(name="Before")
    outside.execute(f"UPDATE {SHELF} SET name = 'After' WHERE id = %s", [shelf.pk])
    with dbrules.deferred():
        ShelfItem.objects.bulk_create([ShelfItem(shelf=shelf) for _ in range(3)])
        ShelfItem.objects.create(shelf=shelf)
        assert set(ShelfItem.objects.values_list("shelf_name", flat=True)) == {"After"}
    assert_exact(Shelf, ShelfItem)


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("supplied", ["New", "wrong"])
def test_a_supplied_copy_of_a_parent_another_transaction_has_not_committed(rows, supplied):
    """The row trigger, skipped, noted no row whose parent is missing; the
    check notes it, and the commit checks it again once the parent is there."""
    key = 9101
    info = outside_conninfo()
    with psycopg.connect(**info) as first, psycopg.connect(**info) as second:
        first.execute(f"INSERT INTO {SHELF} (id, name, num_items) VALUES (%s, 'New', 0)", [key])
        second.execute(
            f"INSERT INTO {ITEM} (shelf_id, shelf_name) SELECT %s, %s FROM generate_series(1, %s)",
            [key, supplied, rows],
        )
        first.commit()
        second.commit()  # the deferred ForeignKey check finds the parent now
    assert set(ShelfItem.objects.values_list("shelf_name", flat=True)) == {"New"}
    assert_exact(Shelf, ShelfItem)


def test_a_parent_inserted_later_in_the_same_transaction():
    with transaction.atomic():
        ShelfItem.objects.bulk_create(
            [ShelfItem(shelf_id=9201, shelf_name="Later"), ShelfItem(shelf_id=9201, shelf_name="wrong")]
        )
        Shelf.objects.create(pk=9201, name="Later")
    assert set(ShelfItem.objects.values_list("shelf_name", flat=True)) == {"Later"}
    assert_exact(Shelf, ShelfItem)


def test_only_rows_of_copies_alone_may_skip_the_lookup():
    """A model with same-row rules (Book: title_key, label over author_name)
    computes them on every row: its insert trigger has no WHEN. Copies alone
    skip it where the statement gives a value other than the field's
    default."""
    assert insert_condition(Book) == ""
    condition = insert_condition(ShelfItem)
    assert '"shelf_name" IS NULL' in condition and "\"shelf_name\" = ''" in condition
    assert "dbrules.deferred" in condition


def test_nullable_copies_with_no_default_are_unset_when_null(outside):
    """Parcel's four copies take NULL, and no field names a default: an
    insert leaves them unset with NULL, and sends them with the depot."""
    from tests.bookstore.models import Depot, Parcel

    condition = insert_condition(Parcel)
    assert '"depot_name" IS NULL' in condition and " = " not in condition.replace("dbrules.deferred', true) = ", "")
    depots = [Depot.objects.create(name=f"D{i}", code=uuid.uuid4(), priority=i, is_open=bool(i % 2)) for i in range(2)]
    nameless = Depot.objects.create(name=None, code=uuid.uuid4(), priority=7, is_open=True)
    parcels = [Parcel(depot=depots[i % 2]) for i in range(6)] + [Parcel(depot=nameless), Parcel(depot=None)]
    # The nameless depot's parcel leaves depot_name NULL, the depot-less
    # one every copy: those two are looked up.
    assert lookups_of_bulk_create(Parcel, parcels) == 2
    outside.execute(
        f"INSERT INTO {Parcel._meta.db_table} (depot_id, depot_name, depot_code, depot_priority, depot_open) "
        "SELECT %s, 'forged', gen_random_uuid(), -1, false FROM generate_series(1, 2)",
        [depots[0].pk],
    )
    assert_exact(Parcel)


def test_copies_of_a_row_with_no_parent_are_checked_too(outside):
    """A row whose nullable first hop is NULL copies nothing: values given
    with it are rewritten to NULL, several rows as one."""
    from tests.bookstore.models import Parcel

    for rows in (1, 3):
        outside.execute(
            f"INSERT INTO {Parcel._meta.db_table} (depot_id, depot_name, depot_code, depot_priority, depot_open) "
            "SELECT NULL, 'forged', gen_random_uuid(), -1, false FROM generate_series(1, %s)",
            [rows],
        )
    assert set(Parcel.objects.values_list("depot_name", "depot_priority")) == {(None, None)}
    assert_exact(Parcel)
