"""What the benchmark measures, run inside a worker process (worker.py).

Each function leaves the variant's tables in a known state, times only the
write or read under test, counts the queries Django sent, and checks every
derived value against a recount (the annotate() oracle for dbrules), so a fast
but wrong variant cannot pass unnoticed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection
from django.db.models import Count, F, Q, Sum

from bench.shop.models import VARIANTS

PAGES = 500


class QueryCounter:
    """Counts statements Django sends (execute and executemany alike)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Callable, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


@contextmanager
def measured(results: dict[str, Any], phase: str) -> Iterator[None]:
    counter = QueryCounter()
    with connection.execute_wrapper(counter):
        started = time.perf_counter()
        yield
        elapsed = time.perf_counter() - started
    results[phase] = {"seconds": elapsed, "queries": counter.count}


def sql(statement: str, params: Any = ()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def reset(variant: str, parents: int) -> None:
    author, book = VARIANTS[variant]
    sql(f"TRUNCATE {book._meta.db_table}, {author._meta.db_table} RESTART IDENTITY")
    author.objects.bulk_create([author(name=f"author {i}") for i in range(parents)])
    vacuum(variant)


def insert_books(book: Any, n: int, parents: int, skewed: bool = False) -> None:
    """One INSERT ... SELECT of ``n`` books spread over ``parents`` authors.

    Evenly by default (every author gets n / parents books: the write
    benchmarks touch every parent alike). ``skewed`` draws the author as the
    product of two uniform draws, so a few authors have many books and most
    have few, as in a real catalogue; a "top 50" over equal counts is all
    ties, which no index can serve. bigint arithmetic: ``g * 7919`` leaves
    the integer range past 271k rows."""
    author = (
        "1 + (%s * ((g * 7919) %% 10007) * ((g * 104729) %% 10009)) / (10007 * 10009)"
        if skewed
        else "1 + (g * 7919) %% %s"
    )
    sql(
        f"INSERT INTO {book._meta.db_table} (author_id, title, pages, published, author_name) "
        f"SELECT {author}, 'b' || g, 1 + g %% %s, g %% 3 <> 0, '' "
        "FROM generate_series(1::bigint, %s) g",
        [parents, PAGES, n],
    )


def vacuum(variant: str) -> None:
    for model in VARIANTS[variant]:
        sql(f"VACUUM ANALYZE {model._meta.db_table}")


def drift(variant: str) -> int:
    """Authors and books whose stored values differ from a recount."""
    author, book = VARIANTS[variant]
    live = author.objects.annotate(
        n=Count("books"),
        p=Count("books", filter=Q(books__published=True)),
        s=Sum("books__pages", default=0),
    )
    wrong = live.exclude(num_books=F("n"), num_published=F("p"), total_pages=F("s")).count()
    return wrong + book.objects.exclude(author_name=F("author__name")).count()


def bulk(variant: str, n: int, parents: int, seed: int = 1, by_key: bool = False) -> dict[str, Any]:
    """bulk_create of n books, QuerySet.update moving n/2 (each to the next
    author, then all of them to one), bulk_update of n/5, delete of n/2 --
    each the way the variant is meant to be used.

    Each book is built with its author instance (``Book(author=author)``),
    and reassigned to one (``update(author=author)``), as code that has the
    authors at hand writes it; ``by_key``: with the key alone
    (``author_id=7``), which leaves dbrules nothing to send for the copy, so
    its trigger looks every author up."""
    author, book = VARIANTS[variant]
    rng = random.Random(seed)
    reset(variant, parents)
    results: dict[str, Any] = {}
    authors = {a.pk: a for a in author.objects.all()}

    def relation_to(parent: Any) -> dict[str, Any]:
        return {"author_id": parent.pk} if by_key else {"author": parent}

    objs = [
        book(**relation_to(authors[rng.randint(1, parents)]), title=f"b{i}", pages=rng.randint(1, PAGES), published=i % 3 != 0)
        for i in range(n)
    ]
    del authors
    with measured(results, "bulk_create"):
        if variant == "signals":
            for obj in objs:  # the usual pattern: one save() per row
                obj.save()
        else:
            book.objects.bulk_create(objs)
            if variant == "computedfields":
                from computedfields.models import update_dependent

                update_dependent(book.objects.all())
    del objs
    vacuum(variant)

    moved = book.objects.filter(pk__lte=n // 2)
    with measured(results, "update"):
        if variant == "signals":
            for obj in moved.iterator():
                obj.author_id = obj.author_id % parents + 1
                obj.save()
        elif variant == "computedfields":
            from computedfields.models import preupdate_dependent, update_dependent

            old = preupdate_dependent(moved)
            moved.update(author_id=F("author_id") % parents + 1)
            update_dependent(moved, old=old)
        else:
            moved.update(author_id=F("author_id") % parents + 1)
    vacuum(variant)

    # The same books reassigned to one author the code holds (merging
    # authors, say): ``update(author=target)``, which gives dbrules the name
    # to send along; by key with ``by_key``.
    target = author.objects.get(pk=1)
    assignment = relation_to(target)
    with measured(results, "reassign"):
        if variant == "signals":
            for obj in moved.iterator():
                for name, value in assignment.items():
                    setattr(obj, name, value)
                obj.save()
        elif variant == "computedfields":
            from computedfields.models import preupdate_dependent, update_dependent

            old = preupdate_dependent(moved)
            moved.update(**assignment)
            update_dependent(moved, old=old)
        else:
            moved.update(**assignment)
    vacuum(variant)

    changed = list(book.objects.filter(pk__gt=n // 2, pk__lte=n // 2 + n // 5).order_by("pk"))
    for obj in changed:
        obj.pages += 1
        obj.published = not obj.published
    with measured(results, "bulk_update"):
        if variant == "signals":
            for obj in changed:
                obj.save()
        else:
            # Django builds one CASE per field; batches keep it linear.
            book.objects.bulk_update(changed, ["pages", "published"], batch_size=1000)
            if variant == "computedfields":
                from computedfields.models import update_dependent

                update_dependent(book.objects.filter(pk__gt=n // 2, pk__lte=n // 2 + n // 5))
    del changed
    vacuum(variant)

    with measured(results, "delete"):
        # With receivers connected (signals, computedfields) Django loads the
        # rows and sends a signal per row; otherwise it is one DELETE.
        book.objects.filter(pk__gt=n // 2).delete()
    results["drift"] = drift(variant)
    return results


def single_row_setup(variant: str, n: int, parents: int, seed: int = 1) -> dict[str, Any]:
    """Tables for the pgbench runs: ``parents`` authors and ``n`` books."""
    author, book = VARIANTS[variant]
    reset(variant, parents)
    insert_books(book, n, parents)
    if variant == "floor":
        # The floor's statements keep the values exact from an exact start.
        recount(author._meta.db_table, book._meta.db_table)
    vacuum(variant)
    return {"author_table": author._meta.db_table, "book_table": book._meta.db_table}


def recount(author: str, book: str) -> None:
    sql(f"UPDATE {author} AS a SET num_books = c.n, num_published = c.p, total_pages = c.s "
        f"FROM (SELECT author_id, count(*) AS n, count(*) FILTER (WHERE published) AS p, sum(pages) AS s "
        f"FROM {book} GROUP BY author_id) AS c WHERE c.author_id = a.id")
    sql(f"UPDATE {book} AS b SET author_name = a.name FROM {author} AS a WHERE a.id = b.author_id")


# One-row statements run and committed one by one inside the server: what a
# write costs PostgreSQL itself, without client, network or pgbench noise.
# The statement is prepared, as in the pgbench runs (-M prepared): planning it
# afresh each time would add the same cost to every variant and hide part of
# the difference. (Django prepares only with OPTIONS["prepare_threshold"].)
STATEMENT_LOOP = """
CREATE OR REPLACE PROCEDURE pg_temp.dbrules_bench_loop(
    n integer, parents integer, books integer, first bigint,
    INOUT seconds double precision)
LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
BEGIN
    FOR i IN first..first + n - 1 LOOP
        EXECUTE format('EXECUTE dbrules_bench_statement(%s, %s)',
                       i::bigint * 7919 % parents + 1, i::bigint * 104729 % books + 1);
        COMMIT;
    END LOOP;
    seconds := extract(epoch FROM clock_timestamp() - started);
END $$
"""
# One-row writes, for this loop and for pgbench (pgbench.py): {a} is an
# author, {b} a book, {pages} a page count.
STATEMENTS = {
    "insert": "INSERT INTO {book} (author_id, title, pages, published, author_name) "
              "VALUES ({a}, 'one row', {pages}, true, '')",
    "update": "UPDATE {book} SET pages = pages + 1, published = NOT published WHERE id = {b}",
    "move": "UPDATE {book} SET author_id = {a} WHERE id = {b}",
}
# The same writes with the maintenance written into each statement, no
# trigger: the author's row is updated once (for a move, both authors in one
# UPDATE, in key order) and the name copied from what that update returns.
# Any exact maintenance of these rules does at least this per write.
FLOOR_STATEMENTS = {
    "insert": (
        "WITH a AS (UPDATE {author} SET num_books = num_books + 1, num_published = num_published + 1, "
        "total_pages = total_pages + {pages} WHERE id = {a} RETURNING name) "
        "INSERT INTO {book} (author_id, title, pages, published, author_name) "
        "SELECT {a}, 'one row', {pages}, true, a.name FROM a"
    ),
    "update": (
        "WITH b AS (UPDATE {book} SET pages = pages + 1, published = NOT published WHERE id = {b} "
        "RETURNING author_id, published) "
        "UPDATE {author} AS a SET num_published = a.num_published + CASE WHEN b.published THEN 1 ELSE -1 END, "
        "total_pages = a.total_pages + 1 FROM b WHERE a.id = b.author_id"
    ),
    "move": (
        "WITH o AS (SELECT author_id, pages, published FROM {book} WHERE id = {b} FOR UPDATE), "
        "a AS (UPDATE {author} AS a SET "
        "num_books = a.num_books + CASE WHEN a.id = {a} THEN 1 ELSE -1 END, "
        "num_published = a.num_published + CASE WHEN NOT o.published THEN 0 WHEN a.id = {a} THEN 1 ELSE -1 END, "
        "total_pages = a.total_pages + CASE WHEN a.id = {a} THEN o.pages ELSE -o.pages END "
        "FROM o WHERE a.id IN ({a}, o.author_id) AND o.author_id <> {a} RETURNING a.id, a.name) "
        "UPDATE {book} AS b SET author_id = {a}, "
        "author_name = coalesce((SELECT a.name FROM a WHERE a.id = {a}), b.author_name) WHERE b.id = {b}"
    ),
}


def statement_for(variant: str, script: str, **values: str) -> str:
    """``script``'s statement on ``variant``'s tables, with ``values`` for
    {a}, {b} and {pages} (the loop's parameters by default)."""
    author, book = VARIANTS[variant]
    template = (FLOOR_STATEMENTS if variant == "floor" else STATEMENTS)[script]
    values = {"a": "$1", "b": "$2", "pages": "$2 % 500", **values}
    return template.format(author=author._meta.db_table, book=book._meta.db_table, **values)


def statement_cost(variant: str, script: str, n: int, parents: int, books: int, run: int) -> dict[str, Any]:
    """Server time per one-row statement of ``script``, each committed on its
    own (synchronous_commit off: the WAL flush is the same for every variant
    and would only add noise). Each ``run`` draws other rows and parents: a
    repeated move would otherwise move every book where it already is."""
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        cursor.execute(f"PREPARE dbrules_bench_statement(integer, integer) AS {statement_for(variant, script)}")
        cursor.execute(STATEMENT_LOOP)
        cursor.execute("CALL pg_temp.dbrules_bench_loop(%s, %s, %s, %s, NULL)", [n, parents, books, 1 + run * n])
        seconds = cursor.fetchone()[0]
        cursor.execute("DEALLOCATE dbrules_bench_statement")
        cursor.execute("RESET synchronous_commit")
    return {"us": seconds / n * 1e6}


def first_writes(variants: list[str], connections: int, parents: int, books: int, seed: int = 1) -> dict[str, Any]:
    """Each one-row write in a connection of its own, as Django opens one per
    request by default (``CONN_MAX_AGE = 0``): milliseconds of the session's
    first statement, which loads PL/pgSQL, compiles the trigger functions it
    fires and plans their statements, and of the same statement again on
    other rows, which finds the library loaded and the functions compiled
    (PostgreSQL still plans a statement that takes parameters anew for its
    first five runs). The variants take turns, connection by connection, so
    the figures paired in the report were taken milliseconds apart."""
    rng = random.Random(seed)
    timings: dict[str, dict[str, dict[str, list[float]]]] = {
        v: {s: {"first": [], "again": []} for s in STATEMENTS} for v in variants
    }
    for _ in range(connections):
        for script in STATEMENTS:
            for variant in variants:
                connection.close()
                connection.ensure_connection()
                for run in ("first", "again"):
                    statement = statement_for(variant, script, a=str(rng.randint(1, parents)),
                                              b=str(rng.randint(1, books)), pages=str(rng.randint(1, PAGES)))
                    with connection.cursor() as cursor:
                        started = time.perf_counter()
                        cursor.execute(statement)
                        timings[variant][script][run].append((time.perf_counter() - started) * 1000)
    connection.close()
    return {"ms": timings, "drift": {variant: drift(variant) for variant in variants}}


def check_drift(variant: str) -> dict[str, Any]:
    return {"drift": drift(variant)}


def reads(n: int, parents: int, repeat: int) -> dict[str, Any]:
    """Top-50 authors by their number of books over n books: the stored,
    indexed column vs. the annotate() fallback."""
    import dbrules

    author, book = VARIANTS["dbrules"]
    reset("dbrules", parents)
    insert_books(book, n, parents, skewed=True)
    vacuum("dbrules")

    def stored() -> list[int]:
        return list(author.objects.order_by("-num_books", "pk").values_list("pk", flat=True)[:50])

    def fallback() -> list[int]:
        live = dbrules.annotate_live(author.objects.all(), "num_books")
        return list(live.order_by("-num_books_live", "pk").values_list("pk", flat=True)[:50])

    # The index the stored read needs. Only this section has it: on the
    # write benchmarks it would make every parent update non-HOT (about 5 us
    # a one-row statement), a cost of the read, not of keeping the count.
    index = f"{author._meta.db_table}_num_books_read"
    sql(f"CREATE INDEX {index} ON {author._meta.db_table} (num_books)")
    try:
        assert stored() == fallback(), "stored and annotate() top-50 differ"
        results = {"stored": best_of(stored, repeat), "annotate": best_of(fallback, repeat)}
    finally:
        sql(f"DROP INDEX {index}")
    return {**results, "drift": drift("dbrules")}


def repair(n: int, parents: int, repeat: int) -> dict[str, Any]:
    """dbrules' repair of every author (all values wrong first) vs. one
    GROUP BY computing the same aggregates over the n books."""
    import dbrules

    author, book = VARIANTS["dbrules"]
    reads_setup = author.objects.count() == parents and book.objects.count() == n
    if not reads_setup:
        reads(n, parents, 1)
    table = author._meta.db_table
    group_by = (
        f"SELECT author_id, count(*), count(*) FILTER (WHERE published), sum(pages) "
        f"FROM {book._meta.db_table} GROUP BY author_id"
    )
    one_group_by = best_of(lambda: sql(group_by), repeat)
    timings = []
    for _ in range(repeat):
        with connection.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT set_config('dbrules.repairing', 'on', true)")
            cursor.execute(f"UPDATE {table} SET num_books = 0, num_published = 0, total_pages = 0")
            cursor.execute("COMMIT")
        vacuum("dbrules")
        started = time.perf_counter()
        changed = dbrules.repair(author)
        timings.append(time.perf_counter() - started)
        assert changed > 0
    return {"repair": sorted(timings)[len(timings) // 2], "group_by": one_group_by, "drift": drift("dbrules")}


def scaling(variant: str, n: int, parents: int) -> dict[str, Any]:
    """One INSERT ... SELECT of n books over ``parents`` authors (database side only)."""
    author, book = VARIANTS[variant]
    reset(variant, parents)
    started = time.perf_counter()
    insert_books(book, n, parents)
    return {"seconds": time.perf_counter() - started, "drift": drift(variant)}


def best_of(action: Callable[[], Any], repeat: int) -> float:
    """The median of ``repeat`` timed runs after one warm-up."""
    action()
    timings = []
    for _ in range(max(1, repeat)):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return sorted(timings)[len(timings) // 2]


# The least any exact maintenance of these rules costs on the database side,
# built from the no-rules tables: a copy must look its source up for every
# row it writes (the same SELECT ... INTO dbrules' and the row trigger's copy
# triggers run), and a count must rewrite every parent a statement touches.
COPY_ONLY = """
CREATE FUNCTION dbrules_bench_copy_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    SELECT a.name INTO NEW.author_name FROM {author} AS a WHERE a.id = NEW.author_id;
    RETURN NEW;
END $$;
CREATE TRIGGER dbrules_bench_copy_only_ins BEFORE INSERT ON {book}
    FOR EACH ROW EXECUTE FUNCTION dbrules_bench_copy_only();
CREATE TRIGGER dbrules_bench_copy_only_upd BEFORE UPDATE OF author_id ON {book}
    FOR EACH ROW WHEN (OLD.author_id IS DISTINCT FROM NEW.author_id)
    EXECUTE FUNCTION dbrules_bench_copy_only();
"""
FLOOR_PHASES = ["insert", "move", "delete"]


def _timed_phases(variant: str, n: int, parents: int) -> dict[str, float]:
    """One INSERT ... SELECT of n books, a move of n/2, a delete of n/2."""
    _, book = VARIANTS[variant]
    reset(variant, parents)
    seconds = {}
    started = time.perf_counter()
    insert_books(book, n, parents)
    seconds["insert"] = time.perf_counter() - started
    vacuum(variant)
    started = time.perf_counter()
    sql(f"UPDATE {book._meta.db_table} SET author_id = author_id %% %s + 1 WHERE id <= %s", [parents, n // 2])
    seconds["move"] = time.perf_counter() - started
    vacuum(variant)
    started = time.perf_counter()
    sql(f"DELETE FROM {book._meta.db_table} WHERE id > %s", [n // 2])
    seconds["delete"] = time.perf_counter() - started
    return seconds


def floors(n: int, parents: int) -> dict[str, Any]:
    """The bulk statements on the database side for no rules, no rules plus
    only the copy's per-row lookup, and dbrules; and the cost of rewriting
    every parent once, which maintaining any count of these rows takes."""
    author, book = VARIANTS["no rules"]
    results: dict[str, Any] = {"no rules": _timed_phases("no rules", n, parents)}
    vacuum("no rules")
    started = time.perf_counter()
    sql(f"UPDATE {author._meta.db_table} SET num_books = num_books + 1, "
        "num_published = num_published + 1, total_pages = total_pages + 1")
    results["parents rewritten"] = time.perf_counter() - started
    sql(COPY_ONLY.format(author=author._meta.db_table, book=book._meta.db_table))
    try:
        results["copy lookup only"] = _timed_phases("no rules", n, parents)
    finally:
        sql("DROP FUNCTION dbrules_bench_copy_only() CASCADE")
    results["dbrules"] = _timed_phases("dbrules", n, parents)
    results["drift"] = drift("dbrules")
    return results
