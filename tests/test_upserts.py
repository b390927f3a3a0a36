"""Upserts and MERGE: one statement that inserts some rows and updates or
deletes others fires several statement-level triggers, each with its own
transition tables. Every derived value still equals annotate()."""

from __future__ import annotations

import pytest

from tests.bookstore.models import Author, Book, Publisher
from tests.conftest import assert_exact

pytestmark = pytest.mark.django_db

BOOK = Book._meta.db_table
COLUMNS = "id, author_id, title, pages, published, author_name, title_key, label, size, weight_grams, num_tags"


def books_of(*authors: Author, count: int = 4) -> list[Book]:
    return Book.objects.bulk_create(
        [Book(author=authors[i % len(authors)], title=f"b{i}", pages=10 * i, published=i % 2 == 0)
         for i in range(count)]
    )


def test_bulk_create_update_conflicts_moves_and_inserts():
    ann, bob = Author.objects.create(name="Ann"), Author.objects.create(name="Bob")
    existing = books_of(ann, count=4)
    # Two existing books come back moved to Bob with other pages; two are new.
    rows = [
        Book(id=existing[0].pk, author=bob, title="moved", pages=7, published=False),
        Book(id=existing[1].pk, author=bob, title="moved", pages=400, published=True),
        Book(author=bob, title="new", pages=5, published=True),
        Book(author=ann, title="new", pages=6, published=False),
    ]
    Book.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["id"],
        update_fields=["author", "title", "pages", "published"],
    )
    assert Book.objects.count() == 6
    assert Author.objects.get(pk=bob.pk).num_books == 3
    assert set(Book.objects.filter(author=bob).values_list("author_name", flat=True)) == {"Bob"}
    assert_exact(Author, Book)


def test_bulk_create_ignore_conflicts_counts_only_what_was_inserted():
    ann = Author.objects.create(name="Ann")
    existing = books_of(ann, count=3)
    Book.objects.bulk_create(
        [Book(id=existing[0].pk, author=ann, title="dup", pages=999, published=True),
         Book(author=ann, title="new", pages=1, published=True)],
        ignore_conflicts=True,
    )
    assert Author.objects.get(pk=ann.pk).num_books == 4
    assert Book.objects.get(pk=existing[0].pk).pages == 0  # the conflicting row was left alone
    assert_exact(Author, Book)


@pytest.mark.django_db(transaction=True)
def test_outside_insert_on_conflict_do_update(outside):
    ann, bob = Author.objects.create(name="Ann"), Author.objects.create(name="Bob")
    existing = books_of(ann, count=4)
    ids = [b.pk for b in existing]
    outside.execute(
        f"INSERT INTO {BOOK} ({COLUMNS}) "
        "SELECT k, %s, 'upserted', k %% 7, true, 'wrong', '', '', '', 0, 0 "
        "FROM unnest(%s::bigint[] || ARRAY[(SELECT max(id) + 1 FROM " + BOOK + ")]) AS k "
        "ON CONFLICT (id) DO UPDATE SET author_id = EXCLUDED.author_id, pages = EXCLUDED.pages, "
        "published = EXCLUDED.published, author_name = EXCLUDED.author_name",
        [bob.pk, ids[:2]],
    )
    assert Author.objects.get(pk=bob.pk).num_books == 3
    assert_exact(Author, Book)


@pytest.mark.django_db(transaction=True)
def test_outside_merge_inserts_updates_and_deletes(outside):
    ann, bob = Author.objects.create(name="Ann"), Author.objects.create(name="Bob")
    existing = books_of(ann, bob, count=6)
    ids = [b.pk for b in existing]
    # Even ids move to the other author, odd ids go; one new id is inserted.
    outside.execute(
        f"MERGE INTO {BOOK} AS t "
        "USING (SELECT k, row_number() OVER (ORDER BY k) AS n FROM unnest(%s::bigint[]) AS k) AS s "
        "ON t.id = s.k "
        "WHEN MATCHED AND s.n %% 2 = 0 THEN DELETE "
        "WHEN MATCHED THEN UPDATE SET author_id = CASE WHEN t.author_id = %s THEN %s ELSE %s END, "
        "  published = NOT t.published, pages = t.pages + 1 "
        "WHEN NOT MATCHED THEN INSERT (author_id, title, pages, published, author_name, title_key, "
        "  label, size, weight_grams, num_tags) VALUES (%s, 'merged', 3, true, '', '', '', '', 0, 0)",
        [ids + [ids[-1] + 1000], ann.pk, bob.pk, ann.pk, bob.pk],
    )
    assert Book.objects.count() == 4
    assert_exact(Author, Book)


@pytest.mark.django_db(transaction=True)
def test_outside_merge_renames_a_copied_source(outside):
    """MERGE on the source of a copy: a rename recopies, a new parent is
    counted from the children already there (none), a deleted one cascades."""
    pub = Publisher.objects.create(name="P", country="fr")
    ann = Author.objects.create(name="Ann", publisher=pub)
    books_of(ann, count=3)
    outside.execute(
        f"MERGE INTO {Publisher._meta.db_table} AS t USING (VALUES (%s, 'de'), (%s, 'it')) AS s(k, c) "
        "ON t.id = s.k WHEN MATCHED THEN UPDATE SET country = s.c "
        "WHEN NOT MATCHED THEN INSERT (name, country, num_authors, total_books) VALUES ('Q', s.c, 0, 0)",
        [pub.pk, pub.pk + 1000],
    )
    assert set(Book.objects.values_list("publisher_country", flat=True)) == {"de"}
    assert_exact(Publisher, Author, Book)


@pytest.mark.django_db(transaction=True)
def test_outside_writable_ctes_on_the_same_table(outside):
    """Two UPDATEs, a DELETE and an INSERT of one table in one statement:
    PostgreSQL fires each statement trigger once, its transition tables
    holding the rows of every part of that kind."""
    ann, bob = Author.objects.create(name="Ann"), Author.objects.create(name="Bob")
    ids = [b.pk for b in books_of(ann, count=5)]
    outside.execute(
        f"WITH u1 AS (UPDATE {BOOK} SET author_id = %s WHERE id = %s RETURNING id), "
        f"u2 AS (UPDATE {BOOK} SET pages = pages + 100, published = true WHERE id = %s RETURNING id), "
        f"d AS (DELETE FROM {BOOK} WHERE id = %s RETURNING author_id, title, pages, published) "
        f"INSERT INTO {BOOK} ({COLUMNS.removeprefix('id, ')}) "
        "SELECT %s, d.title || ' again', d.pages, d.published, '', '', '', '', 0, 0 FROM d",
        [bob.pk, ids[0], ids[1], ids[2], bob.pk],
    )
    assert Author.objects.get(pk=bob.pk).num_books == 2
    assert_exact(Author, Book)


def test_bulk_create_update_conflicts_on_parents_keeps_their_counts():
    """The conflicting rows go through the guard, the new ones through the
    compute trigger; a derived field among update_fields changes nothing."""
    ann = Author.objects.create(name="Ann")
    books_of(ann, count=3)
    Author.objects.bulk_create(
        [Author(id=ann.pk, name="Ann Renamed", num_books=99), Author(name="New", num_books=7)],
        update_conflicts=True, unique_fields=["id"], update_fields=["name", "num_books"],
    )
    assert Author.objects.get(pk=ann.pk).num_books == 3
    assert set(Book.objects.values_list("author_name", flat=True)) == {"Ann Renamed"}
    assert_exact(Author, Book)
