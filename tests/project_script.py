"""Helpers for the scripts the throwaway-project tests run inside their
project (``python -c``, with the repository on the path): a check after
each step that every stored value equals its ``annotate()`` expression, and
plain SQL on the project's own connection."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from django.db import connection

import dbrules


def exact(step: str, *models: Any) -> None:
    """After ``step``, no rule of ``models`` has a drifted row."""
    wrong = [
        (d.model.__name__, d.field, d.rows, d.sample)
        for model in models
        for d in dbrules.find_drift(model)
        if d.rows
    ]
    assert not wrong, f"{step}: {wrong}"


def sql(statement: str, params: Optional[Sequence[Any]] = None) -> None:
    """Run one statement; without ``params`` a "%" is the operator."""
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
