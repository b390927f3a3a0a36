"""Single-row write throughput with PostgreSQL's own client, pgbench."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SCRIPTS = {
    "insert": (
        "\\set a random(1, {parents})\n"
        "INSERT INTO {book} (author_id, title, pages, published, author_name) "
        "VALUES (:a, 'pgbench', :client_id, true, '');\n"
    ),
    "update": (
        "\\set b random(1, {books})\n"
        "UPDATE {book} SET pages = pages + 1, published = NOT published WHERE id = :b;\n"
    ),
    "move": (
        "\\set b random(1, {books})\n"
        "\\set a random(1, {parents})\n"
        "UPDATE {book} SET author_id = :a WHERE id = :b;\n"
    ),
}


def pgbench_binary() -> str:
    """The pgbench of the embedded server's PostgreSQL if installed, else PATH's."""
    try:
        import pgserver  # type: ignore[import-untyped]

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


def run(database: dict[str, Any], script: str, seconds: int, clients: int, **names: Any) -> tuple[float, int]:
    """Transactions per second of ``script`` (a key of SCRIPTS) for
    ``seconds``, and the number of transactions that failed (a deadlock is
    retried up to 10 times before it counts as failed)."""
    env = {
        **os.environ,
        "PGHOST": database["HOST"] or "localhost",
        "PGPORT": str(database["PORT"] or 5432),
        "PGUSER": database["USER"],
        "PGPASSWORD": database["PASSWORD"],
        "PGDATABASE": database["NAME"],
    }
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
        handle.write(SCRIPTS[script].format(**names))
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
