"""Copies a move supplies itself.

``QuerySet.update(shelf=shelf)`` and ``item.shelf = shelf; item.save()``
send the copy with the new key when the instance holds its source in memory,
``update()`` by key or by arithmetic reads it in the statement, and any
program may send one; then the BEFORE UPDATE row trigger does not
look the source up, and the statement's copy check compares every copy of
every moved row with its source and rewrites the wrong ones. Whatever was
supplied -- right, stale, forged, partial, or pointing at a parent not
committed yet -- the stored value ends equal to the annotate() oracle."""

from __future__ import annotations

import uuid
from typing import Any, Callable

import psycopg
import pytest
from django.db import connection, transaction
from django.db.models import F, Subquery
from django.test.utils import CaptureQueriesContext

import dbrules
from dbrules import registry
from tests.bookstore.models import Author, Book, Depot, Loan, Parcel, Reader, Shelf, ShelfItem
from tests.conftest import assert_exact, outside_conninfo, row_trigger_calls_during

pytestmark = pytest.mark.django_db(transaction=True)

SHELF, ITEM = Shelf._meta.db_table, ShelfItem._meta.db_table


def lookups_of_update(model: Any, write: Callable[[], Any]) -> int:
    """The calls of ``model``'s BEFORE UPDATE row trigger function that
    ``write`` made (one per row it looked up)."""
    return row_trigger_calls_during(model, "row_upd", write)


def update_condition(model: Any) -> str:
    [item] = [
        c for c in registry.compiled()
        if c.model is model and c.trigger.name == f"dbrules_{model._meta.model_name}_row_upd"
    ]
    return item.trigger.condition.sql


@pytest.fixture
def shelves() -> list[Shelf]:
    found = [Shelf.objects.create(name=f"Shelf {i}") for i in range(3)]
    ShelfItem.objects.bulk_create([ShelfItem(shelf=found[i % 2]) for i in range(8)])
    return found


def test_update_to_an_instance_sends_the_copy_and_skips_the_lookup(shelves):
    first, _, third = shelves
    moved = ShelfItem.objects.filter(shelf=first)
    assert lookups_of_update(ShelfItem, lambda: moved.update(shelf=third)) == 0
    assert set(ShelfItem.objects.filter(shelf=third).values_list("shelf_name", flat=True)) == {"Shelf 2"}
    assert_exact(Shelf, ShelfItem)


def test_update_by_key_or_expression_reads_the_copy_in_the_statement(shelves):
    """A key, or arithmetic on the row's own columns: the UPDATE reads the
    new shelf's name itself, and the row trigger is not called."""
    first, second, third = shelves
    assert lookups_of_update(ShelfItem, lambda: ShelfItem.objects.filter(shelf=first).update(shelf_id=third.pk)) == 0
    assert set(ShelfItem.objects.filter(shelf=third).values_list("shelf_name", flat=True)) == {"Shelf 2"}
    step = F("shelf_id") + (third.pk - second.pk)
    assert lookups_of_update(ShelfItem, lambda: ShelfItem.objects.filter(shelf=second).update(shelf_id=step)) == 0
    assert set(ShelfItem.objects.values_list("shelf_name", flat=True)) == {"Shelf 2"}
    assert lookups_of_update(ShelfItem, lambda: ShelfItem.objects.update(shelf=first.pk)) == 0
    assert set(ShelfItem.objects.values_list("shelf_name", flat=True)) == {"Shelf 0"}
    assert_exact(Shelf, ShelfItem)


def test_the_statement_looks_a_key_up_once_and_an_expression_for_moved_rows(shelves):
    first, second, _ = shelves
    with CaptureQueriesContext(connection) as by_key:
        ShelfItem.objects.filter(shelf=first).update(shelf_id=second.pk)
    [update] = [q["sql"] for q in by_key.captured_queries if q["sql"].startswith("UPDATE")]
    assert '"shelf_name" = coalesce((SELECT t1."name" FROM' in update and "CASE" not in update
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {update}")
        plan = "\n".join(line for (line,) in cursor.fetchall())
    assert "InitPlan" in plan and "SubPlan" not in plan  # once per statement
    # Half the rows stay on their shelf: they keep their copy, unread.
    stay_or_move = F("shelf_id") - F("shelf_id") + first.pk
    with CaptureQueriesContext(connection) as by_expression:
        assert lookups_of_update(ShelfItem, lambda: ShelfItem.objects.update(shelf_id=stay_or_move)) == 0
    [update] = [q["sql"] for q in by_expression.captured_queries if q["sql"].startswith("UPDATE")]
    assert '"shelf_name" = CASE WHEN' in update and "IS DISTINCT FROM" in update
    assert set(ShelfItem.objects.values_list("shelf_name", flat=True)) == {"Shelf 0"}
    assert_exact(Shelf, ShelfItem)


def test_an_instance_without_its_source_in_memory_is_looked_up_by_the_statement(shelves):
    first, _, third = shelves
    bare = Shelf.objects.only("pk").get(pk=third.pk)
    assert lookups_of_update(ShelfItem, lambda: ShelfItem.objects.filter(shelf=first).update(shelf=bare)) == 0
    assert set(ShelfItem.objects.filter(shelf=third).values_list("shelf_name", flat=True)) == {"Shelf 2"}
    assert_exact(Shelf, ShelfItem)


def test_other_expressions_and_bulk_update_leave_the_lookup_to_the_trigger(shelves):
    """A CASE (what bulk_update writes) or a subquery would cost more twice
    than the trigger's lookup: sent as they are, each moved row looked up."""
    first, second, third = shelves
    items = list(ShelfItem.objects.filter(shelf=first))
    for item in items:
        item.shelf = third
    assert lookups_of_update(ShelfItem, lambda: ShelfItem.objects.bulk_update(items, ["shelf"])) == len(items)
    newest = Subquery(Shelf.objects.order_by("-pk").values("pk")[:1])
    assert lookups_of_update(ShelfItem, lambda: ShelfItem.objects.filter(shelf=second).update(shelf_id=newest)) == 4
    assert set(ShelfItem.objects.values_list("shelf_name", flat=True)) == {"Shelf 2"}
    assert_exact(Shelf, ShelfItem)


def test_a_renamed_source_is_read_by_the_statement(shelves, outside):
    """The lookup runs in the statement, after another program's rename
    committed: the new name, with nothing for the check to rewrite."""
    first, _, third = shelves
    outside.execute(f"UPDATE {SHELF} SET name = 'Renamed' WHERE id = %s", [third.pk])
    ShelfItem.objects.filter(shelf=first).update(shelf_id=third.pk)
    assert set(ShelfItem.objects.filter(shelf=third).values_list("shelf_name", flat=True)) == {"Renamed"}
    assert_exact(Shelf, ShelfItem)


def test_a_value_the_statement_gives_itself_is_kept_and_checked(shelves):
    first, _, third = shelves
    ShelfItem.objects.filter(shelf=first).update(shelf=third, shelf_name="mine")
    assert set(ShelfItem.objects.filter(shelf=third).values_list("shelf_name", flat=True)) == {"Shelf 2"}
    assert_exact(Shelf, ShelfItem)


@pytest.mark.parametrize("rows", [1, 4])
def test_a_stale_instance_in_memory_is_corrected_by_the_check(rows, shelves, outside):
    first, second, third = shelves
    outside.execute(f"UPDATE {SHELF} SET name = 'Renamed' WHERE id = %s", [third.pk])
    assert third.name == "Shelf 2"  # this process still holds the old name
    keys = list(ShelfItem.objects.filter(shelf=first).values_list("pk", flat=True)[:rows])
    ShelfItem.objects.filter(pk__in=keys).update(shelf=third)
    assert set(ShelfItem.objects.filter(shelf=third).values_list("shelf_name", flat=True)) == {"Renamed"}
    assert_exact(Shelf, ShelfItem)


def test_save_after_assigning_the_parent_sends_the_copy(shelves, outside):
    first, second, third = shelves
    item = ShelfItem.objects.filter(shelf=first).first()
    item.shelf = third

    assert lookups_of_update(ShelfItem, item.save) == 0
    assert item.shelf_name == "Shelf 2"
    outside.execute(f"UPDATE {SHELF} SET name = 'Renamed' WHERE id = %s", [second.pk])
    item.shelf = second  # the instance still holds the old name
    item.save()
    assert ShelfItem.objects.get(pk=item.pk).shelf_name == "Renamed"
    # The parent unchanged and its cached name stale: a copy written without
    # a move is looked up by the row trigger.
    item.save()
    assert_exact(Shelf, ShelfItem)


def test_save_by_key_looks_the_source_up(shelves):
    first, _, third = shelves
    item = ShelfItem.objects.filter(shelf=first).first()
    item.shelf_id = third.pk
    assert lookups_of_update(ShelfItem, item.save) == 1
    assert ShelfItem.objects.get(pk=item.pk).shelf_name == "Shelf 2"
    assert_exact(Shelf, ShelfItem)


@pytest.mark.parametrize(
    "statement",
    [
        f"UPDATE {ITEM} SET shelf_id = %(to)s, shelf_name = 'forged' WHERE id = (SELECT min(id) FROM {ITEM})",
        f"UPDATE {ITEM} SET shelf_id = %(to)s, shelf_name = 'forged ' || id WHERE shelf_id = %(from)s",
        f"UPDATE {ITEM} SET shelf_id = %(to)s, shelf_name = CASE WHEN id %% 2 = 0 THEN 'Shelf 2' ELSE 'forged' END",
        f"UPDATE {ITEM} SET shelf_name = 'forged'",
        f"UPDATE {ITEM} SET shelf_id = CASE WHEN id %% 2 = 0 THEN %(to)s ELSE shelf_id END, shelf_name = 'forged'",
    ],
    ids=["one moved, forged", "several moved, forged", "right and forged", "forged, not moved", "some moved"],
)
def test_an_outside_program_cannot_store_a_wrong_copy(statement, shelves, outside):
    first, _, third = shelves
    outside.execute(statement, {"from": first.pk, "to": third.pk})
    assert_exact(Shelf, ShelfItem)
    assert "forged" not in "".join(ShelfItem.objects.values_list("shelf_name", flat=True))


def test_a_move_that_sends_some_copies_skips_the_lookup_and_gets_the_rest(outside):
    """Parcel copies four columns of its depot. The depot loaded with its
    name alone: the update sends that one, the row trigger is skipped, and
    the check rewrites the three others."""
    depots = [Depot.objects.create(name=f"D{i}", code=uuid.uuid4(), priority=i, is_open=bool(i % 2)) for i in range(2)]
    Parcel.objects.bulk_create([Parcel(depot=depots[0]) for _ in range(4)])
    partial = Depot.objects.only("name").get(pk=depots[1].pk)
    assert lookups_of_update(Parcel, lambda: Parcel.objects.update(depot=partial)) == 0
    assert_exact(Parcel)
    # The same from a program that gives one forged copy of four.
    outside.execute(
        f"UPDATE {Parcel._meta.db_table} SET depot_id = %s, depot_priority = -1", [depots[0].pk]
    )
    assert_exact(Parcel)
    assert set(Parcel.objects.values_list("depot_priority", flat=True)) == {0}


def test_copies_with_no_count_on_their_first_hop_are_checked_alike(outside):
    """Loan's copy of its book's title is checked by a trigger of its own."""
    author = Author.objects.create(name="Ann")
    dune, emma = (Book.objects.create(author=author, title=t) for t in ("Dune", "Emma"))
    reader = Reader.objects.create(name="Rae")
    Loan.objects.bulk_create([Loan(reader=reader, book=dune) for _ in range(3)])
    assert lookups_of_update(Loan, lambda: Loan.objects.update(book=emma)) == 0
    outside.execute(f"UPDATE {Loan._meta.db_table} SET book_id = %s, book_title = 'forged'", [dune.pk])
    assert set(Loan.objects.values_list("book_title", flat=True)) == {"Dune"}
    assert_exact(Book, Loan, Reader)


@pytest.mark.parametrize("by", ["instance", "key", "expression"])
def test_a_deferred_transaction_looks_copies_up_at_once(by, shelves, outside):
    """Deferred, the copy check waits for the commit: a supplied copy is
    looked up all the same, so the transaction reads it right before then."""
    first, second, third = shelves
    outside.execute(f"UPDATE {SHELF} SET name = 'Renamed' WHERE id = %s", [third.pk])
    value = {"instance": third, "key": third.pk, "expression": F("shelf_id") + (third.pk - first.pk)}[by]
    with dbrules.deferred():
        assert lookups_of_update(ShelfItem, lambda: ShelfItem.objects.filter(shelf=first).update(shelf=value)) == 4
        assert set(ShelfItem.objects.filter(shelf=third).values_list("shelf_name", flat=True)) == {"Renamed"}
    assert_exact(Shelf, ShelfItem)


@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("supplied", ["New", "wrong"])
def test_a_move_to_a_parent_another_transaction_has_not_committed(rows, supplied):
    """The row trigger, skipped, noted no row whose new parent is missing;
    the check notes it, and the commit checks it again once the parent is
    there."""
    old, key = Shelf.objects.create(name="Old"), 9301
    ShelfItem.objects.bulk_create([ShelfItem(shelf=old) for _ in range(rows)])
    info = outside_conninfo()
    with psycopg.connect(**info) as first, psycopg.connect(**info) as second:
        first.execute(f"INSERT INTO {SHELF} (id, name, num_items) VALUES (%s, 'New', 0)", [key])
        second.execute(f"UPDATE {ITEM} SET shelf_id = %s, shelf_name = %s", [key, supplied])
        first.commit()
        second.commit()  # the deferred ForeignKey check finds the parent now
    assert set(ShelfItem.objects.values_list("shelf_name", flat=True)) == {"New"}
    assert_exact(Shelf, ShelfItem)


@pytest.mark.parametrize("given", [{"shelf_name": "Later"}, {}], ids=["copy given", "key alone"])
def test_a_move_to_a_parent_inserted_later_in_the_same_transaction(given, shelves):
    """By key alone, the statement's lookup finds no shelf yet and sends the
    empty value; the check notes the rows for the commit."""
    first = shelves[0]
    with transaction.atomic():
        ShelfItem.objects.filter(shelf=first).update(shelf_id=9401, **given)
        Shelf.objects.create(pk=9401, name="Later")
    assert set(ShelfItem.objects.filter(shelf_id=9401).values_list("shelf_name", flat=True)) == {"Later"}
    assert_exact(Shelf, ShelfItem)


def test_only_rows_of_copies_alone_keep_a_supplied_move():
    """Book computes same-row rules over its copy: any move re-runs them.
    Copies alone keep a move that writes one of them."""
    assert "dbrules.deferred" not in update_condition(Book)
    condition = update_condition(ShelfItem)
    assert 'AND NOT (OLD."shelf_name" IS DISTINCT FROM NEW."shelf_name")' in condition
    assert "dbrules.deferred" in condition


@pytest.mark.parametrize("rows", [1, 3])
def test_a_move_off_the_parent_with_another_copy_given(rows, outside):
    """Moved off its depot (NULL) with one copy given: the trigger is
    skipped, and the check empties the copies the row kept."""
    depot = Depot.objects.create(name="D", code=uuid.uuid4(), priority=3, is_open=True)
    Parcel.objects.bulk_create([Parcel(depot=depot) for _ in range(rows)])
    outside.execute(f"UPDATE {Parcel._meta.db_table} SET depot_id = NULL, depot_name = 'forged'")
    assert set(Parcel.objects.values_list("depot_name", "depot_priority")) == {(None, None)}
    assert_exact(Parcel)


def test_a_copy_two_hops_away_is_sent_when_both_hops_are_in_memory(outside):
    """Sticker copies its item's shelf's name. ``update(item=item)`` and
    ``Sticker(item=item)`` send it when the item holds its shelf; for an
    item loaded alone, the insert leaves the trigger to look it up and the
    update joins both hops itself. A stale shelf in memory is corrected by
    the check."""
    from tests.bookstore.models import Sticker

    first, second = Shelf.objects.create(name="First"), Shelf.objects.create(name="Second")
    near = ShelfItem.objects.create(shelf=first)  # holds its shelf
    far = ShelfItem.objects.select_related("shelf").get(pk=ShelfItem.objects.create(shelf=second).pk)
    alone = ShelfItem.objects.get(pk=far.pk)  # the shelf not loaded
    assert row_trigger_calls_during(Sticker, "row_ins", lambda: Sticker.objects.bulk_create(
        [Sticker(item=near) for _ in range(3)]
    )) == 0
    assert row_trigger_calls_during(Sticker, "row_ins", lambda: Sticker.objects.create(item=alone)) == 1
    assert lookups_of_update(Sticker, lambda: Sticker.objects.filter(item=near).update(item=far)) == 0
    assert set(Sticker.objects.values_list("shelf_name", flat=True)) == {"Second"}
    assert_exact(Shelf, ShelfItem, Sticker)
    near_alone = ShelfItem.objects.get(pk=near.pk)  # its shelf not loaded: the statement joins it
    assert lookups_of_update(Sticker, lambda: Sticker.objects.update(item=near_alone)) == 0
    assert set(Sticker.objects.values_list("shelf_name", flat=True)) == {"First"}
    outside.execute(f"UPDATE {SHELF} SET name = 'Renamed' WHERE id = %s", [second.pk])
    sticker = Sticker.objects.first()
    sticker.item = far  # a move; far.shelf still holds "Second"
    assert lookups_of_update(Sticker, sticker.save) == 0
    assert sticker.shelf_name == "Second"  # what was sent
    assert Sticker.objects.get(pk=sticker.pk).shelf_name == "Renamed"
    assert_exact(Shelf, ShelfItem, Sticker)
