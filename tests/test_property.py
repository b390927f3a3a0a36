"""Random sequences of ORM and raw-SQL writes over a model graph that uses
every rule form; after each step every stored value equals annotate()."""

from __future__ import annotations

import pytest
from django.db import connection
from hypothesis import given
from hypothesis import strategies as st

import dbrules
from tests.bookstore.models import Author, Book, Loan, Publisher, Reader, Tag
from tests.conftest import assert_exact, one_example, pick, random_writes, run_commit_work_now

ALL = (Publisher, Author, Book, Tag, Reader)
N_AUTHORS, N_TAGS = 4, 3

ids = st.integers(min_value=0, max_value=50)
operation = st.one_of(
    st.tuples(st.just("create"), ids, st.integers(0, 600), st.booleans()),
    st.tuples(st.just("bulk_create"), st.lists(ids, min_size=1, max_size=6)),
    st.tuples(st.just("move"), ids, ids),
    st.tuples(st.just("flip_published"), ids),
    st.tuples(st.just("set_pages"), ids, st.integers(0, 600)),
    st.tuples(st.just("set_price"), ids, st.one_of(st.none(), st.integers(0, 50))),
    st.tuples(st.just("delete"), ids),
    st.tuples(st.just("rename_author"), ids, st.sampled_from(["Ann", "Bob", "Cy"])),
    st.tuples(st.just("move_author"), ids, st.one_of(st.none(), ids)),
    st.tuples(st.just("tag"), ids, ids),
    st.tuples(st.just("untag"), ids),
    st.tuples(st.just("loan"), ids, st.booleans()),
    st.tuples(st.just("raw_insert"), ids, st.integers(1, 5)),
    st.tuples(st.just("raw_delete"), ids),
    st.tuples(st.just("raw_update"), ids),
    st.tuples(st.just("deferred_pair"), ids, ids),
)


def apply(op: tuple, authors: list, publishers: list, tags: list, reader: Reader) -> None:
    kind, *args = op
    books = list(Book.objects.order_by("pk"))
    book_table = Book._meta.db_table
    if kind == "create":
        Book.objects.create(author=pick(authors, args[0]), title="t", pages=args[1], published=args[2])
    elif kind == "bulk_create":
        Book.objects.bulk_create(
            [Book(author=pick(authors, i), title=f"b{i}", pages=i * 7, published=i % 2 == 0) for i in args[0]]
        )
    elif kind == "move" and books:
        Book.objects.filter(pk=pick(books, args[0]).pk).update(author=pick(authors, args[1]))
    elif kind == "flip_published" and books:
        b = pick(books, args[0])
        b.published = not b.published
        b.save()
    elif kind == "set_pages" and books:
        Book.objects.filter(pk__lte=pick(books, args[0]).pk).update(pages=args[1])
    elif kind == "set_price" and books:
        b = pick(books, args[0])
        b.price = args[1]
        Book.objects.bulk_update([b], ["price"])
    elif kind == "delete" and books:
        pick(books, args[0]).delete()
    elif kind == "rename_author":
        Author.objects.filter(pk=pick(authors, args[0]).pk).update(name=args[1])
    elif kind == "move_author":
        publisher = None if args[1] is None else pick(publishers, args[1])
        Author.objects.filter(pk=pick(authors, args[0]).pk).update(publisher=publisher)
    elif kind == "tag" and books:
        pick(books, args[0]).tags.add(pick(tags, args[1]))
    elif kind == "untag" and books:
        pick(books, args[0]).tags.clear()
    elif kind == "loan" and books:
        Loan.objects.create(reader=reader, book=pick(books, args[0]), returned=args[1])
    elif kind == "raw_insert":
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {book_table} (author_id, title, pages, published, author_name, "
                "title_key, label, size, weight_grams, num_tags) "
                "SELECT %s, 'Raw' || g, g * 40, g %% 2 = 1, 'x', 'x', 'x', 'x', 0, 99 "
                "FROM generate_series(1, %s) g",
                [pick(authors, args[0]).pk, args[1]],
            )
    elif kind == "raw_delete" and books:
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {Loan._meta.db_table} WHERE book_id >= %s", [pick(books, args[0]).pk])
            cursor.execute(f"DELETE FROM {Book.tags.through._meta.db_table} WHERE book_id >= %s", [pick(books, args[0]).pk])
            cursor.execute(f"DELETE FROM {book_table} WHERE id >= %s", [pick(books, args[0]).pk])
    elif kind == "raw_update" and books:
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {book_table} SET author_id = %s, published = NOT published, num_tags = 7 "
                "WHERE id %% 2 = 0",
                [pick(authors, args[0]).pk],
            )
    elif kind == "deferred_pair":
        with dbrules.deferred():
            Book.objects.create(author=pick(authors, args[0]), title="d1", pages=5, published=True)
            Book.objects.filter(author=pick(authors, args[1])).update(pages=9)
        run_commit_work_now()


@pytest.mark.django_db
@random_writes
@given(st.lists(operation, min_size=1, max_size=12))
def test_random_writes_keep_every_rule_exact(operations):
    with one_example():
        publishers = list(Publisher.objects.bulk_create([Publisher(name=n, country=n[:2].upper()) for n in ("fr", "de")]))
        authors = list(
            Author.objects.bulk_create(
                [Author(name=f"A{i}", publisher=publishers[i % 2] if i < 3 else None) for i in range(N_AUTHORS)]
            )
        )
        tags = list(Tag.objects.bulk_create([Tag(name=f"t{i}") for i in range(N_TAGS)]))
        reader = Reader.objects.create(name="r")
        for op in operations:
            apply(op, authors, publishers, tags, reader)
            assert_exact(*ALL)
