"""An outside program with least privilege keeps derived values right and
cannot change, redirect or disable dbrules' maintenance."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from tests.bookstore.models import Author, Book
from tests.conftest import assert_exact, outside_conninfo

ROLE = "dbrules_book_writer"
BOOK, AUTHOR = Book._meta.db_table, Author._meta.db_table
COLUMNS = "author_id, title, pages, published, author_name, title_key, label, size, weight_grams, num_tags"


@pytest.fixture
def writer(transactional_db):
    """A connection as a role that may only write the book table (the GRANTs
    documented in docs/outside-programs.md)."""
    info = outside_conninfo()
    with psycopg.connect(**info, autocommit=True) as admin:
        admin.execute(f"DROP ROLE IF EXISTS {ROLE}")
        admin.execute(f"CREATE ROLE {ROLE} LOGIN")
        admin.execute(f"GRANT USAGE ON SCHEMA public TO {ROLE}")
        admin.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {BOOK} TO {ROLE}")
        admin.execute(f"GRANT USAGE ON SEQUENCE {BOOK}_id_seq TO {ROLE}")
        admin.execute(f"GRANT SELECT ON {AUTHOR} TO {ROLE}")
        try:
            with psycopg.connect(**{**info, "user": ROLE, "password": ""}, autocommit=True) as conn:
                yield conn
        finally:
            admin.execute(f"DROP OWNED BY {ROLE}")
            admin.execute(f"DROP ROLE {ROLE}")


def test_writer_keeps_parent_counts_right(writer):
    ann = Author.objects.create(name="Ann")
    writer.execute(
        f"INSERT INTO {BOOK} ({COLUMNS}) SELECT %s, 't' || g, g, g %% 2 = 0, '', '', '', '', 0, 0 "
        "FROM generate_series(1, 20) g",
        [ann.pk],
    )
    writer.execute(f"UPDATE {BOOK} SET published = NOT published WHERE pages <= 4")
    writer.execute(f"DELETE FROM {BOOK} WHERE pages > 15")
    a = Author.objects.get(pk=ann.pk)
    assert (a.num_books, a.num_published) == (15, 7)
    assert_exact(Author, Book)


def test_writer_cannot_write_derived_columns(writer):
    ann = Author.objects.create(name="Ann")
    with pytest.raises(errors.InsufficientPrivilege):
        writer.execute(f"UPDATE {AUTHOR} SET num_books = 999 WHERE id = %s", [ann.pk])
    writer.execute(
        f"INSERT INTO {BOOK} ({COLUMNS}) VALUES (%s, 'x', 1, true, 'forged', 'forged', '', '', 0, 42)",
        [ann.pk],
    )
    writer.execute(f"UPDATE {BOOK} SET author_name = 'forged again', num_tags = 7")
    book = Book.objects.get()
    assert (book.author_name, book.title_key, book.num_tags) == ("Ann", "x", 0)
    assert_exact(Author, Book)


def test_writer_cannot_disable_or_skip_the_triggers(writer):
    ann = Author.objects.create(name="Ann")
    with pytest.raises(errors.InsufficientPrivilege):
        writer.execute(f"ALTER TABLE {BOOK} DISABLE TRIGGER ALL")
    with pytest.raises(errors.InsufficientPrivilege):
        writer.execute("SET session_replication_role = replica")
    # django-pgtrigger's escape hatch does not apply to dbrules' triggers.
    names = "{" + ",".join(
        r[0] for r in writer.execute("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'pgtrigger_dbrules_%'")
    ) + "}"
    writer.execute("SELECT set_config('pgtrigger.ignore', %s, false)", [names])
    writer.execute(f"INSERT INTO {BOOK} ({COLUMNS}) VALUES (%s, 'x', 1, true, '', '', '', '', 0, 0)", [ann.pk])
    assert Author.objects.get(pk=ann.pk).num_books == 1
    assert_exact(Author, Book)


def test_writer_cannot_redirect_the_functions(writer):
    """A temporary table named like the parent, first in the writer's
    search_path, is never what the trigger updates."""
    ann = Author.objects.create(name="Ann")
    writer.execute(f"CREATE TEMP TABLE {AUTHOR} (id bigint, num_books int, num_published int)")
    writer.execute(f"INSERT INTO pg_temp.{AUTHOR} VALUES (%s, 0, 0)", [ann.pk])
    writer.execute("SET search_path = pg_temp, public")
    writer.execute(f"INSERT INTO public.{BOOK} ({COLUMNS}) VALUES (%s, 'x', 1, true, '', '', '', '', 0, 0)", [ann.pk])
    assert writer.execute(f"SELECT num_books FROM pg_temp.{AUTHOR}").fetchone() == (0,)
    assert Author.objects.get(pk=ann.pk).num_books == 1
    assert_exact(Author, Book)
