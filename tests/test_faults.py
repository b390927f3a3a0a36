"""Faults and careless input from outside programs never leave a derived
value half-applied."""

from __future__ import annotations

import io
import os
import signal
import time
from contextlib import ExitStack

import psycopg
import pytest
from django.db import connection
from psycopg import errors

from tests.bookstore.models import Author, Book, Publisher, Reader, Tag
from tests.conftest import assert_exact, outside_conninfo

BOOK = Book._meta.db_table
COLUMNS = "author_id, title, pages, published, author_name, title_key, label, size, weight_grams, num_tags"
ALL = (Publisher, Author, Book, Tag, Reader)
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ann():
    author = Author.objects.create(name="Ann")
    Book.objects.bulk_create([Book(author=author, title=str(i), pages=i) for i in range(10)])
    return author


def test_insert_failing_at_row_5000_of_10000(ann, outside):
    with pytest.raises(errors.NotNullViolation):
        outside.execute(
            f"INSERT INTO {BOOK} ({COLUMNS}) SELECT %s, CASE WHEN g = 5000 THEN NULL ELSE 't' END, "
            "g, true, '', '', '', '', 0, 0 FROM generate_series(1, 10000) g",
            [ann.pk],
        )
    assert Author.objects.get(pk=ann.pk).num_books == 10
    assert_exact(*ALL)


def test_transaction_aborted_by_a_killed_connection(ann, outside):
    victim = psycopg.connect(**outside_conninfo())
    victim.execute(
        f"INSERT INTO {BOOK} ({COLUMNS}) SELECT %s, 'k', g, true, '', '', '', '', 0, 0 "
        "FROM generate_series(1, 500) g",
        [ann.pk],
    )
    victim.execute("SELECT set_config('dbrules.deferred', 'on', true)")
    victim.execute(f"DELETE FROM {BOOK} WHERE pages < 5")  # parked for a commit that never comes
    outside.execute("SELECT pg_terminate_backend(%s)", [victim.info.backend_pid])
    with pytest.raises(psycopg.OperationalError):
        victim.execute("COMMIT")
    victim.close()
    assert Author.objects.get(pk=ann.pk).num_books == 10
    assert_exact(*ALL)


def test_copy_negative_numbers_and_a_huge_batch(ann, outside):
    data = io.StringIO("".join(f"{ann.pk}\tc{i}\t{-i}\tt\t\t\t\t\t0\t0\n" for i in range(2000)))
    with outside.cursor() as cursor:
        with cursor.copy(f"COPY {BOOK} ({COLUMNS}) FROM STDIN") as copy:
            copy.write(data.getvalue())
    outside.execute(
        f"INSERT INTO {BOOK} ({COLUMNS}) SELECT %s, 'bulk', g %% 300 - 150, g %% 2 = 0, '', '', '', '', 0, 0 "
        "FROM generate_series(1, 100000) g",
        [ann.pk],
    )
    author = Author.objects.get(pk=ann.pk)
    assert author.num_books == 10 + 2000 + 100000
    assert author.shortest_book == -1999  # COPY rows are published
    assert_exact(*ALL)


def test_null_and_dangling_foreign_keys_fail_with_the_statement(ann, outside):
    with pytest.raises(errors.NotNullViolation):
        outside.execute(f"INSERT INTO {BOOK} ({COLUMNS}) VALUES (NULL, 'x', 1, true, '', '', '', '', 0, 0)")
    with pytest.raises(errors.ForeignKeyViolation):
        outside.execute(f"INSERT INTO {BOOK} ({COLUMNS}) VALUES (987654, 'x', 1, true, '', '', '', '', 0, 0)")
    assert_exact(*ALL)


def wait_for_server(timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(**outside_conninfo(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def assert_cut_off(conn: psycopg.Connection, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with pytest.raises(psycopg.OperationalError):
        while time.monotonic() < deadline:
            conn.execute("SELECT 1")
            time.sleep(0.05)
        conn.commit()  # still alive after the timeout: fails the test unless it raises


@pytest.mark.restarts_server
def test_server_crash_and_restart_between_statements(ann):
    """A backend killed with SIGKILL makes PostgreSQL restart: every other
    connection is cut, WAL is replayed and dbrules' unlogged tables of parked
    deltas are emptied. Committed statements keep exact values, open
    transactions (immediate and deferred) vanish whole, and the triggers keep
    working afterwards."""
    info = outside_conninfo()
    host = str(info.get("host") or "")
    if host and not host.startswith("/") and host not in {"localhost", "127.0.0.1", "::1"}:
        pytest.skip("needs a server on this machine to kill a backend")
    with ExitStack() as stack:
        committed = stack.enter_context(psycopg.connect(**info, autocommit=True))
        immediate = stack.enter_context(psycopg.connect(**info))
        deferred = stack.enter_context(psycopg.connect(**info))
        victim = stack.enter_context(psycopg.connect(**info))
        committed.execute(
            f"INSERT INTO {BOOK} ({COLUMNS}) SELECT %s, 'c', g, g %% 2 = 0, '', '', '', '', 0, 0 "
            "FROM generate_series(1, 300) g",
            [ann.pk],
        )
        immediate.execute(
            f"INSERT INTO {BOOK} ({COLUMNS}) SELECT %s, 'i', g, true, '', '', '', '', 0, 0 "
            "FROM generate_series(1, 10000) g",
            [ann.pk],
        )
        deferred.execute("SELECT set_config('dbrules.deferred', 'on', true)")
        deferred.execute(f"DELETE FROM {BOOK} WHERE title = 'c' AND pages <= 100")
        os.kill(victim.info.backend_pid, signal.SIGKILL)
        # The postmaster notices the death and cuts every other backend.
        for conn in (victim, committed, immediate, deferred):
            assert_cut_off(conn)
    connection.close()  # Django's connection was cut too
    wait_for_server()

    assert Author.objects.get(pk=ann.pk).num_books == 10 + 300
    assert_exact(*ALL)
    with psycopg.connect(**info) as after:
        after.execute("SELECT set_config('dbrules.deferred', 'on', true)")
        after.execute(f"DELETE FROM {BOOK} WHERE title = 'c' AND pages <= 100")
        after.execute(f"UPDATE {BOOK} SET published = NOT published WHERE title = 'c'")
    with psycopg.connect(**info, autocommit=True) as after:
        after.execute(f"INSERT INTO {BOOK} ({COLUMNS}) VALUES (%s, 'a', 1, true, '', '', '', '', 0, 0)", [ann.pk])
    assert Author.objects.get(pk=ann.pk).num_books == 10 + 200 + 1
    assert_exact(*ALL)
