"""A session plans each statement of a trigger function once, with the row
counts of that first run, and keeps the plan. The write paths must stay
cheap whatever planned them first. Statements of several rows run on one of
two copies of their trigger statements, one for fewer than FEW_ROWS rows and
one for more (plans_by_size.sql), so each copy is checked both ways: small
(two rows) or medium (just over FEW_ROWS) statements first, then statements
of N rows: no plan node may visit more than a few rows per written row (a
nested loop over two transition tables or CTEs, planned for two rows,
visits N * N). Statements of N rows first, then small ones: no node may
visit a whole table of N rows (a hash join planned for N rows scans every
parent on each later two-row statement); medium ones may read a table once,
as a new session plans them too, but no more. And a commit reads the rows
it parked once, not once per row."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from dbrules.triggers import FEW_ROWS
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
# Rows a statement of each size writes: medium statements run the copy for
# FEW_ROWS rows or more, small ones the copy for fewer.
ROWS = {"small": 2, "medium": 2 * FEW_ROWS, "large": N}
# The most rows one plan node may visit in a statement of each size: a
# linear plan visits each written row a few times, a quadratic one N * N / 2
# for N rows, and a plan made for N rows, run for two, the whole table. A
# medium statement may read a table once (N rows and the medium ones):
# PostgreSQL estimates at most 200 groups of a transition table's rows, so
# from 200 rows on every statement gets the plan of 200, which over 2,000
# parents hashes them all in a new session too. A nested loop over both
# would visit N rows per written row.
MOST_VISITS = {"small": N // 10, "medium": 2 * N, "large": 10 * N}
# A path writes ``rows`` rows, counted from the lowest keys (N: every row).
Path = Callable[[int], str]

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


@pytest.fixture(params=[("small", "large"), ("medium", "large"), ("large", "small"), ("large", "medium")],
                ids="-then-".join)
def order(request: Any) -> tuple[str, str]:
    """Which size of each write path runs first, and so plans it, and which
    runs next on those plans."""
    return request.param


def plan_both_ways(
    session: ExplainedSession, order: tuple[str, str], models: list[Any], setup: list[str], paths: list[Path]
) -> None:
    """Every path at one size (``order[0]``), so that they plan the triggers'
    statements; then every path at the other, whose plans are checked."""
    first, then = order
    session.run(f"TRUNCATE {', '.join(table(m) for m in models)} RESTART IDENTITY CASCADE", *setup)
    session.run(*(path(ROWS[first]) for path in paths))
    session.plans.clear()
    session.run(*(path(ROWS[then]) for path in paths))
    assert session.plans, "auto_explain showed no plan"
    heavy = session.heaviest_nodes(MOST_VISITS[then])
    assert not heavy, f"{then} statements, plan nodes visiting too many rows:\n" + "\n".join(map(str, heavy))


def first_rows(model: Any, rows: int) -> str:
    """The ``rows`` lowest keys of ``model``'s table that are still there."""
    return f"id IN (SELECT id FROM {table(model)} ORDER BY id LIMIT {rows})"


def shelf_paths() -> tuple[str, list[Path]]:
    """The shelves' setup, and their items inserted, moved and renamed."""
    shelf, item = table(Shelf), table(ShelfItem)
    setup = f"INSERT INTO {shelf} (name, num_items) SELECT 'shelf ' || i, 0 FROM generate_series(1, {N}) AS i"
    return setup, [
        lambda rows: f"INSERT INTO {item} (shelf_id, shelf_name) SELECT id, '' FROM {shelf} WHERE id <= {rows}",
        lambda rows: f"UPDATE {item} SET shelf_id = shelf_id % {N} + 1 WHERE {first_rows(ShelfItem, rows)}",
        lambda rows: f"UPDATE {shelf} SET name = name || ' ({rows})' WHERE id <= {rows}",
    ]


def test_counted_parents_and_copies(session, order):
    item = table(ShelfItem)
    setup, paths = shelf_paths()
    paths.append(lambda rows: f"DELETE FROM {item} WHERE {first_rows(ShelfItem, rows // 2)}")
    plan_both_ways(session, order, [Shelf, ShelfItem], [setup], paths)
    assert_exact(Shelf, ShelfItem)


def test_extremes_that_rescan_and_copies_two_hops_away(session, order):
    publisher, author, book = table(Publisher), table(Author), table(Book)
    plan_both_ways(
        session,
        order,
        [Publisher, Author, Book],
        [
            f"INSERT INTO {publisher} (name, country, num_authors, total_books) "
            f"SELECT 'publisher ' || i, 'p' || i % 10, 0, 0 FROM generate_series(1, {N // 2}) AS i",
            f"INSERT INTO {author} (name, email, publisher_id, num_books, num_published, total_pages, standing) "
            f"SELECT 'author ' || i, 'A' || i || '@X', i % {N // 2} + 1, 0, 0, 0, '' FROM generate_series(1, {N}) AS i",
        ],
        [
            lambda rows: f"INSERT INTO {book} (author_id, title, pages, price, published, published_on, author_name, "
            f"author_standing, title_key, label, size, weight_grams, num_tags) "
            f"SELECT id % {N} + 1, 'Book ' || id, id % 500, id % 7 + 0.5, id % 3 = 0, "
            f"DATE '2020-01-01' + (id % 300)::int, '', '', '', '', '', 0, 0 FROM {author} WHERE id <= {rows}",
            lambda rows: f"UPDATE {book} SET pages = pages + 1, published = NOT published WHERE {first_rows(Book, rows)}",
            lambda rows: f"UPDATE {book} SET author_id = author_id % {N} + 1 WHERE {first_rows(Book, rows)}",
            lambda rows: f"UPDATE {author} SET name = name || ' ({rows})' WHERE id <= {rows}",
            lambda rows: f"UPDATE {publisher} SET country = 'k' || {rows % 10} WHERE id <= {rows}",
            lambda rows: f"DELETE FROM {book} WHERE {first_rows(Book, rows // 2)}",
        ],
    )
    assert_exact(Publisher, Author, Book)


def test_two_relations_to_one_parent_table(session, order):
    account, transfer = table(Account), table(Transfer)
    plan_both_ways(
        session,
        order,
        [Account, Transfer],
        [f"INSERT INTO {account} (name, num_sent, total_sent, total_received) "
         f"SELECT 'account ' || i, 0, 0, 0 FROM generate_series(1, {N}) AS i"],
        [
            lambda rows: f"INSERT INTO {transfer} (source_id, target_id, amount, source_name) "
            f"SELECT id, (id * 7) % {N} + 1, id % 9, '' FROM {account} WHERE id <= {rows}",
            lambda rows: f"UPDATE {transfer} SET source_id = target_id, target_id = source_id "
            f"WHERE {first_rows(Transfer, rows)}",
            lambda rows: f"DELETE FROM {transfer} WHERE {first_rows(Transfer, rows // 2)}",
        ],
    )
    assert_exact(Account, Transfer)


def test_sources_inserted_and_changed(session, order):
    depot, parcel = table(Depot), table(Parcel)
    plan_both_ways(
        session,
        order,
        [Depot, Parcel],
        [],
        [
            # Odd depots have no code: a copy of NULL.
            lambda rows: f"INSERT INTO {depot} (name, code, priority, is_open) SELECT 'depot ' || i, "
            f"CASE WHEN i % 2 = 0 THEN gen_random_uuid() END, i, i % 2 = 0 FROM generate_series(1, {rows}) AS i",
            lambda rows: f"INSERT INTO {parcel} (depot_id) SELECT id FROM {depot} WHERE id <= {rows}",
            lambda rows: f"UPDATE {depot} SET priority = priority + 1, is_open = NOT is_open, "
            f"code = CASE WHEN id % 2 = 0 THEN gen_random_uuid() END WHERE id <= {rows}",
        ],
    )
    assert_exact(Parcel)


def test_deferred_commits(session, order):
    def deferred(path: Path) -> Path:
        return lambda rows: f"BEGIN; SET LOCAL dbrules.deferred = on; {path(rows)}; COMMIT"

    setup, paths = shelf_paths()
    plan_both_ways(session, order, [Shelf, ShelfItem], [setup], [deferred(path) for path in paths])
    assert_exact(Shelf, ShelfItem)


def test_a_deferred_commit_after_its_parents_grew_plans_for_their_size(session, outside):
    """A session keeps a generic plan of a statement that reads parameters
    after five runs. The commit's update of the parents reads the parked
    deltas from an array: planned once while the parent table held a few
    rows, it scanned the whole table on every later commit, grown or not,
    until an ANALYZE. It is planned for each commit (planned_each_call)."""
    shelf, item = table(Shelf), table(ShelfItem)
    session.run(f"TRUNCATE {shelf}, {item} RESTART IDENTITY CASCADE")
    outside.execute(f"ALTER TABLE {shelf} SET (autovacuum_enabled = false)")  # no ANALYZE meanwhile
    try:
        session.run(f"INSERT INTO {shelf} (name, num_items) SELECT 'shelf ' || i, 0 FROM generate_series(1, 5) AS i")

        def commit_two(first: int) -> str:
            return (
                f"BEGIN; SET LOCAL dbrules.deferred = on; INSERT INTO {item} (shelf_id, shelf_name) "
                f"VALUES ({first}, ''), ({first + 1}, ''); COMMIT"
            )

        session.run(*(commit_two(1 + i % 4) for i in range(8)))  # past the five custom plans
        # Grown past where reading the table costs more than a few lookups by
        # key, in any plan made now (at 2,000 rows, 13 pages, PostgreSQL may
        # well read them all).
        grown = 10 * N
        outside.execute(
            f"INSERT INTO {shelf} (name, num_items) SELECT 'shelf ' || i, 0 FROM generate_series(6, {grown}) AS i"
        )
        session.plans.clear()
        session.run(commit_two(grown - 1))
        heavy = session.heaviest_nodes(grown // 10)
        assert not heavy, "a two-row commit, plan nodes visiting too many rows:\n" + "\n".join(map(str, heavy))
    finally:
        outside.execute(f"ALTER TABLE {shelf} RESET (autovacuum_enabled)")
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

    for path in paths:
        large = path(N)
        before = entries_read()
        outside.execute(f"BEGIN; SET LOCAL dbrules.deferred = on; {large}; COMMIT")
        read = entries_read() - before
        assert read <= 10 * N, f"{large[:40]}...: the commit read {read} entries of the pending tables' indexes"
    assert_exact(Shelf, ShelfItem)


def test_statements_of_few_rows_after_their_parents_grew(session, outside):
    """A statement of several rows, fewer than FEW_ROWS, runs on the plans
    of the first such statement of the session. An import that adds parents
    and their children in turn, into new tables, had them made while the
    parents were a few rows: hash joins over a scan of the parent table,
    which each later statement scanned in full (three times per insert),
    until an ANALYZE. The copy for few rows reaches every table by index
    (plans_by_size.sql)."""
    shelf, item = table(Shelf), table(ShelfItem)
    _, paths = shelf_paths()
    session.run(f"TRUNCATE {shelf}, {item} RESTART IDENTITY CASCADE")
    outside.execute(f"ALTER TABLE {shelf} SET (autovacuum_enabled = false)")  # no ANALYZE meanwhile
    try:
        session.run(f"INSERT INTO {shelf} (name, num_items) SELECT 'shelf ' || i, 0 FROM generate_series(1, 5) AS i")
        session.run(*(path(ROWS["small"]) for path in paths))
        grown = 10 * N
        outside.execute(
            f"INSERT INTO {shelf} (name, num_items) SELECT 'shelf ' || i, 0 FROM generate_series(6, {grown}) AS i"
        )
        session.plans.clear()
        session.run(*(path(ROWS["small"]) for path in paths))
        heavy = session.heaviest_nodes(grown // 10)
        assert not heavy, "two-row statements, plan nodes visiting too many rows:\n" + "\n".join(map(str, heavy))
    finally:
        outside.execute(f"ALTER TABLE {shelf} RESET (autovacuum_enabled)")
    assert_exact(Shelf, ShelfItem)
