"""Single-row write throughput with PostgreSQL's own client, pgbench."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SCRIPTS = ["insert", "update", "move"]  # workloads.STATEMENTS


def script_text(variant: str, script: str, parents: int, books: int) -> str:
    """A pgbench script of ``script``'s statement on ``variant``'s tables:
    a random author and book, and the client's id as the page count."""
    from bench.workloads import statement_for

    statement = statement_for(variant, script, a=":a", b=":b", pages=":client_id")
    draws = [f"\\set b random(1, {books})"] * (":b" in statement)
    draws += [f"\\set a random(1, {parents})"] * (":a" in statement)
    return "\n".join(draws + [statement + ";"]) + "\n"


def pgbench_binary() -> str:
    """The pgbench of the embedded server's PostgreSQL if installed, else PATH's."""
    try:
        import pgserver

        bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("pgbench")
    if not found:
        raise SystemExit(
            "pgbench not found: install the embedded server (pip install -e '.[bench]') "
            "or PostgreSQL's client tools."
        )
    return found


def run(database: dict[str, Any], variant: str, script: str, seconds: int, clients: int,
        parents: int, books: int) -> tuple[float, int]:
    """Transactions per second of ``script`` (one of SCRIPTS) on
    ``variant``'s tables for ``seconds``, and the number of transactions
    that failed (a deadlock is retried up to 10 times before it counts)."""
    env = {
        **os.environ,
        "PGHOST": database["HOST"] or "localhost",
        "PGPORT": str(database["PORT"] or 5432),
        "PGUSER": database["USER"],
        "PGPASSWORD": database["PASSWORD"],
        "PGDATABASE": database["NAME"],
    }
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
        handle.write(script_text(variant, script, parents, books))
    try:
        out = subprocess.run(
            [pgbench_binary(), "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, os.cpu_count() or 1)),
             "-T", str(seconds), "--max-tries", "10", "-f", handle.name],
            env=env, capture_output=True, text=True, check=False,
        )
    finally:
        os.unlink(handle.name)
    if out.returncode != 0:
        raise RuntimeError(f"pgbench failed: {out.stderr.strip() or out.stdout.strip()}")
    match = re.search(r"tps = ([0-9.]+)", out.stdout)
    if not match:
        raise RuntimeError(f"no tps in pgbench output: {out.stdout}")
    failed = re.search(r"number of failed transactions: ([0-9]+)", out.stdout)
    return float(match.group(1)), int(failed.group(1)) if failed else 0
