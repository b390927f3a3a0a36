"""Many writers at once on a few hot parents: Django ORM threads, raw psycopg
connections and pgbench, mixing inserts, moves, filter flips, deletes, M2M
changes and bulk statements. Afterwards: no drift, and no single-statement
transaction failed with a deadlock.

DBRULES_LOAD_SECONDS sets the duration of each load (default 3; the long
version in docs/reliability.md uses 60)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from django.db import connections
from psycopg import errors

import dbrules
from tests.bookstore.models import (
    Account, Author, Book, Depot, Loan, Parcel, Publisher, Reader, Shelf, ShelfItem, Tag, Transfer,
)
from tests.conftest import assert_exact, outside_conninfo

SECONDS = float(os.environ.get("DBRULES_LOAD_SECONDS", "3"))
BOOK, AUTHOR = Book._meta.db_table, Author._meta.db_table
TAGS = Book.tags.through._meta.db_table
COLUMNS = "author_id, title, pages, published, author_name, title_key, label, size, weight_grams, num_tags"
ALL = (Publisher, Author, Book, Tag, Reader)

LEVELS = {
    "read committed": errors.SerializationFailure,
    "repeatable read": errors.SerializationFailure,
    "serializable": errors.SerializationFailure,
}


def raw_writer(level: str, authors: list[int], tags: list[int], stop: float, seed: int, tally: Counter) -> None:
    rng = random.Random(seed)
    mine = f"w{seed}"
    with psycopg.connect(**outside_conninfo(), autocommit=True) as conn:
        conn.execute(f"SET default_transaction_isolation = '{level}'")
        while time.time() < stop:
            a, b = rng.sample(authors, 2)
            # Each writer changes only its own books (title = mine), so two
            # writers never wait on each other's child rows: any deadlock
            # would come from the parents dbrules updates.
            statement, params = rng.choice(
                [
                    (f"INSERT INTO {BOOK} ({COLUMNS}) SELECT (ARRAY[%s, %s])[1 + g %% 2], %s, g, g %% 3 = 0, "
                     "'', '', '', '', 0, 0 FROM generate_series(1, %s) g", [a, b, mine, rng.randint(1, 40)]),
                    (f"UPDATE {BOOK} SET author_id = %s WHERE id IN (SELECT id FROM {BOOK} WHERE author_id = %s "
                     "AND title = %s ORDER BY random() LIMIT 5)", [a, b, mine]),
                    (f"UPDATE {BOOK} SET published = NOT published, pages = pages + 1 "
                     "WHERE title = %s AND id %% 7 = %s", [mine, rng.randint(0, 6)]),
                    # Deletes the books' tag links in the same statement.
                    (f"WITH gone AS (SELECT id FROM {BOOK} WHERE author_id = %s AND title = %s "
                     f"ORDER BY random() LIMIT 3), links AS (DELETE FROM {TAGS} WHERE book_id IN "
                     f"(SELECT id FROM gone)) DELETE FROM {BOOK} WHERE id IN (SELECT id FROM gone)",
                     [a, mine]),
                    (f"INSERT INTO {TAGS} (book_id, tag_id) SELECT id, %s FROM {BOOK} WHERE author_id = %s "
                     "AND title = %s ORDER BY random() LIMIT 3 ON CONFLICT DO NOTHING", [rng.choice(tags), a, mine]),
                    (f"DELETE FROM {TAGS} WHERE id IN (SELECT t.id FROM {TAGS} t JOIN {BOOK} b ON b.id = t.book_id "
                     "WHERE b.title = %s ORDER BY random() LIMIT 2)", [mine]),
                ]
            )
            try:
                conn.execute(statement, params)
                tally["ok"] += 1
            except errors.DeadlockDetected:
                tally["deadlock"] += 1
            except errors.SerializationFailure:
                tally["serialization"] += 1  # the isolation level's own failure



def orm_writer(authors: list[int], stop: float, seed: int, tally: Counter) -> None:
    rng = random.Random(seed)
    try:
        while time.time() < stop:
            a, b = rng.sample(authors, 2)
            try:
                op = rng.randint(0, 3)
                if op == 0:
                    Book.objects.create(author_id=a, title="orm", pages=rng.randint(1, 500), published=True)
                elif op == 1:
                    Book.objects.bulk_create(
                        [Book(author_id=rng.choice(authors), title="orm", pages=i) for i in range(20)]
                    )
                elif op == 2:
                    books = list(Book.objects.filter(author_id=a, title="orm")[:10])
                    for book in books:
                        book.author_id, book.published = b, not book.published
                    Book.objects.bulk_update(books, ["author", "published"])
                else:
                    Book.objects.filter(author_id=a, title="orm", pages__lt=50).delete()
                tally["ok"] += 1
            except Exception as error:  # noqa: BLE001 - classified below
                cause = error.__cause__
                if isinstance(cause, errors.DeadlockDetected):
                    tally["deadlock"] += 1
                elif isinstance(cause, errors.SerializationFailure):
                    tally["serialization"] += 1
                else:
                    raise
    finally:
        connections.close_all()


def pgbench(authors: list[int], seconds: float, level: str, tmp: Path) -> str:
    script = tmp / "mixed.sql"
    script.write_text(
        f"\\set a random({min(authors)}, {max(authors)})\n"
        f"\\set b random({min(authors)}, {max(authors)})\n"
        f"INSERT INTO {BOOK} ({COLUMNS}) VALUES (:a, 'pgbench', :client_id, true, '', '', '', '', 0, 0);\n"
        f"UPDATE {BOOK} SET author_id = :b WHERE id = (SELECT max(id) FROM {BOOK} WHERE author_id = :a AND title = 'pgbench' AND pages = :client_id);\n"
        f"DELETE FROM {BOOK} WHERE id = (SELECT min(id) FROM {BOOK} WHERE author_id = :b AND title = 'pgbench' AND pages = :client_id);\n"
    )
    info = outside_conninfo()
    env = {**os.environ, "PGOPTIONS": "-c default_transaction_isolation=" + level.replace(" ", "\\ ")}
    args = ["pgbench", "-n", "-c", "4", "-j", "2", "-T", str(max(1, int(seconds))), "-f", str(script),
            "--max-tries", "20", "--failures-detailed",
            "-h", str(info.get("host") or "127.0.0.1"), "-U", info.get("user") or "postgres",
            "-p", str(info.get("port") or 5432), info["dbname"]]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=seconds + 60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def hot_shop() -> tuple[list[int], list[int]]:
    publisher = Publisher.objects.create(name="P", country="FR")
    authors = [Author.objects.create(name=f"hot{i}", publisher=publisher).pk for i in range(5)]
    tags = [Tag.objects.create(name=f"t{i}").pk for i in range(3)]
    Book.objects.bulk_create([Book(author_id=authors[i % 5], title="seed", pages=i) for i in range(200)])
    return authors, tags


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("level", list(LEVELS))
def test_concurrent_writers_leave_no_drift_and_no_deadlock(level, tmp_path):
    authors, tags = hot_shop()
    stop = time.time() + SECONDS
    tally: Counter = Counter()
    threads = [
        threading.Thread(target=raw_writer, args=(level, authors, tags, stop, seed, tally))
        for seed in range(4)
    ] + [threading.Thread(target=orm_writer, args=(authors, stop, 99, tally))]
    for thread in threads:
        thread.start()
    bench = pgbench(authors, SECONDS, level, tmp_path) if shutil.which("pgbench") else ""
    for thread in threads:
        thread.join()
    print(f"\n{level}: {dict(tally)}; pgbench: {' '.join(line.strip() for line in bench.splitlines() if 'failed' in line or 'processed' in line)}")
    assert tally["ok"] > 20, tally
    assert tally["deadlock"] == 0, tally
    if bench:
        assert "deadlock failures: 0" in bench or "deadlock" not in bench, bench
    assert_exact(*ALL)


def run_together(threads: list[threading.Thread]) -> None:
    """Start every program, then wait for all of them."""
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def multi_statement_writer(authors: list[int], stop: float, seed: int, tally: Counter, deferred: bool) -> None:
    rng = random.Random(seed)
    with psycopg.connect(**outside_conninfo()) as conn:
        while time.time() < stop:
            order = rng.sample(authors, len(authors))
            try:
                with conn.transaction():
                    if deferred:
                        conn.execute("SELECT set_config('dbrules.deferred', 'on', true)")
                    for author in order:
                        conn.execute(
                            f"INSERT INTO {BOOK} ({COLUMNS}) VALUES (%s, 'm', 1, true, '', '', '', '', 0, 0)",
                            [author],
                        )
                tally["ok"] += 1
            except errors.DeadlockDetected:
                tally["deadlock"] += 1


@pytest.mark.django_db(transaction=True)
def test_deferred_mode_removes_multi_statement_deadlocks():
    """Each transaction inserts one book per hot parent, parents in random
    order. Deferred, the parents are locked only at commit, in key order."""
    authors, _ = hot_shop()
    tally: Counter = Counter()
    stop = time.time() + SECONDS
    threads = [
        threading.Thread(target=multi_statement_writer, args=(authors, stop, seed, tally, True))
        for seed in range(6)
    ]
    run_together(threads)
    print(f"\ndeferred multi-statement: {dict(tally)}")
    assert tally["ok"] > 20 and tally["deadlock"] == 0, tally
    assert_exact(*ALL)


@pytest.mark.django_db(transaction=True)
def test_deferred_context_manager_applies_at_commit():
    ann = Author.objects.create(name="Ann")
    with dbrules.deferred():
        Book.objects.create(author=ann, title="a")
        assert Author.objects.get(pk=ann.pk).num_books == 0  # not yet: applied at commit
    assert Author.objects.get(pk=ann.pk).num_books == 1
    assert_exact(*ALL)


def _while_source_changes(change: str, params: list, write: str, write_params: list) -> None:
    """Run ``write`` in one connection while ``change`` (a source of a copy,
    changed first) is still uncommitted in another; then commit both."""
    with psycopg.connect(**outside_conninfo()) as changer, psycopg.connect(
        **outside_conninfo(), autocommit=True
    ) as writer:
        changer.execute(change, params)
        errors_seen: list[BaseException] = []

        def run() -> None:
            try:
                writer.execute(write, write_params)
            except BaseException as error:  # reported below
                errors_seen.append(error)

        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(0.5)  # the writer has read the copy's source by now
        changer.commit()
        thread.join(timeout=30)
        assert not thread.is_alive() and not errors_seen, errors_seen


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("write", ["insert", "move", "insert two", "move two"])
def test_copy_written_while_its_source_changes_follows_the_change(write):
    """A copy is read when its row is written; a change of the source still
    in flight then is invisible to it, and the change's cascade does not see
    the new row either. dbrules locks the sources and checks the copies
    again after the statement, in key order."""
    publisher = Publisher.objects.create(name="P", country="FR")
    ann = Author.objects.create(name="Ann", publisher=publisher)
    bob = Author.objects.create(name="Bob")
    book = Book.objects.create(author=bob, title="t")
    other = Book.objects.create(author=bob, title="u")
    # One row, or two (the set-based path): one for Ann, one for Bob.
    sql, params = {
        "insert": (f"INSERT INTO {BOOK} ({COLUMNS}) VALUES (%s, 'x', 1, true, '', '', '', '', 0, 0)", [ann.pk]),
        "move": (f"UPDATE {BOOK} SET author_id = %s WHERE id = %s", [ann.pk, book.pk]),
        "insert two": (
            f"INSERT INTO {BOOK} ({COLUMNS}) VALUES (%s, 'x', 1, true, '', '', '', '', 0, 0), "
            "(%s, 'z', 1, true, '', '', '', '', 0, 0)",
            [ann.pk, bob.pk],
        ),
        "move two": (
            f"UPDATE {BOOK} SET author_id = CASE WHEN id = %s THEN %s ELSE %s END WHERE id IN (%s, %s)",
            [book.pk, ann.pk, Author.objects.create(name="Cy").pk, book.pk, other.pk],
        ),
    }[write]
    _while_source_changes(f"UPDATE {AUTHOR} SET name = 'Anne' WHERE id = %s", [ann.pk], sql, params)
    assert set(Book.objects.filter(author=ann).values_list("author_name", flat=True)) == {"Anne"}
    # Two hops: the publisher's country, copied through the author.
    _while_source_changes(
        f"UPDATE {Publisher._meta.db_table} SET country = 'DE' WHERE id = %s", [publisher.pk],
        f"INSERT INTO {BOOK} ({COLUMNS}) VALUES (%s, 'y', 1, true, '', '', '', '', 0, 0)", [ann.pk],
    )
    assert set(Book.objects.filter(author=ann).values_list("publisher_country", flat=True)) == {"DE"}
    # A source no count rule locks: Loan.book_title, from the book.
    reader = Reader.objects.create(name="R")
    loan = Loan._meta.db_table
    _while_source_changes(
        f"UPDATE {BOOK} SET title = 'Retitled' WHERE id = %s", [book.pk],
        f"INSERT INTO {loan} (reader_id, book_id, returned, book_title) VALUES (%s, %s, false, '')",
        [reader.pk, book.pk],
    )
    assert Loan.objects.get().book_title == "Retitled"
    assert_exact(*ALL, Loan)


@pytest.mark.django_db(transaction=True)
def test_copy_swapped_onto_a_source_no_count_locks_follows_its_change():
    """Two items trade shelves in one statement: each shelf loses one and
    gains one, so the count trigger neither changes nor locks either shelf.
    The item arriving on the renamed shelf copied its old name; the one
    leaving it waits for the rename's cascade, and the copy check after
    the statement finds the arriving copy stale and rewrites it."""
    first, second = Shelf.objects.create(name="First"), Shelf.objects.create(name="Second")
    item, other = ShelfItem.objects.create(shelf=first), ShelfItem.objects.create(shelf=second)
    table = ShelfItem._meta.db_table
    _while_source_changes(
        f"UPDATE {Shelf._meta.db_table} SET name = 'Renamed' WHERE id = %s", [second.pk],
        f"UPDATE {table} SET shelf_id = CASE WHEN shelf_id = %s THEN %s ELSE %s END WHERE id IN (%s, %s)",
        [first.pk, second.pk, first.pk, item.pk, other.pk],
    )
    assert ShelfItem.objects.get(pk=item.pk).shelf_name == "Renamed"
    assert_exact(Shelf, ShelfItem)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("write", ["insert", "insert two", "move", "move two"])
def test_a_copy_given_while_its_source_changes_follows_the_change(write):
    """An insert or a move that gives its copy (as Django does from an
    instance it holds) skips the row trigger's lookup; the copy check after
    the statement waits for the rename in flight and rewrites the old name
    it was given."""
    first, second = Shelf.objects.create(name="First"), Shelf.objects.create(name="Second")
    item = ShelfItem.objects.create(shelf=first)
    ShelfItem.objects.create(shelf=first)
    table = ShelfItem._meta.db_table
    sql, params = {
        "insert": (f"INSERT INTO {table} (shelf_id, shelf_name) VALUES (%s, 'Second')", [second.pk]),
        "insert two": (
            f"INSERT INTO {table} (shelf_id, shelf_name) VALUES (%s, 'Second'), (%s, 'Second')",
            [second.pk, second.pk],
        ),
        "move": (f"UPDATE {table} SET shelf_id = %s, shelf_name = 'Second' WHERE id = %s", [second.pk, item.pk]),
        "move two": (
            f"UPDATE {table} SET shelf_id = %s, shelf_name = 'Second' WHERE shelf_id = %s", [second.pk, first.pk]
        ),
    }[write]
    _while_source_changes(
        f"UPDATE {Shelf._meta.db_table} SET name = 'Renamed' WHERE id = %s", [second.pk], sql, params
    )
    assert set(ShelfItem.objects.filter(shelf=second).values_list("shelf_name", flat=True)) == {"Renamed"}
    assert_exact(Shelf, ShelfItem)


# One field of the depot changes, from one value to another: text by min
# and max (the new value the least of the copies or the greatest, NULL beside
# values), an integer, a boolean, and a uuid (grouped by value).
DEPOT_CHANGES = {
    "name to a lesser value": ("name", "Beta", "Alpha"),
    "name to a greater value": ("name", "Alpha", "Beta"),
    "name to NULL": ("name", "Alpha", None),
    "name from NULL": ("name", None, "Alpha"),
    "priority to a greater value": ("priority", 1, 2),
    "is_open to false": ("is_open", True, False),
    "code to NULL": ("code", uuid.UUID(int=1), None),
}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("change", DEPOT_CHANGES)
@pytest.mark.parametrize("write", ["insert", "move", "insert one"])
def test_copies_of_one_source_that_differ_within_a_statement_are_rechecked(write, change):
    """One statement writes two parcels of the same depot, and the depot
    changes between the two rows: the first copies the old value, the
    second the new. The copy check then meets copies of one first hop that
    differ, and rewrites the stale one. A one-row insert copies the old
    value alone, and its check rewrites it."""
    field, before, after = DEPOT_CHANGES[change]
    depot = Depot.objects.create(**{field: before})
    elsewhere = Depot.objects.create(name="Elsewhere")
    table = Parcel._meta.db_table
    # The second row is written 0.8 s after the first; the change commits
    # in between (_while_source_changes waits half a second).
    later = "pg_catalog.pg_sleep(0.8)::text = ''"
    rows = 2
    if write == "insert one":
        sql, params, rows = f"INSERT INTO {table} (depot_id) VALUES (%s)", [depot.pk], 1
    elif write == "insert":
        sql = f"INSERT INTO {table} (depot_id) SELECT %s FROM generate_series(1, 2) AS g WHERE g = 1 OR {later}"
        params = [depot.pk]
    else:
        first, second = Parcel.objects.create(depot=elsewhere), Parcel.objects.create(depot=elsewhere)
        sql = f"UPDATE {table} SET depot_id = %s WHERE id IN (%s, %s) AND (id = %s OR {later})"
        params = [depot.pk, first.pk, second.pk, first.pk]
    _while_source_changes(f"UPDATE {Depot._meta.db_table} SET {field} = %s WHERE id = %s", [after, depot.pk], sql, params)
    copy = {"name": "depot_name", "code": "depot_code", "priority": "depot_priority", "is_open": "depot_open"}[field]
    assert list(Parcel.objects.filter(depot=depot).values_list(copy, flat=True)) == [after] * rows
    assert_exact(Parcel)


def _move_back_and_forth(table: str, column: str, moves: list[tuple[int, int, int]]) -> Counter:
    """One program per ``(row, there, back)``: for SECONDS, move the row's
    ``column`` to ``there`` and back, one row per statement, each its own
    transaction. Returns the statements that succeeded and the deadlocks."""
    tally: Counter = Counter()
    stop = time.time() + SECONDS

    def mover(row: int, there: int, back: int) -> None:
        with psycopg.connect(**outside_conninfo(), autocommit=True) as conn:
            while time.time() < stop:
                for parent in (there, back):
                    try:
                        conn.execute(f"UPDATE {table} SET {column} = %s WHERE id = %s", [parent, row])
                        tally["ok"] += 1
                    except errors.DeadlockDetected:
                        tally["deadlock"] += 1

    threads = [threading.Thread(target=mover, args=move) for move in moves]
    run_together(threads)
    return tally


@pytest.mark.django_db(transaction=True)
def test_opposite_one_row_moves_lock_both_parents_in_key_order():
    """Two programs keep moving an item each between the same two shelves in
    opposite directions, one row per statement. Each statement updates both
    shelves; taking their locks in key order, neither ever waits for the
    other in a cycle (no deadlock), and the counts stay exact."""
    first, second = Shelf.objects.create(name="First"), Shelf.objects.create(name="Second")
    mine, yours = ShelfItem.objects.create(shelf=first), ShelfItem.objects.create(shelf=second)
    tally = _move_back_and_forth(
        ShelfItem._meta.db_table, "shelf_id", [(mine.pk, second.pk, first.pk), (yours.pk, first.pk, second.pk)]
    )
    assert tally["ok"] > 100 and tally["deadlock"] == 0, tally
    assert_exact(Shelf, ShelfItem)


@pytest.mark.django_db(transaction=True)
def test_one_row_moves_lock_chained_grandparents_in_key_order():
    """One-row moves between authors of two publishers, in crossing order:
    each move updates two authors, and each author's count update updates
    its publisher (a chained rule). The publishers, too, must be locked in
    key order, or two such programs deadlock."""
    first, second = Publisher.objects.create(name="P1"), Publisher.objects.create(name="P2")
    # Keys ascend in creation order: a1 < a2 < a3 < a4.
    a1, a2, a3, a4 = (Author.objects.create(name=f"a{i}", publisher=p)
                      for i, p in enumerate([second, first, first, second], start=1))
    tally = _move_back_and_forth(BOOK, "author_id", [
        (Book.objects.create(author=a1, title="x").pk, a3.pk, a1.pk),  # P2 -> P1 and back
        (Book.objects.create(author=a2, title="y").pk, a4.pk, a2.pk),  # P1 -> P2 and back
    ])
    assert tally["ok"] > 100 and tally["deadlock"] == 0, tally
    assert_exact(Publisher, Author, Book)


def _transfer_back_and_forth(first: int, second: int, deferred: bool) -> Counter:
    """Two programs insert one-row transfers between the same two accounts
    for SECONDS, in opposite directions, each its own transaction; deferred,
    by dbrules.deferred. Returns the transfers committed and the deadlocks."""
    tally: Counter = Counter()
    stop = time.time() + SECONDS
    table = Transfer._meta.db_table

    def sender(source: int, target: int) -> None:
        with psycopg.connect(**outside_conninfo()) as conn:
            while time.time() < stop:
                try:
                    with conn.transaction():
                        if deferred:
                            conn.execute("SELECT set_config('dbrules.deferred', 'on', true)")
                        conn.execute(
                            f"INSERT INTO {table} (source_id, target_id, amount, source_name) VALUES (%s, %s, 1, '')",
                            [source, target],
                        )
                    tally["ok"] += 1
                except errors.DeadlockDetected:
                    tally["deadlock"] += 1

    threads = [threading.Thread(target=sender, args=pair) for pair in ((first, second), (second, first)) * 2]
    run_together(threads)
    return tally


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("deferred", [False, True], ids=["immediate", "deferred"])
def test_opposite_transfers_lock_both_relations_parents_in_one_key_order(deferred):
    """A transfer changes its source account through one relation and its
    target through another. Locked one relation after the other, A -> B and
    B -> A each hold one account the other waits for; dbrules locks the
    parents of both relations together, in key order, at the statement or
    at commit."""
    first, second = Account.objects.create(name="A"), Account.objects.create(name="B")
    tally = _transfer_back_and_forth(first.pk, second.pk, deferred)
    assert tally["ok"] > 100 and tally["deadlock"] == 0, tally
    assert_exact(Account, Transfer)


@pytest.mark.django_db(transaction=True)
def test_deferred_commits_lock_several_parent_tables_in_one_order():
    """Deferred transactions that write books and loans, some a book first
    and some a loan first. Applied one relation at a time, in the order each
    transaction first parked, two commits would each hold the author or the
    reader the other waits for; the first apply of a commit locks every
    parked parent first, table by table in one order."""
    publisher = Publisher.objects.create(name="P")
    author = Author.objects.create(name="A", publisher=publisher)
    reader = Reader.objects.create(name="R")
    # One book: the first commit makes the author "established", a copy the
    # books of commits in flight took as "new" (checked again at commit).
    book = Book.objects.create(author=author, title="lent")
    loan = Loan._meta.db_table
    writes = {
        "book": (f"INSERT INTO {BOOK} ({COLUMNS}) VALUES (%s, 'd', 1, true, '', '', '', '', 0, 0)", [author.pk]),
        "loan": (
            f"INSERT INTO {loan} (reader_id, book_id, returned, book_title) VALUES (%s, %s, false, '')",
            [reader.pk, book.pk],
        ),
    }
    tally: Counter = Counter()
    stop = time.time() + SECONDS

    def writer(order: tuple[str, str]) -> None:
        with psycopg.connect(**outside_conninfo()) as conn:
            while time.time() < stop:
                try:
                    with conn.transaction():
                        conn.execute("SELECT set_config('dbrules.deferred', 'on', true)")
                        for name in order:
                            conn.execute(*writes[name])
                    tally["ok"] += 1
                except errors.DeadlockDetected:
                    tally["deadlock"] += 1

    threads = [threading.Thread(target=writer, args=(order,)) for order in [("book", "loan"), ("loan", "book")] * 2]
    run_together(threads)
    assert tally["ok"] > 100 and tally["deadlock"] == 0, tally
    assert_exact(Publisher, Author, Reader, Book, Loan)


def _deferred_writer() -> psycopg.Connection:
    conn = psycopg.connect(**outside_conninfo())
    conn.execute("SELECT set_config('dbrules.deferred', 'on', true)")
    return conn


@pytest.mark.django_db(transaction=True)
def test_deferred_copies_are_checked_at_commit_against_a_source_changed_meanwhile():
    """A deferred transaction copies an author's name and standing, then a
    rename and another deferred transaction's book commit before it (the
    second book makes the author "established"). Neither change could see
    its uncommitted book; at its commit the book's copies are checked
    again, with the author locked, and follow both."""
    author = Author.objects.create(name="Ann")
    Book.objects.create(author=author, title="first")
    late, early = _deferred_writer(), _deferred_writer()
    insert = f"INSERT INTO {BOOK} ({COLUMNS}) VALUES (%s, %s, 1, true, '', '', '', '', 0, 0)"
    late.execute(insert, [author.pk, "late"])  # copies "Ann", "new"
    early.execute(insert, [author.pk, "early"])
    early.commit()  # two books: "established", copied to the rows it can see
    with psycopg.connect(**outside_conninfo(), autocommit=True) as renamer:
        renamer.execute(f"UPDATE {AUTHOR} SET name = 'Anne' WHERE id = %s", [author.pk])
    late.commit()
    late.close(), early.close()
    book = Book.objects.get(title="late")
    assert (book.author_name, book.author_standing) == ("Anne", "established")
    assert_exact(Author, Book)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("source", ["author", "publisher"])
def test_deferred_copies_wait_at_commit_for_a_source_change_in_flight(source):
    """A rename of the author (one hop) or of the publisher's country (two
    hops) is written but not committed when a deferred transaction inserts a
    book copying the old values. The rename's cascade ran before that book
    existed, so the commit's check must wait for the rename and read what
    it committed: the commit locks the sources its noted rows point at."""
    publisher = Publisher.objects.create(name="P", country="de")
    author = Author.objects.create(name="Ann", publisher=publisher)
    renamer = psycopg.connect(**outside_conninfo())
    if source == "author":
        renamer.execute(f"UPDATE {AUTHOR} SET name = 'Anne' WHERE id = %s", [author.pk])
    else:
        renamer.execute(f"UPDATE {Publisher._meta.db_table} SET country = 'fr' WHERE id = %s", [publisher.pk])
    writer = _deferred_writer()
    writer.execute(f"INSERT INTO {BOOK} ({COLUMNS}) VALUES (%s, 'late', 1, true, '', '', '', '', 0, 0)", [author.pk])
    committing = threading.Thread(target=writer.commit)
    committing.start()
    committing.join(timeout=1.0)
    waited = committing.is_alive()
    renamer.commit()
    committing.join()
    writer.close(), renamer.close()
    book = Book.objects.get(title="late")
    assert waited, "the commit did not wait for the source being changed"
    assert (book.author_name, book.publisher_country) == (
        ("Anne", "de") if source == "author" else ("Ann", "fr")
    )
    assert_exact(Author, Book, Publisher)
