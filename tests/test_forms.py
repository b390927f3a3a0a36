"""Every rule form beyond Count stays equal to annotate() on every write path:
copies along ForeignKeys, same-row expressions, M2M counts (auto-created and
explicit through), chains of rules, and TRUNCATE."""

from __future__ import annotations

import datetime

import pytest
from django.core.management import call_command
from django.db import DataError, connection, transaction

from tests.bookstore.models import Author, Book, Loan, Publisher, Reader, Tag
from tests.conftest import assert_exact, row_trigger_calls

ALL = (Publisher, Author, Book, Tag, Reader)

pytestmark = pytest.mark.django_db


@pytest.fixture
def store():
    fr = Publisher.objects.create(name="Gallimard", country="FR")
    de = Publisher.objects.create(name="Suhrkamp", country="DE")
    ann = Author.objects.create(name="Ann", email="Ann@Example.ORG", publisher=fr)
    bob = Author.objects.create(name="Bob", publisher=de)
    books = Book.objects.bulk_create(
        [Book(author=ann, title=f"Tome {i}", pages=100 * i) for i in range(1, 5)]
        + [Book(author=bob, title="Solo", pages=320)]
    )
    return {"fr": fr, "de": de, "ann": ann, "bob": bob, "books": books}


# -- copies -------------------------------------------------------------------


def test_copy_is_set_on_create_and_returned_to_the_instance(store):
    book = Book.objects.create(author=store["ann"], title="New")
    assert book.author_name == "Ann"  # read back with INSERT ... RETURNING
    assert book.publisher_country == "FR"
    assert_exact(*ALL)


def test_copy_through_a_null_hop_overwrites_what_the_writer_sent(store):
    """A NULL ForeignKey on the path finds no source row: the copy is the
    field's empty value, whatever the INSERT or UPDATE tried to store."""
    loner = Author.objects.create(name="Loner", publisher=None)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Book._meta.db_table} (author_id, title, pages, published, author_name, "
            "publisher_country, title_key, label, size, weight_grams, num_tags) "
            "VALUES (%s, 'Raw', 1, false, 'forged', 'XX', '', '', '', 0, 0) RETURNING id",
            [loner.pk],
        )
        [raw_id] = cursor.fetchone()
        cursor.execute(
            f"UPDATE {Book._meta.db_table} SET author_id = %s, publisher_country = 'YY' WHERE id = %s",
            [store["bob"].pk, store["books"][0].pk],
        )
    raw = Book.objects.get(pk=raw_id)
    assert (raw.author_name, raw.publisher_country) == ("Loner", None)
    moved = Book.objects.get(pk=store["books"][0].pk)
    assert (moved.author_name, moved.publisher_country) == ("Bob", "DE")
    assert_exact(*ALL)


def test_renaming_the_source_recopies_every_dependent_row(store):
    Author.objects.filter(pk=store["ann"].pk).update(name="Annie")
    assert set(Book.objects.filter(author=store["ann"]).values_list("author_name", flat=True)) == {
        "Annie"
    }
    assert_exact(*ALL)


def test_two_hop_copy_follows_the_far_source_and_the_middle_hop(store):
    Publisher.objects.filter(pk=store["fr"].pk).update(country="BE")
    assert Book.objects.filter(author=store["ann"], publisher_country="BE").count() == 4
    Author.objects.filter(pk=store["ann"].pk).update(publisher=store["de"])
    assert Book.objects.filter(author=store["ann"], publisher_country="DE").count() == 4
    Author.objects.filter(pk=store["ann"].pk).update(publisher=None)
    assert Book.objects.filter(author=store["ann"], publisher_country=None).count() == 4
    assert_exact(*ALL)


def test_a_cascade_writes_copies_without_recomputing_each_row(store):
    """A cascade writes the value it looked up, so the row trigger that puts
    back a copy a statement forged is not called for each row it rewrites
    (publisher_country, which no same-row rule reads); a statement's own
    write of the copy still is, and is undone."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL track_functions = 'pl'")
        # Counted as differences: the view also reports calls of earlier
        # transactions not yet added to the totals.
        before = row_trigger_calls(cursor, Book, "row_upd")
        Publisher.objects.filter(pk=store["fr"].pk).update(country="BE")
        assert Book.objects.filter(author=store["ann"], publisher_country="BE").count() == 4
        assert row_trigger_calls(cursor, Book, "row_upd") == before
        assert_exact(*ALL)
        cursor.execute(
            f"UPDATE {Book._meta.db_table} SET publisher_country = 'XX' WHERE author_id = %s",
            [store["ann"].pk],
        )
        assert row_trigger_calls(cursor, Book, "row_upd") == before + 4
        assert_exact(*ALL)


def test_moving_a_child_recopies_and_a_direct_write_is_undone(store, outside):
    book = store["books"][0]
    book.author = store["bob"]
    book.save()
    assert Book.objects.get(pk=book.pk).author_name == "Bob"
    outside.execute(f"UPDATE {Book._meta.db_table} SET author_name = 'forged' WHERE id = %s", [book.pk])
    assert_exact(*ALL)


def test_copy_of_a_rule_over_an_aggregate_follows_count_updates(store):
    """Author.standing is a same-row rule over num_books, which only dbrules'
    count updates write; Book.author_standing copies it. Those count updates
    set nothing but aggregates, and the copy's cascade must still fire."""
    bob = store["bob"]
    assert list(Book.objects.filter(author=bob).values_list("author_standing", flat=True)) == ["new"]
    Book.objects.create(author=bob, title="Second")
    assert set(Book.objects.filter(author=bob).values_list("author_standing", flat=True)) == {"established"}
    assert_exact(*ALL)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {Book._meta.db_table} WHERE title = 'Second'")
    assert list(Book.objects.filter(author=bob).values_list("author_standing", flat=True)) == ["new"]
    Book.objects.filter(author=store["ann"]).update(author=bob)
    assert set(Book.objects.values_list("author__name", "author_standing")) == {
        ("Bob", "established")
    }
    assert Author.objects.get(pk=store["ann"].pk).standing == "new"
    assert_exact(*ALL)


def test_bulk_update_and_raw_sql_keep_copies(store):
    books = list(Book.objects.all())
    for b in books:
        b.author = store["bob"]
    Book.objects.bulk_update(books, ["author"])
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Author._meta.db_table} SET name = name || '!'")
    assert_exact(*ALL)


# -- same-row expressions -------------------------------------------------------


def test_same_row_expressions_on_create_and_update(store):
    book = Book.objects.create(author=store["ann"], title="MiXeD Case", pages=400)
    assert (book.title_key, book.size, book.weight_grams) == ("mixed case", "long", 1250)
    assert book.label == "MiXeD Case by Ann"  # an expression reading a copy
    Book.objects.filter(pk=book.pk).update(title="Short", pages=10)
    row = Book.objects.values("title_key", "size", "weight_grams", "label").get(pk=book.pk)
    assert row == {"title_key": "short", "size": "short", "weight_grams": 80, "label": "Short by Ann"}
    assert_exact(*ALL)


def test_concat_in_a_rule_reads_as_annotate_with_numbers_and_nulls(store):
    """The trigger's Concat is written alike on every supported Django (||
    over COALESCE, text casts for other types); executed on rows with an
    integer, a NULL decimal, a NULL date and a text, it gives what Django's
    own annotate() gives for the same expression."""
    from django.db.models import TextField, Value
    from django.db.models.functions import Concat

    from dbrules.sqlrender import render_expression

    Book.objects.filter(pk=store["books"][0].pk).update(price="12.50", published_on=datetime.date(2024, 2, 29))
    expression = Concat(
        "title", Value("/"), "pages", Value("/"), "price", Value("/"), "published_on", "label", output_field=TextField()
    )
    sql = render_expression(Book, expression, "b")
    assert "CONCAT" not in sql.upper() and "||" in sql
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT b.id, {sql} FROM {Book._meta.db_table} AS b")
        compiled = dict(cursor.fetchall())
    annotated = dict(Book.objects.annotate(v=expression).values_list("pk", "v"))
    assert compiled == annotated and len(compiled) == 5
    assert compiled[store["books"][0].pk] == "Tome 1/100/12.50/2024-02-29Tome 1 by Ann"


def test_normalising_a_column_from_itself(store):
    assert Author.objects.get(pk=store["ann"].pk).email == "ann@example.org"
    Author.objects.filter(pk=store["ann"].pk).update(email="LOUD@EXAMPLE.ORG")
    assert Author.objects.get(pk=store["ann"].pk).email == "loud@example.org"
    assert_exact(*ALL)


def test_stale_save_cannot_store_a_wrong_expression(store):
    book = Book.objects.get(pk=store["books"][0].pk)
    Book.objects.filter(pk=book.pk).update(title="Changed")
    book.title_key = "stale"
    book.save(update_fields=["title_key"])
    assert Book.objects.get(pk=book.pk).title_key == "changed"
    assert_exact(*ALL)


# -- many-to-many -----------------------------------------------------------------


def test_m2m_add_remove_set_clear_both_directions(store):
    a, b, c = (Tag.objects.create(name=n) for n in "abc")
    book = store["books"][0]
    book.tags.add(a, b)
    assert Book.objects.get(pk=book.pk).num_tags == 2
    a.books.add(*store["books"][1:3])  # reverse side
    book.tags.remove(b)
    book.tags.set([b, c])
    assert_exact(*ALL)
    store["books"][1].tags.clear()
    a.books.clear()
    assert Tag.objects.get(pk=a.pk).num_books == 0
    assert_exact(*ALL)


def test_m2m_through_bulk_create_and_raw_sql(store, outside):
    tags = Tag.objects.bulk_create([Tag(name=f"t{i}") for i in range(5)])
    Through = Book.tags.through
    Through.objects.bulk_create(
        [Through(book=b, tag=t) for b in store["books"] for t in tags[:3]]
    )
    assert Tag.objects.get(pk=tags[0].pk).num_books == len(store["books"])
    table = Through._meta.db_table
    outside.execute(f"DELETE FROM {table} WHERE tag_id = %s", [tags[0].pk])
    outside.execute(
        f"INSERT INTO {table} (book_id, tag_id) SELECT id, %s FROM {Book._meta.db_table}", [tags[4].pk]
    )
    assert_exact(*ALL)


def test_explicit_through_model_counts_and_filtered_counts(store):
    reader = Reader.objects.create(name="R")
    Loan.objects.bulk_create([Loan(reader=reader, book=b) for b in store["books"]])
    extra = Book.objects.create(author=store["bob"], title="Extra")
    reader.books.add(extra, through_defaults={"returned": True})
    Loan.objects.filter(book=store["books"][1]).update(returned=True)
    r = Reader.objects.get(pk=reader.pk)
    assert (r.num_loans, r.num_open_loans) == (6, 4)
    Loan.objects.filter(returned=True).delete()
    assert_exact(*ALL)


def test_deleting_a_book_cascades_through_m2m_rows(store):
    tag = Tag.objects.create(name="x")
    tag.books.add(*store["books"])
    store["books"][0].delete()
    assert Tag.objects.get(pk=tag.pk).num_books == len(store["books"]) - 1
    assert_exact(*ALL)


# -- chains -------------------------------------------------------------------------


def test_a_sum_of_a_derived_count_composes(store):
    assert Publisher.objects.get(pk=store["fr"].pk).total_books == 4
    Book.objects.create(author=store["ann"], title="Fifth")
    Book.objects.filter(author=store["bob"]).update(author=store["ann"])
    fr = Publisher.objects.get(pk=store["fr"].pk)
    assert (fr.total_books, fr.num_authors) == (6, 1)
    Author.objects.filter(pk=store["bob"].pk).update(publisher=store["fr"])
    Book.objects.filter(pages__gte=300).delete()
    assert_exact(*ALL)


# -- TRUNCATE and fixtures ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_truncate_of_a_source_table(store):
    tag = Tag.objects.create(name="x")
    tag.books.add(*store["books"])
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {Book.tags.through._meta.db_table}")
        cursor.execute(f"TRUNCATE {Loan._meta.db_table}, {Book._meta.db_table} CASCADE")
    assert Author.objects.get(pk=store["ann"].pk).num_books == 0
    assert Tag.objects.get(pk=tag.pk).num_books == 0
    assert_exact(*ALL)


def test_fixture_with_children_before_parents(tmp_path):
    fixture = tmp_path / "shop.json"
    fixture.write_text(
        """[
 {"model": "bookstore.book", "pk": 901, "fields": {"author": 77, "title": "Early", "pages": 10,
   "author_name": "garbage", "tags": [5]}},
 {"model": "bookstore.tag", "pk": 5, "fields": {"name": "t", "num_books": 42}},
 {"model": "bookstore.author", "pk": 77, "fields": {"name": "Late", "num_books": 99,
   "publisher": 3}},
 {"model": "bookstore.publisher", "pk": 3, "fields": {"name": "P", "country": "IT"}}
]"""
    )
    call_command("loaddata", str(fixture), verbosity=0)
    book = Book.objects.get(pk=901)
    assert (book.author_name, book.publisher_country) == ("Late", "IT")
    assert Author.objects.get(pk=77).num_books == 1
    assert Tag.objects.get(pk=5).num_books == 1
    assert_exact(*ALL)


def test_failed_statement_leaves_nothing_half_applied(store):
    before = Author.objects.get(pk=store["ann"].pk).num_books
    with pytest.raises(DataError):
        with transaction.atomic():
            Book.objects.bulk_create(
                [Book(author=store["ann"], title="ok")] * 3
                + [Book(author=store["ann"], title="x" * 300)]  # too long: the statement fails
            )
    assert Author.objects.get(pk=store["ann"].pk).num_books == before
    assert_exact(*ALL)


def test_dates_and_nulls_in_extremes(store):
    Book.objects.filter(pk=store["books"][0].pk).update(published_on=datetime.date(2020, 5, 1))
    Book.objects.filter(pk=store["books"][1].pk).update(published_on=datetime.date(2021, 5, 1))
    assert Author.objects.get(pk=store["ann"].pk).last_published == datetime.date(2021, 5, 1)
    Book.objects.filter(pk=store["books"][1].pk).update(published_on=None)
    assert Author.objects.get(pk=store["ann"].pk).last_published == datetime.date(2020, 5, 1)
    assert_exact(*ALL)
