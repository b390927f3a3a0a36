"""A session plans each statement of a trigger function once, with the row
counts of that first run, and keeps the plan. The write paths must stay
cheap whatever planned them first. Small statements first, then statements
of N rows: no plan node may visit more than a few rows per written row (a
nested loop over two transition tables or CTEs, planned for two rows,
visits N * N). Statements of N rows first, then small ones: no node may
visit a whole table of N rows (a hash join planned for N rows scans every
parent on each later two-row statement). And a commit reads the rows it
parked once, not once per row."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.bookstore.models import (
    Account,
    Author,
    Book,
    Depot,
    Parcel,
    Publisher,
    Shelf,
    ShelfItem,
    Transfer,
)
from tests.conftest import assert_exact, outside_conninfo

pytestmark = pytest.mark.django_db(transaction=True)

N = 2000
# The most rows one plan node may visit in a statement of N rows (a linear
# plan visits each a few times, a quadratic one N * N / 2) and in one of two.
MOST_VISITS = {"large": 10 * N, "small": N // 10}

NODE = re.compile(r"^\s*(?:->\s+)?(?P<node>.+?)\s+\(cost=[^)]*\)\s+\(actual rows=(?P<rows>\d+) loops=(?P<loops>\d+)\)")
REMOVED = re.compile(r"Rows Removed by (?:Join )?Filter: (?P<removed>\d+)")


class ExplainedSession:
    """A new connection (so a plan cache of its own) that receives the plan
    of every statement, triggers' included, as a notice."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.plans: list[str] = []
        self.statements: set[str] = set()
        conn.add_notice_handler(lambda diag: self.plans.append(diag.message_primary or ""))

    def run(self, *statements: str) -> None:
        for statement in statements:
            self.statements.add(statement)
            self.conn.execute(statement)

    def heaviest_nodes(self, limit: int) -> list[tuple[int, str, str]]:
        """(rows visited, node, statement) for every node over ``limit``."""
        heavy = []
        for plan in self.plans:
            text = plan.split("Query Text: ", 1)[-1]
            if any(text.startswith(own) for own in self.statements):
                continue  # the test's own statement: only the triggers' are checked
            statement = text.split("\n", 1)[0][:80]
            node, visited, loops = "", 0, 1
            for line in plan.splitlines():
                if match := NODE.match(line):
                    node, loops = match["node"], int(match["loops"])
                    visited = int(match["rows"]) * loops
                elif match := REMOVED.search(line):
                    visited += int(match["removed"]) * loops
                else:
                    continue
                if visited > limit:
                    heavy.append((visited, node, statement))
        return heavy


@pytest.fixture
def session() -> Iterator[ExplainedSession]:
    with psycopg.connect(**outside_conninfo(), autocommit=True) as conn:
        try:
            conn.execute("LOAD 'auto_explain'")
        except psycopg.Error:
            pytest.skip("this server has no auto_explain module, which shows the plans inside triggers")
        for setting in ("log_min_duration = 0", "log_nested_statements = on", "log_analyze = on",
                        "log_timing = off", "log_level = notice"):
            conn.execute(f"SET auto_explain.{setting}")
        yield ExplainedSession(conn)


def table(model: Any) -> str:
    return model._meta.db_table


@pytest.fixture(params=["small", "large"])
def first(request: Any) -> str:
    """Which statements of each write path run first, and so plan it."""
    return request.param


def plan_both_ways(
    session: ExplainedSession, first: str, models: list[Any], setup: list[str], paths: list[tuple[str, str]]
) -> None:
    """Every path's statements of one size (``first``), so that they plan
    the triggers' statements; then every path's statements of the other
    size, whose plans are checked. The statements name rows by key, counted
    from 1 in ``models``' tables."""
    session.run(f"TRUNCATE {', '.join(table(m) for m in models)} RESTART IDENTITY CASCADE", *setup)
    sizes = {"small": [small for small, _ in paths], "large": [large for _, large in paths]}
    then = "large" if first == "small" else "small"
    session.run(*sizes[first])
    session.plans.clear()
    session.run(*sizes[then])
    assert session.plans, "auto_explain showed no plan"
    heavy = session.heaviest_nodes(MOST_VISITS[then])
    assert not heavy, "plan nodes visiting too many rows:\n" + "\n".join(map(str, heavy))


def first_two(model: Any) -> str:
    """The two lowest keys of ``model``'s table that are still there."""
    return f"id IN (SELECT id FROM {table(model)} ORDER BY id LIMIT 2)"


def shelf_paths() -> tuple[str, list[tuple[str, str]]]:
    """The shelves' setup, and their items inserted, moved and renamed."""
    shelf, item = table(Shelf), table(ShelfItem)
    setup = f"INSERT INTO {shelf} (name, num_items) SELECT 'shelf ' || i, 0 FROM generate_series(1, {N}) AS i"
    return setup, [
        (f"INSERT INTO {item} (shelf_id, shelf_name) SELECT id, '' FROM {shelf} WHERE id <= 2",
         f"INSERT INTO {item} (shelf_id, shelf_name) SELECT id, '' FROM {shelf}"),
        (f"UPDATE {item} SET shelf_id = shelf_id % {N} + 1 WHERE {first_two(ShelfItem)}",
         f"UPDATE {item} SET shelf_id = shelf_id % {N} + 1"),
        (f"UPDATE {shelf} SET name = name || ' (a)' WHERE id <= 2",
         f"UPDATE {shelf} SET name = name || ' (b)'"),
    ]


def test_counted_parents_and_copies(session, first):
    item = table(ShelfItem)
    setup, paths = shelf_paths()
    deletes = (f"DELETE FROM {item} WHERE {first_two(ShelfItem)}", f"DELETE FROM {item} WHERE id % 2 = 0")
    plan_both_ways(session, first, [Shelf, ShelfItem], [setup], [*paths, deletes])
    assert_exact(Shelf, ShelfItem)


def test_extremes_that_rescan_and_copies_two_hops_away(session, first):
    publisher, author, book = table(Publisher), table(Author), table(Book)
    plan_both_ways(
        session,
        first,
        [Publisher, Author, Book],
        [
            f"INSERT INTO {publisher} (name, country, num_authors, total_books) "
            f"SELECT 'publisher ' || i, 'p' || i % 10, 0, 0 FROM generate_series(1, {N // 2}) AS i",
            f"INSERT INTO {author} (name, email, publisher_id, num_books, num_published, total_pages, standing) "
            f"SELECT 'author ' || i, 'A' || i || '@X', i % {N // 2} + 1, 0, 0, 0, '' FROM generate_series(1, {N}) AS i",
        ],
        [
            (f"INSERT INTO {book} (author_id, title, pages, price, published, published_on, author_name, "
             f"author_standing, title_key, label, size, weight_grams, num_tags) "
             f"SELECT id, 'Book', 100, 9.50, true, '2020-01-01', '', '', '', '', '', 0, 0 FROM {author} WHERE id <= 2",
             f"INSERT INTO {book} (author_id, title, pages, price, published, published_on, author_name, "
             f"author_standing, title_key, label, size, weight_grams, num_tags) "
             f"SELECT id % {N} + 1, 'Book ' || id, id % 500, id % 7 + 0.5, id % 3 = 0, "
             f"DATE '2020-01-01' + (id % 300)::int, '', '', '', '', '', 0, 0 FROM {author}"),
            (f"UPDATE {book} SET pages = pages + 1, published = NOT published WHERE {first_two(Book)}",
             f"UPDATE {book} SET pages = pages + 1, published = NOT published"),
            (f"UPDATE {book} SET author_id = author_id % {N} + 1 WHERE {first_two(Book)}",
             f"UPDATE {book} SET author_id = author_id % {N} + 1"),
            (f"UPDATE {author} SET name = name || ' (a)' WHERE id <= 2",
             f"UPDATE {author} SET name = name || ' (b)'"),
            (f"UPDATE {publisher} SET country = 'q' WHERE id <= 2",
             f"UPDATE {publisher} SET country = 'r'"),
            (f"DELETE FROM {book} WHERE {first_two(Book)}",
             f"DELETE FROM {book} WHERE id % 2 = 0"),
        ],
    )
    assert_exact(Publisher, Author, Book)


def test_two_relations_to_one_parent_table(session, first):
    account, transfer = table(Account), table(Transfer)
    plan_both_ways(
        session,
        first,
        [Account, Transfer],
        [f"INSERT INTO {account} (name, num_sent, total_sent, total_received) "
         f"SELECT 'account ' || i, 0, 0, 0 FROM generate_series(1, {N}) AS i"],
        [
            (f"INSERT INTO {transfer} (source_id, target_id, amount, source_name) "
             f"SELECT id, id % {N} + 1, 5, '' FROM {account} WHERE id <= 2",
             f"INSERT INTO {transfer} (source_id, target_id, amount, source_name) "
             f"SELECT id, (id * 7) % {N} + 1, id % 9, '' FROM {account}"),
            (f"UPDATE {transfer} SET source_id = target_id, target_id = source_id WHERE {first_two(Transfer)}",
             f"UPDATE {transfer} SET source_id = target_id, target_id = source_id"),
            (f"DELETE FROM {transfer} WHERE {first_two(Transfer)}",
             f"DELETE FROM {transfer} WHERE id % 2 = 0"),
        ],
    )
    assert_exact(Account, Transfer)


def test_sources_inserted_and_changed(session, first):
    depot, parcel = table(Depot), table(Parcel)
    plan_both_ways(
        session,
        first,
        [Depot, Parcel],
        [],
        [
            (f"INSERT INTO {depot} (name, code, priority, is_open) SELECT 'depot ' || i, NULL, i, true "
             f"FROM generate_series(1, 2) AS i",
             f"INSERT INTO {depot} (name, code, priority, is_open) SELECT 'depot ' || i, gen_random_uuid(), i, "
             f"i % 2 = 0 FROM generate_series(1, {N}) AS i"),
            (f"INSERT INTO {parcel} (depot_id) SELECT id FROM {depot} WHERE id <= 2",
             f"INSERT INTO {parcel} (depot_id) SELECT id FROM {depot}"),
            (f"UPDATE {depot} SET priority = priority + 1, is_open = NOT is_open WHERE id <= 2",
             f"UPDATE {depot} SET priority = priority + 1, is_open = NOT is_open, code = gen_random_uuid()"),
        ],
    )
    assert_exact(Parcel)


def test_deferred_commits(session, first):
    def deferred(statement: str) -> str:
        return f"BEGIN; SET LOCAL dbrules.deferred = on; {statement}; COMMIT"

    setup, paths = shelf_paths()
    deferred_paths = [(deferred(small), deferred(large)) for small, large in paths]
    plan_both_ways(session, first, [Shelf, ShelfItem], [setup], deferred_paths)
    assert_exact(Shelf, ShelfItem)


def test_a_deferred_commit_reads_its_parked_rows_once(outside):
    """A commit-time trigger fires once per row its pending or recopy table
    received, and only the first firing may read that table: the later ones
    found in its index every row the first had deleted (a transaction's own
    deleted rows stay there until it ends), N * N entries for N parents."""
    setup, paths = shelf_paths()
    outside.execute(f"TRUNCATE {table(Shelf)}, {table(ShelfItem)} RESTART IDENTITY CASCADE")
    outside.execute(setup)

    def entries_read() -> int:
        outside.execute("SELECT pg_stat_force_next_flush()")  # this session's counts, for the next read
        outside.execute("SELECT pg_stat_clear_snapshot()")
        row = outside.execute(
            "SELECT coalesce(sum(idx_tup_read), 0) FROM pg_stat_all_indexes WHERE schemaname = 'dbrules'"
        ).fetchone()
        return int(row[0])

    for _, large in paths:
        before = entries_read()
        outside.execute(f"BEGIN; SET LOCAL dbrules.deferred = on; {large}; COMMIT")
        read = entries_read() - before
        assert read <= 10 * N, f"{large[:40]}...: the commit read {read} entries of the pending tables' indexes"
    assert_exact(Shelf, ShelfItem)
