"""A parent whose value is computed from children that are already there:
one inserted after its children, and one whose key changes. Both in
immediate mode and in deferred mode, where the transaction's own deltas are
still parked when the parent computes its value."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection, transaction

import dbrules
from tests.bookstore.models import Author, Book, Publisher, Shelf, ShelfItem, Tag
from tests.conftest import assert_exact, outside_conninfo

pytestmark = pytest.mark.django_db(transaction=True)

AUTHOR, BOOK, PUBLISHER = Author._meta.db_table, Book._meta.db_table, Publisher._meta.db_table
BOOK_COLUMNS = "author_id, title, pages, published, author_name, title_key, label, size, weight_grams, num_tags"


def sql(statement: str, params: list | tuple = ()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def raw_book(author_id: int, pages: int = 3) -> None:
    sql(f"INSERT INTO {BOOK} ({BOOK_COLUMNS}) VALUES (%s, 't', %s, true, '', '', '', '', 0, 0)", [author_id, pages])


def stored(pk: int) -> tuple[int, int, int]:
    return Author.objects.filter(pk=pk).values_list("num_books", "num_published", "total_pages").get()


def author_with_books(name: str = "Ann", count: int = 3, publisher: Publisher | None = None) -> Author:
    author = Author.objects.create(name=name, publisher=publisher)
    Book.objects.bulk_create(
        [Book(author=author, title=f"b{i}", pages=100 * (i + 1), published=True) for i in range(count)]
    )
    return author


@pytest.mark.parametrize("children_first", [False, True], ids=["parent first", "children first"])
def test_renumbering_a_parent_and_its_children(children_first):
    publisher = Publisher.objects.create(name="P", country="fr")
    ann = author_with_books(count=3, publisher=publisher)  # standing "established", copied onto books
    old, new = ann.pk, ann.pk + 1000
    steps = [
        (f"UPDATE {AUTHOR} SET id = %s WHERE id = %s", [new, old]),
        (f"UPDATE {BOOK} SET author_id = %s WHERE author_id = %s", [new, old]),
    ]
    with transaction.atomic():  # the ForeignKey is checked at commit
        for statement, params in reversed(steps) if children_first else steps:
            sql(statement, params)
    assert stored(new) == (3, 3, 600)
    assert set(Book.objects.values_list("author_id", "author_name", "author_standing")) == {
        (new, "Ann", "established")
    }
    assert_exact(Publisher, Author, Book)


def test_renumbering_recomputes_the_rules_that_read_the_new_count():
    """One of Ann's three books goes to her new key first; she takes that
    key, and the two left behind are deleted. Her count drops from 3 to 1
    in the renumbering statement alone, which sets only the key: her
    standing, a same-row rule over the count, and its copy on the book
    must follow from it."""
    publisher = Publisher.objects.create(name="P", country="fr")
    ann = author_with_books(count=3, publisher=publisher)  # "established"
    old, new = ann.pk, ann.pk + 1000
    first = Book.objects.filter(author=ann).order_by("pk").first()
    with transaction.atomic():  # the ForeignKey is checked at commit
        sql(f"UPDATE {BOOK} SET author_id = %s WHERE id = %s", [new, first.pk])
        sql(f"UPDATE {AUTHOR} SET id = %s WHERE id = %s", [new, old])
        sql(f"DELETE FROM {BOOK} WHERE author_id = %s", [old])
    assert stored(new) == (1, 1, 100)
    assert Author.objects.get(pk=new).standing == "new"
    assert list(Book.objects.values_list("author_standing", flat=True)) == ["new"]
    assert_exact(Publisher, Author, Book)


def test_renumbering_a_parent_with_no_children_takes_the_new_keys_children():
    ann, bob = author_with_books("Ann", count=2), Author.objects.create(name="Bob")
    with transaction.atomic():
        # Bob leaves his key; Ann's books stay where they are, and Bob takes
        # a key that nobody's children carry.
        sql(f"UPDATE {AUTHOR} SET id = id + 1000 WHERE id = %s", [bob.pk])
        sql(f"UPDATE {AUTHOR} SET name = 'Ann again' WHERE id = %s", [ann.pk])
    assert stored(bob.pk + 1000) == (0, 0, 0)
    assert stored(ann.pk) == (2, 2, 300)
    assert_exact(Author, Book)


def test_renumbering_a_tag_of_a_many_to_many_relation():
    tag = Tag.objects.create(name="t")
    ann = author_with_books(count=2)
    tag.books.set(Book.objects.filter(author=ann))
    through = Book.tags.through._meta.db_table
    with transaction.atomic():
        sql(f"UPDATE {through} SET tag_id = tag_id + 1000 WHERE tag_id = %s", [tag.pk])
        sql(f"UPDATE {Tag._meta.db_table} SET id = id + 1000 WHERE id = %s", [tag.pk])
    assert Tag.objects.get(pk=tag.pk + 1000).num_books == 2
    assert_exact(Tag, Book)


def test_deferred_parent_inserted_after_its_children():
    with dbrules.deferred():
        raw_book(5000, pages=3)
        raw_book(5000, pages=4)
        Author.objects.create(pk=5000, name="Late")
    assert stored(5000) == (2, 2, 7)
    assert_exact(Author, Book)


def test_deferred_parent_inserted_after_its_children_in_a_longer_transaction():
    """The block that parked the deltas has ended; the transaction has not."""
    with transaction.atomic():
        with dbrules.deferred():
            raw_book(5000)
        Author.objects.create(pk=5000, name="Late")
        raw_book(5000)  # counted at once: the block is over
    assert stored(5000)[0] == 2
    assert_exact(Author, Book)


@pytest.mark.parametrize("children_first", [False, True], ids=["parent first", "children first"])
def test_deferred_renumbering(children_first):
    ann = author_with_books(count=3)
    old, new = ann.pk, ann.pk + 1000
    steps = [
        lambda: sql(f"UPDATE {AUTHOR} SET id = %s WHERE id = %s", [new, old]),
        lambda: sql(f"UPDATE {BOOK} SET author_id = %s WHERE author_id = %s", [new, old]),
    ]
    with dbrules.deferred():
        raw_book(old)  # parked for the old key
        for step in reversed(steps) if children_first else steps:
            step()
    assert stored(new) == (4, 4, 603)
    assert_exact(Author, Book)


# Another transaction writes children under a key whose parent is inserted,
# or renumbered to it, by a transaction that has not committed yet. Its
# statements find no parent row to update and its copies no source: the
# deltas and the copies wait for its commit.

SHELF, ITEM = Shelf._meta.db_table, ShelfItem._meta.db_table
ONE_BOOK = f"INSERT INTO {BOOK} ({BOOK_COLUMNS}) VALUES (%s, 't', 5, true, '', '', '', '', 0, 0)"
WRITES = {
    # (child statement, parameters for the parent key k and an existing key e)
    "insert one": lambda k, e: [(ONE_BOOK, [k])],
    "insert many": lambda k, e: [
        (f"INSERT INTO {BOOK} ({BOOK_COLUMNS}) SELECT %s, 't', g, g %% 2 = 0, '', '', '', '', 0, 0 "
         "FROM generate_series(1, 3) g", [k])
    ],
    "move one": lambda k, e: [(f"UPDATE {BOOK} SET author_id = %s WHERE id = (SELECT min(id) FROM {BOOK} WHERE author_id = %s)", [k, e])],
    "move many": lambda k, e: [(f"UPDATE {BOOK} SET author_id = %s WHERE author_id = %s", [k, e])],
}
SHELF_WRITES = {
    "insert one": lambda k, e: [(f"INSERT INTO {ITEM} (shelf_id, shelf_name) VALUES (%s, '')", [k])],
    "insert many": lambda k, e: [(f"INSERT INTO {ITEM} (shelf_id, shelf_name) SELECT %s, '' FROM generate_series(1, 3)", [k])],
    "move one": lambda k, e: [(f"UPDATE {ITEM} SET shelf_id = %s WHERE id = (SELECT min(id) FROM {ITEM} WHERE shelf_id = %s)", [k, e])],
    "move many": lambda k, e: [(f"UPDATE {ITEM} SET shelf_id = %s WHERE shelf_id = %s", [k, e])],
}


@pytest.mark.parametrize("parent", ["author", "shelf"])
@pytest.mark.parametrize("write", list(WRITES))
@pytest.mark.parametrize("how", ["inserted", "renumbered"])
def test_children_written_for_a_parent_another_transaction_has_not_committed(parent, write, how):
    if parent == "author":
        existing = author_with_books("Old", count=3).pk
        renumbered = Author.objects.create(name="Renumbered").pk
        parent_table, writes, insert = AUTHOR, WRITES, f"INSERT INTO {AUTHOR} (id, name, email, num_books, num_published, total_pages, standing) VALUES (%s, 'New', '', 0, 0, 0, '')"
    else:
        old = Shelf.objects.create(name="Old")
        ShelfItem.objects.bulk_create([ShelfItem(shelf=old) for _ in range(3)])
        existing, renumbered = old.pk, Shelf.objects.create(name="Renumbered").pk
        parent_table, writes, insert = SHELF, SHELF_WRITES, f"INSERT INTO {SHELF} (id, name, num_items) VALUES (%s, 'New', 0)"
    key = 9001
    info = outside_conninfo()
    with psycopg.connect(**info) as first, psycopg.connect(**info) as second:
        if how == "inserted":
            first.execute(insert, [key])
        else:
            first.execute(f"UPDATE {parent_table} SET id = %s WHERE id = %s", [key, renumbered])
        for statement, params in writes[write](key, existing):
            second.execute(statement, params)
        first.commit()
        second.commit()  # the deferred ForeignKey check finds the parent now
    assert_exact(Author, Book, Shelf, ShelfItem)
