"""``python -m bench`` / ``python -m dbrules bench``: dbrules against the
alternatives, side by side in one run. See docs/performance.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import report

BULK_VARIANTS = ["no rules", "dbrules", "row trigger", "signals", "computedfields"]
SINGLE_VARIANTS = ["no rules", "dbrules", "row trigger", "floor"]
PER_ROW_VARIANTS = {"signals"}  # one save() per row: run on a fraction, scaled
ONCE_VARIANTS = {"signals", "computedfields"}  # minutes per run: measured once


class Progress:
    """Step counter on stderr, so --json output stays clean."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.perf_counter()

    def step(self, text: str) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.started
        print(f"[{self.done:>3}/{self.total}] {elapsed:6.0f}s  {text}", file=sys.stderr, flush=True)


SECTIONS = ("bulk", "single", "statements", "connections", "reads", "repair", "scaling", "floors")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dbrules bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat: checks the benchmark runs")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; medians are reported")
    parser.add_argument("--books", type=int, default=100_000, help="rows of the bulk workload")
    parser.add_argument("--authors", type=int, default=1_000, help="parents of the bulk and single-row workloads")
    parser.add_argument("--per-row-fraction", type=int, default=10,
                        help="signals (one save() per row) run on books/N rows; their figures are scaled by N")
    parser.add_argument("--seconds", type=int, default=10, help="duration of each pgbench run")
    parser.add_argument("--clients", type=int, default=4, help="pgbench clients")
    parser.add_argument("--statements", type=int, default=10_000,
                        help="one-row statements per server-side timing loop")
    parser.add_argument("--connections", type=int, default=50,
                        help="new connections per variant and statement for the first-write figures")
    parser.add_argument("--read-books", type=int, default=1_000_000, help="children for the read and repair figures")
    parser.add_argument("--read-authors", type=int, default=10_000, help="parents for the read and repair figures")
    parser.add_argument("--scaling", default="10000,100000,1000000", help="row counts of the scaling figure")
    parser.add_argument("--bulk-by-key", action="store_true",
                        help="build the bulk_create books and reassign them with author_id=, not the author instance")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, among {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--chart", type=Path, help="write a PNG chart of the ratios here")
    parser.add_argument("--output", type=Path, help="also write the JSON results here")
    args = parser.parse_args(argv)
    unknown = [s for s in (part.strip() for part in args.sections.split(",")) if s and s not in SECTIONS]
    if unknown:
        parser.error(f"--sections: no section {', '.join(map(repr, unknown))}; choose among {', '.join(SECTIONS)}")
    if args.smoke:
        args.repeat, args.books, args.authors, args.per_row_fraction = 1, 2_000, 50, 1
        args.seconds, args.read_books, args.read_authors, args.scaling = 1, 20_000, 200, "1000,5000"
        args.statements, args.connections = 200, 3
    return args


def worker(url: str, database: str, **spec: Any) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.worker", json.dumps({**spec, "database": database})],
        env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark worker {spec} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def prepare_database(url: str) -> tuple[dict[str, Any], str]:
    """A fresh benchmark database with the bench app migrated."""
    from django.core.management import call_command
    from django.db import connections

    from bench.settings import BENCH_DATABASE, configure

    database = configure(url)
    admin = connections["admin"]
    admin.ensure_connection()
    admin.connection.autocommit = True
    with admin.connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{BENCH_DATABASE}"')
    admin.close()
    call_command("migrate", verbosity=0)
    return database, BENCH_DATABASE


def drop_database(name: str) -> None:
    from django.db import connections

    connections["default"].close()
    admin = connections["admin"]
    admin.ensure_connection()
    admin.connection.autocommit = True
    with admin.connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def machine(database: dict[str, Any]) -> dict[str, Any]:
    from django.db import connection

    import django

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        server = cursor.fetchone()[0]
    return {
        "postgresql": server,
        "django": django.get_version(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(terse=True),
        "server": "embedded" if not os.environ.get("DATABASE_URL") else "DATABASE_URL",
    }


def median(values: list[float]) -> float:
    return statistics.median(values)


def bench_bulk(args: argparse.Namespace, url: str, db: str, progress: Progress) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in BULK_VARIANTS}
    for attempt in range(args.repeat):
        for variant in BULK_VARIANTS:
            scale = args.per_row_fraction if variant in PER_ROW_VARIANTS else 1
            if variant in ONCE_VARIANTS and attempt > 0:
                progress.step(f"bulk {variant}: measured once")
                continue
            progress.step(f"bulk {variant}, run {attempt + 1}" + (f", 1/{scale} size" if scale > 1 else ""))
            result = worker(
                url, db, task="bulk", variant=variant, n=args.books // scale, parents=args.authors,
                by_key=args.bulk_by_key,
            )
            for phase in report.BULK_PHASES:
                result[phase]["seconds"] *= scale
                result[phase]["queries"] *= scale
            result["scaled_from"] = args.books // scale
            runs[variant].append(result)
    summary: dict[str, Any] = {}
    for variant, results in runs.items():
        summary[variant] = {
            phase: {
                "seconds": median([r[phase]["seconds"] for r in results]),
                "queries": median([r[phase]["queries"] for r in results]),
                "per_run": [r[phase]["seconds"] for r in results],
            }
            for phase in report.BULK_PHASES
        }
        summary[variant]["peak_rss_mb"] = max(r["peak_rss_mb"] for r in results)
        summary[variant]["drift"] = max(r["drift"] for r in results)
        summary[variant]["rows"] = results[0]["scaled_from"]
        summary[variant]["runs"] = len(results)
    return summary


def setup_single_row_tables(args: argparse.Namespace, url: str, db: str, progress: Progress, section: str) -> None:
    """Fresh tables of every single-row variant (workloads.single_row_setup)."""
    for variant in SINGLE_VARIANTS:
        progress.step(f"{section} setup {variant}")
        worker(url, db, task="single_row_setup", variant=variant, n=args.books, parents=args.authors)


def bench_single(args: argparse.Namespace, url: str, db: str, database: dict[str, Any], progress: Progress) -> dict[str, Any]:
    from bench import pgbench

    books = args.books
    setup_single_row_tables(args, url, db, progress, "single-row")
    tps: dict[str, dict[str, list[float]]] = {v: {s: [] for s in pgbench.SCRIPTS} for v in SINGLE_VARIANTS}
    failed: dict[str, dict[str, int]] = {v: {s: 0 for s in pgbench.SCRIPTS} for v in SINGLE_VARIANTS}
    for attempt in range(args.repeat):
        for script in pgbench.SCRIPTS:
            for variant in SINGLE_VARIANTS:
                progress.step(f"pgbench {script} {variant}, run {attempt + 1}")
                rate, failures = pgbench.run(
                    {**database, "NAME": db}, variant, script, args.seconds, args.clients,
                    parents=args.authors, books=books,
                )
                tps[variant][script].append(rate)
                failed[variant][script] += failures
    summary: dict[str, Any] = {}
    for variant in SINGLE_VARIANTS:
        drift = worker(url, db, task="check_drift", variant=variant)["drift"]
        summary[variant] = {script: median(values) for script, values in tps[variant].items()}
        summary[variant]["per_run"] = tps[variant]
        summary[variant]["drift"] = drift
        summary[variant]["failed"] = failed[variant]
    return summary


def bench_statements(args: argparse.Namespace, url: str, db: str, progress: Progress) -> dict[str, Any]:
    """The single-row scripts again, timed inside the server (workloads.statement_cost)."""
    from bench.workloads import STATEMENTS

    setup_single_row_tables(args, url, db, progress, "statement loop")
    micros: dict[str, dict[str, list[float]]] = {v: {s: [] for s in STATEMENTS} for v in SINGLE_VARIANTS}
    for attempt in range(args.repeat):
        for script in STATEMENTS:
            for variant in SINGLE_VARIANTS:
                progress.step(f"statement loop {script} {variant}, run {attempt + 1}")
                result = worker(url, db, task="statement_cost", variant=variant, script=script,
                                n=args.statements, parents=args.authors, books=args.books, run=attempt)
                micros[variant][script].append(result["us"])
    summary: dict[str, Any] = {}
    for variant in SINGLE_VARIANTS:
        summary[variant] = {script: median(values) for script, values in micros[variant].items()}
        summary[variant]["per_run"] = micros[variant]
        summary[variant]["drift"] = worker(url, db, task="check_drift", variant=variant)["drift"]
    return summary


def bench_connections(args: argparse.Namespace, url: str, db: str, progress: Progress) -> dict[str, Any]:
    """The single-row statements, each first in a new connection and then
    again (workloads.first_writes)."""
    setup_single_row_tables(args, url, db, progress, "first-write")
    progress.step(f"first writes: {args.connections} new connections per variant and statement")
    measured = worker(url, db, task="first_writes", variants=SINGLE_VARIANTS, connections=args.connections,
                      parents=args.authors, books=args.books)
    return {
        variant: {
            "per_connection": measured["ms"][variant],
            **{script: {run: median(ms) for run, ms in runs.items()} for script, runs in measured["ms"][variant].items()},
            "drift": measured["drift"][variant],
        }
        for variant in SINGLE_VARIANTS
    }


def bench_floors(args: argparse.Namespace, url: str, db: str, progress: Progress) -> dict[str, Any]:
    """The bulk statements on the database side against what any exact
    maintenance must pay (workloads.floors), median of --repeat runs."""
    runs = []
    for attempt in range(args.repeat):
        progress.step(f"floors, run {attempt + 1}")
        runs.append(worker(url, db, task="floors", n=args.books, parents=args.authors))
    from bench.workloads import FLOOR_PHASES

    summary: dict[str, Any] = {
        variant: {phase: median([r[variant][phase] for r in runs]) for phase in FLOOR_PHASES}
        for variant in ("no rules", "copy lookup only", "dbrules")
    }
    summary["parents rewritten"] = median([r["parents rewritten"] for r in runs])
    summary["drift"] = max(r["drift"] for r in runs)
    summary["runs"] = runs  # each run's three variants ran back to back: ratios pair within a run
    return summary


def scaling_cases(args: argparse.Namespace) -> list[tuple[int, int, tuple[str, ...]]]:
    """Rows grow at a fixed number of authors (rules vs. none); then the
    middle size is spread over more and more authors (rules only)."""
    sizes = [int(x) for x in args.scaling.split(",")]
    cases = [(n, args.authors, ("no rules", "dbrules")) for n in sizes]
    middle = sizes[len(sizes) // 2]
    spreads = sorted({10, max(10, middle // 100), max(10, middle // 10), middle} - {args.authors})
    return cases + [(middle, parents, ("dbrules",)) for parents in spreads]


def require_extras(chart: bool) -> None:
    import importlib.util

    needed = ["computedfields", "psycopg"] + (["matplotlib"] if chart else [])
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(
            f"the benchmark needs {', '.join(missing)}: run `python -m pip install -e \".[bench]\"` first."
        )


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    require_extras(bool(args.chart))
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    from dbrules.embedded import database_url, server_description

    print(f"dbrules bench: {server_description()}", file=sys.stderr, flush=True)
    url = database_url()
    database, db = prepare_database(url)
    scaling = scaling_cases(args)
    steps = (
        ("bulk" in sections) * len(BULK_VARIANTS) * args.repeat
        + ("single" in sections) * (len(SINGLE_VARIANTS) * (1 + 3 * args.repeat))
        + ("statements" in sections) * (len(SINGLE_VARIANTS) * (1 + 3 * args.repeat))
        + ("connections" in sections) * (len(SINGLE_VARIANTS) + 1)
        + ("reads" in sections) + ("repair" in sections)
        + ("scaling" in sections) * sum(len(variants) for _, _, variants in scaling)
        + ("floors" in sections) * args.repeat
    )
    progress = Progress(steps)
    results: dict[str, Any] = {"machine": machine(database), "settings": {
        k: v for k, v in vars(args).items() if k not in {"chart", "output", "json"}
    }}
    finished = False
    try:
        if "bulk" in sections:
            results["bulk"] = bench_bulk(args, url, db, progress)
        if "single" in sections:
            results["single"] = bench_single(args, url, db, database, progress)
        if "statements" in sections:
            results["statements"] = bench_statements(args, url, db, progress)
        if "connections" in sections:
            results["connections"] = bench_connections(args, url, db, progress)
        if "reads" in sections:
            progress.step(f"reads: top-50 over {args.read_books:,} books")
            results["reads"] = worker(url, db, task="reads", n=args.read_books, parents=args.read_authors,
                                      repeat=max(3, args.repeat))
        if "repair" in sections:
            progress.step(f"repair of {args.read_books:,} books")
            results["repair"] = worker(url, db, task="repair", n=args.read_books, parents=args.read_authors,
                                       repeat=args.repeat)
        if "scaling" in sections:
            results["scaling"] = []
            for n, parents, variants in scaling:
                row: dict[str, Any] = {"rows": n, "parents": parents}
                for variant in variants:
                    progress.step(f"scaling {variant}: {n:,} rows over {parents:,} authors")
                    row[variant] = worker(url, db, task="scaling", variant=variant, n=n, parents=parents)
                results["scaling"].append(row)
        if "floors" in sections:
            results["floors"] = bench_floors(args, url, db, progress)
        finished = True
    finally:
        drop_database(db)
        if args.output and not finished:
            # A failure late in a long run keeps the sections measured so far.
            write_json(args.output, {**results, "incomplete": True})
    report.add_ratios(results)
    if args.output:
        write_json(args.output, results)
    if args.chart:
        report.chart(results, args.chart)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(report.tables(results))
    drift = report.total_drift(results)
    if drift:
        print(f"DRIFT: {drift} stored values differ from a recount", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
