"""Random writes that give copies from instances held in memory, fresh or
stale, or have the UPDATE read them (moves by key and by arithmetic), beside
raw SQL that forges them; after each step every stored value equals
annotate().

Shelf items and stickers copy a shelf's name (one hop and two), parcels four
nullable columns of a depot. Their row triggers skip the lookup for rows
that bring a value, and the statement's copy check rewrites the wrong ones.
The instances are loaded once per example and go stale as shelves and
depots are renamed and items moved behind their backs."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import F
from hypothesis import given
from hypothesis import strategies as st

import dbrules
from tests.bookstore.models import Depot, Parcel, Shelf, ShelfItem, Sticker
from tests.conftest import assert_exact, one_example, pick, random_writes, run_commit_work_now

ALL = (Shelf, ShelfItem, Sticker, Parcel)
SHELF, ITEM, STICKER = Shelf._meta.db_table, ShelfItem._meta.db_table, Sticker._meta.db_table

ids = st.integers(min_value=0, max_value=30)
names = st.sampled_from(["North", "South", "Attic"])
operation = st.one_of(
    st.tuples(st.just("create_item"), ids),
    st.tuples(st.just("bulk_items"), st.lists(st.tuples(ids, st.booleans()), min_size=1, max_size=5)),
    st.tuples(st.just("move_to_instance"), ids, ids),
    st.tuples(st.just("move_by_key"), ids, ids),
    st.tuples(st.just("move_by_expression"), ids),
    st.tuples(st.just("move_by_save"), ids, ids),
    st.tuples(st.just("rename"), ids, names),
    st.tuples(st.just("rename_by_save"), ids, names),
    st.tuples(st.just("refresh"), ids),
    st.tuples(st.just("load_items"),),
    st.tuples(st.just("sticker"), ids),
    st.tuples(st.just("move_stickers"), ids, ids),
    st.tuples(st.just("delete_item"), ids),
    st.tuples(st.just("raw_insert"), ids, names),
    st.tuples(st.just("raw_move"), ids, ids, names),
    st.tuples(st.just("raw_forge"), ids, names),
    st.tuples(st.just("parcel"), st.one_of(st.none(), ids)),
    st.tuples(st.just("move_parcels"), ids, st.one_of(st.none(), ids)),
    st.tuples(st.just("move_parcels_by_key"), ids),
    st.tuples(st.just("rename_depot"), ids, st.one_of(st.none(), names)),
    st.tuples(st.just("deferred_moves"), ids, ids),
)


class Memory:
    """What this process holds: shelves and depots loaded once, items loaded
    with their shelves when asked (``load_items``)."""

    def __init__(self) -> None:
        self.shelves = list(Shelf.objects.bulk_create([Shelf(name=f"Shelf {i}") for i in range(3)]))
        self.depots = list(Depot.objects.bulk_create([Depot(name=f"Depot {i}", priority=i) for i in range(2)]))
        ShelfItem.objects.bulk_create([ShelfItem(shelf=self.shelves[i % 3]) for i in range(4)])
        self.items = list(ShelfItem.objects.select_related("shelf").order_by("pk"))

    def live_items(self) -> list[ShelfItem]:
        """The held items whose rows still exist (a sticker must point at one)."""
        existing = set(ShelfItem.objects.values_list("pk", flat=True))
        return [item for item in self.items if item.pk in existing]


def apply(op: tuple, memory: Memory) -> None:
    kind, *args = op
    shelves, depots = memory.shelves, memory.depots
    rows = list(ShelfItem.objects.order_by("pk").values_list("pk", flat=True))
    if kind == "create_item":
        ShelfItem.objects.create(shelf=pick(shelves, args[0]))
    elif kind == "bulk_items":
        ShelfItem.objects.bulk_create(
            [
                ShelfItem(shelf=pick(shelves, i)) if held else ShelfItem(shelf_id=pick(shelves, i).pk)
                for i, held in args[0]
            ]
        )
    elif kind == "move_to_instance" and rows:
        ShelfItem.objects.filter(pk__gte=pick(rows, args[0])).update(shelf=pick(shelves, args[1]))
    elif kind == "move_by_key" and rows:
        ShelfItem.objects.filter(pk__lte=pick(rows, args[0])).update(shelf_id=pick(shelves, args[1]).pk)
    elif kind == "move_by_expression" and rows:
        # Every row to the next of the three shelves (created with consecutive keys).
        low = min(shelf.pk for shelf in shelves)
        step = (F("shelf_id") - low + 1) % len(shelves) + low
        ShelfItem.objects.filter(pk__gte=pick(rows, args[0])).update(shelf_id=step)
    elif kind == "move_by_save" and memory.live_items():
        item = pick(memory.live_items(), args[0])
        item.shelf = pick(shelves, args[1])
        item.save()
    elif kind == "rename":
        Shelf.objects.filter(pk=pick(shelves, args[0]).pk).update(name=args[1])
    elif kind == "rename_by_save":
        shelf = pick(shelves, args[0])
        shelf.name = args[1]
        shelf.save(update_fields=["name"])
    elif kind == "refresh":
        pick(shelves, args[0]).refresh_from_db()
    elif kind == "load_items":
        memory.items = list(ShelfItem.objects.select_related("shelf").order_by("pk"))
    elif kind == "sticker" and memory.live_items():
        Sticker.objects.create(item=pick(memory.live_items(), args[0]))
    elif kind == "move_stickers" and memory.live_items():
        stickers = list(Sticker.objects.order_by("pk").values_list("pk", flat=True))
        if stickers:
            Sticker.objects.filter(pk__gte=pick(stickers, args[0])).update(item=pick(memory.live_items(), args[1]))
    elif kind == "delete_item" and rows:
        ShelfItem.objects.filter(pk=pick(rows, args[0])).delete()
    elif kind == "raw_insert":
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {ITEM} (shelf_id, shelf_name) SELECT %s, %s || g FROM generate_series(1, 2) g",
                [pick(shelves, args[0]).pk, args[1]],
            )
    elif kind == "raw_move" and rows:
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {ITEM} SET shelf_id = %s, shelf_name = %s WHERE id >= %s",
                [pick(shelves, args[1]).pk, args[2], pick(rows, args[0])],
            )
    elif kind == "raw_forge" and rows:
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {ITEM} SET shelf_name = %s WHERE id <= %s", [args[1], pick(rows, args[0])])
            cursor.execute(f"UPDATE {STICKER} SET shelf_name = %s", [args[1]])
    elif kind == "parcel":
        Parcel.objects.create(depot=None if args[0] is None else pick(depots, args[0]))
    elif kind == "move_parcels":
        parcels = list(Parcel.objects.order_by("pk").values_list("pk", flat=True))
        if parcels:
            depot = None if args[1] is None else pick(depots, args[1])
            Parcel.objects.filter(pk__gte=pick(parcels, args[0])).update(depot=depot)
    elif kind == "move_parcels_by_key":
        Parcel.objects.update(depot_id=pick(depots, args[0]).pk)
    elif kind == "rename_depot":
        Depot.objects.filter(pk=pick(depots, args[0]).pk).update(name=args[1])
    elif kind == "deferred_moves":
        with dbrules.deferred():
            ShelfItem.objects.create(shelf=pick(shelves, args[0]))
            ShelfItem.objects.filter(shelf=pick(shelves, args[1])).update(shelf=pick(shelves, args[0]))
        run_commit_work_now()


@pytest.mark.django_db
@random_writes
@given(st.lists(operation, min_size=1, max_size=12))
def test_copies_given_from_memory_stay_exact(operations):
    with one_example():
        memory = Memory()
        for op in operations:
            apply(op, memory)
            assert_exact(*ALL)
