"""Count and filtered Count stay equal to annotate() on every write path."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from tests.bookstore.models import Author, Book, Loan, Publisher, Reader
from tests.conftest import assert_exact

pytestmark = pytest.mark.django_db

# A book written with plain SQL, its derived columns given wrong on purpose.
RAW_BOOK_INSERT = (
    f"INSERT INTO {Book._meta.db_table} (id, author_id, title, pages, published, "
    "author_name, title_key, label, size, weight_grams, num_tags) "
)


def counts(author: Author) -> tuple[int, int]:
    a = Author.objects.get(pk=author.pk)
    return a.num_books, a.num_published


@pytest.fixture
def ann():
    return Author.objects.create(name="Ann")


@pytest.fixture
def bob():
    return Author.objects.create(name="Bob")


def test_create_returns_the_databases_value(ann):
    assert ann.num_books == 0  # INSERT ... RETURNING reads the computed value back
    Book.objects.create(author=ann, title="a", published=True)
    assert counts(ann) == (1, 1)
    assert_exact(Author)


def test_save_of_a_new_child(ann):
    book = Book(author=ann, title="a")
    book.save()
    assert counts(ann) == (1, 0)
    assert_exact(Author)


def test_bulk_create_is_one_query_and_exact(ann, bob, django_assert_num_queries):
    books = [Book(author=ann if i % 3 else bob, title=str(i), published=i % 2 == 0) for i in range(300)]
    with django_assert_num_queries(1):
        Book.objects.bulk_create(books)
    assert counts(ann) == (200, 100)
    assert counts(bob) == (100, 50)
    assert_exact(Author)


def test_queryset_update_moves_children(ann, bob):
    Book.objects.bulk_create([Book(author=ann, title=str(i), pages=i) for i in range(10)])
    moved = Book.objects.filter(pages__lt=4).update(author=bob)
    assert moved == 4
    assert counts(ann)[0] == 6 and counts(bob)[0] == 4
    assert_exact(Author)


def test_flipping_the_filter_column(ann):
    Book.objects.bulk_create([Book(author=ann, title=str(i), pages=i) for i in range(10)])
    Book.objects.filter(pages__gte=5).update(published=True)
    assert counts(ann) == (10, 5)
    Book.objects.filter(pages=9).update(published=False)
    assert counts(ann) == (10, 4)
    assert_exact(Author)


def test_bulk_update_changes_parent_and_filter(ann, bob):
    books = Book.objects.bulk_create([Book(author=ann, title=str(i)) for i in range(20)])
    for i, book in enumerate(books):
        book.author = bob if i % 2 else ann
        book.published = i % 4 == 0
    Book.objects.bulk_update(books, ["author", "published"], batch_size=7)
    assert counts(ann) == (10, 5) and counts(bob) == (10, 0)
    assert_exact(Author)


def test_unrelated_update_changes_nothing(ann):
    Book.objects.bulk_create([Book(author=ann, title=str(i), published=True) for i in range(3)])
    Book.objects.update(title="renamed")
    assert counts(ann) == (3, 3)
    assert_exact(Author)


def test_moving_one_child_with_save(ann, bob):
    book = Book.objects.create(author=ann, title="a", published=True)
    book.author = bob
    book.save()
    assert counts(ann) == (0, 0) and counts(bob) == (1, 1)
    assert_exact(Author)


def test_delete_one_and_fast_delete_many(ann):
    books = Book.objects.bulk_create([Book(author=ann, title=str(i), pages=i) for i in range(10)])
    books[0].delete()
    Book.objects.filter(pages__gte=5).delete()  # one DELETE statement
    assert counts(ann)[0] == 4
    assert_exact(Author)


def test_deleting_the_parent_cascades(ann, bob):
    Book.objects.bulk_create([Book(author=ann, title="a"), Book(author=bob, title="b")])
    ann.delete()
    assert counts(bob) == (1, 0)
    assert Book.objects.count() == 1
    assert_exact(Author)


def test_child_inserted_before_its_parent_in_one_transaction():
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(RAW_BOOK_INSERT + "VALUES (5001, 4001, 'early', 1, true, '', '', '', '', 0, 0)")
        author = Author.objects.create(pk=4001, name="Late")
        assert (author.num_books, author.num_published) == (1, 1)  # computed on insert
    assert counts(author) == (1, 1)
    assert_exact(Author)


def test_sources_inserted_after_the_rows_copying_them():
    """Rows inserted before the sources they copy from (ForeignKeys are
    checked at commit) get their copies when a multi-row statement inserts
    the sources, one hop away and two, before the transaction commits."""
    reader = Reader.objects.create(name="R")
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                RAW_BOOK_INSERT + "SELECT 6000 + g, 4100 + g % 2, 'b' || g, 1, true, '', '', '', '', 0, 0 "
                "FROM generate_series(1, 4) AS g"
            )
            cursor.execute(
                f"INSERT INTO {Loan._meta.db_table} (reader_id, book_id, returned, book_title) "
                "SELECT %s, 7000 + g, false, '' FROM generate_series(1, 3) AS g",
                [reader.pk],
            )
        Book.objects.bulk_create(
            [Book(pk=7000 + i, author_id=4100, title=f"late {i}") for i in (1, 2, 3)]
        )
        Author.objects.bulk_create([Author(pk=4100 + i, name=f"A{i}", publisher_id=4200) for i in (0, 1)])
        Publisher.objects.bulk_create([Publisher(pk=4200, name="P", country="pt")])
        assert sorted(Loan.objects.values_list("book_title", flat=True)) == ["late 1", "late 2", "late 3"]
        assert set(Book.objects.filter(pk__gt=6000).values_list("publisher_country", flat=True)) == {"pt"}
        assert_exact(Loan, Book)
    assert_exact(Loan, Book, Author, Publisher, Reader)


def test_loaddata_with_books_listed_first(tmp_path):
    fixture = tmp_path / "books.json"
    fixture.write_text(
        '[{"model": "bookstore.book", "pk": 1, "fields": {"author": 9, "title": "x", "published": true}},'
        ' {"model": "bookstore.book", "pk": 2, "fields": {"author": 9, "title": "y"}},'
        ' {"model": "bookstore.author", "pk": 9, "fields": {"name": "F", "num_books": 77}}]'
    )
    call_command("loaddata", str(fixture), verbosity=0)
    assert counts(Author.objects.get(pk=9)) == (2, 1)
    # The books found no author to copy when they were loaded; they have the
    # name once loaddata returns, inside the test's transaction (the
    # author's insert copies it to them, and loaddata's constraint check
    # runs the commit-time recopy too).
    assert list(Book.objects.order_by("pk").values_list("author_name", "label")) == [("F", "x by F"), ("F", "y by F")]
    assert_exact(Author, Book)


def test_stale_instance_save_keeps_the_stored_count(ann):
    stale = Author.objects.get(pk=ann.pk)
    Book.objects.bulk_create([Book(author=ann, title=str(i)) for i in range(3)])
    stale.name = "Renamed"
    stale.save()  # writes num_books=0 from memory: the guard keeps 3
    assert counts(ann) == (3, 0)
    assert Author.objects.get(pk=ann.pk).name == "Renamed"
    assert_exact(Author)


@pytest.mark.django_db(transaction=True)
def test_an_outside_program_writes_with_plain_sql(outside):
    ann = Author.objects.create(name="Ann")
    book_table, author_table = Book._meta.db_table, Author._meta.db_table
    outside.execute(
        f"INSERT INTO {book_table} (author_id, title, pages, published, author_name, title_key, "
        "label, size, weight_grams, num_tags) "
        "SELECT %s, 'b' || g, g, g %% 2 = 0, '', '', '', '', 0, 0 FROM generate_series(1, 50) g",
        [ann.pk],
    )
    outside.execute(f"UPDATE {book_table} SET published = NOT published WHERE pages <= 10")
    outside.execute(f"DELETE FROM {book_table} WHERE pages > 40")
    outside.execute(f"UPDATE {author_table} SET num_books = 999 WHERE id = %s", [ann.pk])
    assert counts(ann) == (40, 20)
    assert_exact(Author)


def test_a_failing_statement_rolls_back_its_maintenance(ann):
    Book.objects.create(author=ann, title="kept")
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            with connection.cursor() as cursor:
                # Row 3 of 4 violates NOT NULL: the whole statement, and the
                # trigger's count update with it, is undone.
                cursor.execute(
                    f"INSERT INTO {Book._meta.db_table} (author_id, title, pages, published, "
                    "author_name, title_key, label, size, weight_grams, num_tags) "
                    "SELECT %s, CASE WHEN g = 3 THEN NULL ELSE 't' END, 0, true, '', '', '', '', 0, 0 "
                    "FROM generate_series(1, 4) g",
                    [ann.pk],
                )
    assert counts(ann) == (1, 0)
    assert_exact(Author)


def test_rolled_back_savepoint(ann):
    with transaction.atomic():
        Book.objects.create(author=ann, title="kept")
        try:
            with transaction.atomic():
                Book.objects.bulk_create([Book(author=ann, title="gone")] * 5)
                raise RuntimeError
        except RuntimeError:
            pass
    assert counts(ann) == (1, 0)
    assert_exact(Author)


def test_annotate_live_is_the_fallback(ann):
    import dbrules

    Book.objects.bulk_create([Book(author=ann, title="a", published=True), Book(author=ann, title="b")])
    row = dbrules.annotate_live(Author.objects.filter(pk=ann.pk), "num_books", "num_published").get()
    assert (row.num_books_live, row.num_published_live) == (2, 1)
