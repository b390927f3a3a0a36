"""The embedded server: starts, serves, stops, and leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from dbrules.embedded import (
    EmbeddedServer,
    EmbeddedServerError,
    DATA_DIR_ENV,
    django_database_settings,
    prune_dead_handles,
    server_description,
)

ROOT = Path(__file__).resolve().parent.parent


def postmaster_pid(directory: Path) -> int | None:
    """The pid of the server running on ``directory``'s data, if any."""
    pidfile = directory / "pgdata" / "postmaster.pid"
    if not pidfile.exists():
        return None
    pid = int(pidfile.read_text().splitlines()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def postgres_running_for(directory: Path) -> bool:
    return postmaster_pid(directory) is not None


@pytest.fixture
def short_dir(tmp_path_factory):
    # pytest's tmp paths are short and have no spaces.
    return tmp_path_factory.mktemp("emb")


def test_start_serve_stop(short_dir):
    with EmbeddedServer(short_dir) as server:
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT 1 + 1").fetchone() == (2,)
        assert postgres_running_for(short_dir)
    assert not postgres_running_for(short_dir)
    assert prune_dead_handles(short_dir / "pgdata") == []


def test_sigterm_stops_the_server_and_leaves_no_dead_pid(short_dir):
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from dbrules.embedded import EmbeddedServer
        EmbeddedServer(Path({str(short_dir)!r})).start()
        print("up", flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "up"
    assert postgres_running_for(short_dir)
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=30) == -signal.SIGTERM
    deadline = time.time() + 10
    while postgres_running_for(short_dir) and time.time() < deadline:
        time.sleep(0.2)
    assert not postgres_running_for(short_dir)
    handles = (short_dir / "pgdata" / ".handle_pids.json").read_text()
    assert str(child.pid) not in handles


def test_dead_pids_are_pruned(short_dir):
    pgdata = short_dir / "pgdata"
    pgdata.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (pgdata / ".handle_pids.json").write_text(f"[{dead.pid}, {os.getpid()}]")
    assert prune_dead_handles(pgdata) == [os.getpid()]


def test_a_path_with_spaces_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(EmbeddedServerError, match="DBRULES_EMBEDDED_DIR"):
        EmbeddedServer(tmp_path / "with space").start()


def test_commands_say_which_server_they_use(monkeypatch, tmp_path):
    """The demo and the benchmark print this first: a user with DATABASE_URL
    set is not told a server is starting, and one without learns where its
    data goes."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@db.local/postgres")
    assert "DATABASE_URL" in server_description() and "starting" not in server_description()
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert server_description() == f"starting the embedded PostgreSQL (data in {tmp_path.resolve()}) ..."


def test_database_urls_become_django_settings():
    tcp = django_database_settings("postgresql://app:s3cret@db.local:5433/shop")
    assert (tcp["HOST"], tcp["PORT"], tcp["NAME"], tcp["USER"], tcp["PASSWORD"]) == (
        "db.local", "5433", "shop", "app", "s3cret"
    )
    socket = django_database_settings("postgresql://postgres@/postgres?host=/run/Pg&port=5432")
    assert (socket["HOST"], socket["PORT"]) == ("/run/Pg", "5432")
    encoded = django_database_settings("postgresql://postgres@%2Frun%2FPg/postgres")
    assert encoded["HOST"] == "/run/Pg"
    with pytest.raises(ValueError):
        django_database_settings("mysql://x@y/z")
