"""Shared test helpers: the annotate() oracle and an outside connection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection

import dbrules
from dbrules.core import rules_of


def stored_and_live(model: Any) -> list[tuple[Any, str, Any, Any]]:
    """Every (pk, field, stored, live) of ``model``, live computed by annotate()."""
    fields = [rule.field for rule in rules_of(model)]
    rows = dbrules.annotate_live(model._base_manager.order_by("pk")).values(
        "pk", *fields, *(f + "_live" for f in fields)
    )
    return [(row["pk"], f, row[f], row[f + "_live"]) for row in rows for f in fields]


def assert_exact(*models: Any) -> None:
    """The stored value of every derived field equals its annotate() expression."""
    for model in models:
        wrong = [(pk, f, s, v) for pk, f, s, v in stored_and_live(model) if s != v]
        assert not wrong, f"{model._meta.label}: (pk, field, stored, live) differ: {wrong[:10]}"
        # The set-based checker must agree with the row-by-row comparison.
        assert all(d.rows == 0 for d in dbrules.find_drift(model)), dbrules.find_drift(model)


def outside_conninfo() -> dict[str, Any]:
    """Connection parameters of the (test) database for a plain psycopg client."""
    params = connection.get_connection_params()
    return {k: v for k, v in params.items() if k in {"dbname", "user", "password", "host", "port"}}


@pytest.fixture
def outside() -> Iterator[psycopg.Connection]:
    """A separate autocommit psycopg connection that knows nothing of Django."""
    with psycopg.connect(**outside_conninfo(), autocommit=True) as conn:
        yield conn
