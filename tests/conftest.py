"""Shared test helpers: the annotate() oracle and an outside connection."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import django
import psycopg
import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, settings

import dbrules
from dbrules.core import rules_of

# Django 4.2, the oldest supported, has no GeneratedField (Django 5.0).
needs_generated_field = pytest.mark.skipif(django.VERSION < (5, 0), reason="GeneratedField arrived in Django 5.0")

# Random write sequences: every example runs in a savepoint of one test
# transaction, so the function-scoped database fixture is shared on purpose.
random_writes = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def pick(items: list, i: int) -> Any:
    """The ``i``-th of ``items``, wrapping around (None when empty): lets a
    random index name whatever exists at that step."""
    return items[i % len(items)] if items else None


@contextmanager
def one_example() -> Iterator[None]:
    """One random example inside the test's transaction, undone after it so
    the next example starts from the same database."""
    with transaction.atomic():
        sid = transaction.savepoint()
        yield
        transaction.savepoint_rollback(sid)


def run_commit_work_now() -> None:
    """Run what waits for the commit (deferred constraint triggers: dbrules'
    commit-time apply and checks) now, inside the test's transaction, which
    never commits."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def stored_and_live(model: Any, using: str = "default") -> list[tuple[Any, str, Any, Any]]:
    """Every (pk, field, stored, live) of ``model``, live computed by annotate()."""
    fields = [rule.field for rule in rules_of(model)]
    rows = dbrules.annotate_live(model._base_manager.using(using).order_by("pk")).values(
        "pk", *fields, *(f + "_live" for f in fields)
    )
    return [(row["pk"], f, row[f], row[f + "_live"]) for row in rows for f in fields]


def assert_exact(*models: Any, using: str = "default") -> None:
    """The stored value of every derived field equals its annotate() expression."""
    for model in models:
        wrong = [(pk, f, s, v) for pk, f, s, v in stored_and_live(model, using) if s != v]
        assert not wrong, f"{model._meta.label}: (pk, field, stored, live) differ: {wrong[:10]}"
        # The set-based checker must agree with the row-by-row comparison.
        drift = dbrules.find_drift(model, using=using)
        assert all(d.rows == 0 for d in drift), drift


def row_trigger_calls(cursor: Any, model: Any, suffix: str) -> int:
    """Calls in this transaction of ``model``'s dbrules row trigger function
    ``row_ins`` or ``row_upd`` (``track_functions`` must be on)."""
    cursor.execute(
        "SELECT coalesce(sum(f.calls), 0) FROM pg_stat_xact_user_functions AS f "
        "JOIN pg_trigger AS t ON t.tgfoid = f.funcid "
        "WHERE t.tgrelid = %s::regclass AND t.tgname LIKE %s",
        [model._meta.db_table, f"pgtrigger_dbrules_{model._meta.model_name}_{suffix}_%"],
    )
    return cursor.fetchone()[0]


def row_trigger_calls_during(model: Any, suffix: str, action: Callable[[], Any]) -> int:
    """The calls of ``model``'s row trigger function ``suffix`` that
    ``action`` makes, run in a transaction of its own. A difference of two
    counts: the view also reports calls of this session's earlier
    transactions that PostgreSQL has not yet added to its totals (it does
    so at most once a second)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL track_functions = 'pl'")
        before = row_trigger_calls(cursor, model, suffix)
        action()
        return row_trigger_calls(cursor, model, suffix) - before


def outside_conninfo() -> dict[str, Any]:
    """Connection parameters of the (test) database for a plain psycopg client."""
    params = connection.get_connection_params()
    return {k: v for k, v in params.items() if k in {"dbname", "user", "password", "host", "port"}}


@pytest.fixture
def outside() -> Iterator[psycopg.Connection]:
    """A separate autocommit psycopg connection that knows nothing of Django."""
    with psycopg.connect(**outside_conninfo(), autocommit=True) as conn:
        yield conn


ROOT = Path(__file__).resolve().parent.parent

# Databases and roles belong to the whole server: their names carry the
# database the suite was pointed at, so two runs on one server at once --
# two Django versions, say -- never share one.
RUN_SUFFIX = connection.settings_dict["NAME"]


def scratch_name(base: str) -> str:
    """``base`` made unique to this run on its server (see RUN_SUFFIX)."""
    return f"{base}_{RUN_SUFFIX}"


@contextmanager
def throwaway_project(root: Path, database: str, models: str = "", setup_sql: str = "") -> Iterator[dict[str, Any]]:
    """A project of its own (app ``shop``, settings ``throwaway_settings``) on a
    fresh database of the suite's server, dropped afterwards. Yields the
    connection parameters of that database."""
    database = scratch_name(database)
    info = {**outside_conninfo(), "dbname": "postgres"}
    with psycopg.connect(**info, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {database}")
    if setup_sql:
        with psycopg.connect(**{**info, "dbname": database}, autocommit=True) as conn:
            conn.execute(setup_sql)
    app = root / "shop"
    (app / "migrations").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "migrations" / "__init__.py").write_text("")
    if models:
        (app / "models.py").write_text(models)
    (root / "throwaway_settings.py").write_text(
        textwrap.dedent(
            f"""
            SECRET_KEY = "x"
            USE_TZ = True
            DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
            INSTALLED_APPS = ["pgtrigger", "dbrules", "shop"]
            DATABASES = {{"default": {{
                "ENGINE": "django.db.backends.postgresql", "NAME": {database!r},
                "USER": {info.get('user', '')!r}, "PASSWORD": {info.get('password', '')!r},
                "HOST": {info.get('host', '')!r}, "PORT": {str(info.get('port', ''))!r},
            }}}}
            """
        )
    )
    try:
        yield {**info, "dbname": database}
    finally:
        with psycopg.connect(**info, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def run_project(root: Path, *args: str, answers: str | None = None) -> subprocess.CompletedProcess:
    """``python <args>`` inside a throwaway project; ``answers``: what to type
    at its prompts (makemigrations asking whether a field was renamed)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "throwaway_settings",
        "PYTHONPATH": os.pathsep.join([str(root), str(ROOT)]),
    }
    return subprocess.run(
        [sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, input=answers
    )


def migrate_and_run(root: Path, script: str) -> list[str]:
    """makemigrations and migrate a throwaway project, run ``script`` in it,
    and return what it printed, split on whitespace."""
    for args in (("makemigrations", "shop"), ("migrate",)):
        result = run_project(root, "-m", "django", *args)
        assert result.returncode == 0, result.stdout + result.stderr
    result = run_project(root, "-c", script)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def assert_project_exact(root: Path, rules: int) -> None:
    """``manage.py dbrules check`` finds every one of ``rules`` rules exact."""
    check = run_project(root, "-m", "django", "dbrules", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"no drift in {rules} rule(s)" in check.stdout
