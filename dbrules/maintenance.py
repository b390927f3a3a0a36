"""Maintenance: set-based drift detection and repair.

Both compare the stored column with the rule's own ``annotate()`` expression
(``runtime.live_expression``), so "correct" means exactly what the ORM
computes at read time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from django.db import connections, models, transaction
from django.db.models import Q

from dbrules.analysis import Plan
from dbrules.core import Derived
from dbrules.runtime import live_expression, plans_of
from dbrules.sqlrender import quote, table


@dataclass
class Drift:
    model: type[models.Model]
    field: str
    rule: Derived
    rows: int
    sample: list[Any] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.rule.label(self.model)


def _live_sql(model: type[models.Model], plan: Plan, using: str, where: Optional[Q] = None) -> tuple[str, tuple]:
    queryset = model._base_manager.using(using).all()
    if where is not None:
        queryset = queryset.filter(where)
    queryset = queryset.annotate(dbrules_live=live_expression(plan)).order_by()
    queryset = queryset.values_list("pk", plan.target.attname, "dbrules_live")
    query = queryset.query
    sql, params = query.get_compiler(using=using).as_sql()
    return sql, tuple(params)


def find_drift(
    model: type[models.Model], fields: Iterable[str] = (), *, using: str = "default", sample: int = 5
) -> list[Drift]:
    """For each rule of ``model``: how many rows differ from the live value.

    One set-based query per rule; no rows are loaded into Python beyond the
    ``sample`` of primary keys.
    """
    result = []
    for plan in plans_of(model, fields):
        sql, params = _live_sql(model, plan, using)
        with connections[using].cursor() as cursor:
            cursor.execute(
                f"SELECT count(*) OVER (), x.col1 FROM ({sql}) AS x(col1, col2, col3) "
                f"WHERE x.col2 IS DISTINCT FROM x.col3 ORDER BY x.col1 LIMIT {int(max(sample, 1))}",
                params,
            )
            rows = cursor.fetchall()
        result.append(
            Drift(
                model=model,
                field=plan.rule.field,
                rule=plan.rule,
                rows=rows[0][0] if rows else 0,
                sample=[r[1] for r in rows][:sample],
            )
        )
    return result


def repair(
    model: type[models.Model],
    fields: Iterable[str] = (),
    *,
    using: str = "default",
    where: Optional[Q] = None,
    dry_run: bool = False,
) -> int:
    """Set every drifted derived value of ``model`` (optionally only rows
    matching ``where``) to its live value, set-based. Returns rows changed.

    Runs in the caller's transaction (or its own); the guard trigger lets the
    write through because ``dbrules.repairing`` is set for the transaction.
    """
    changed = 0
    pk = quote(model._meta.pk.column)
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        plans = plans_of(model, fields)
        if not dry_run:
            cursor.execute("SELECT set_config('dbrules.repairing', 'on', true)")
        for plan in plans:
            sql, params = _live_sql(model, plan, using, where)
            column = quote(plan.target.column)
            if dry_run:
                cursor.execute(
                    f"SELECT count(*) FROM ({sql}) AS x(col1, col2, col3) "
                    "WHERE x.col2 IS DISTINCT FROM x.col3",
                    params,
                )
                changed += cursor.fetchone()[0]
                continue
            cursor.execute(
                f"UPDATE {table(model)} AS t SET {column} = x.col3 "
                f"FROM ({sql}) AS x(col1, col2, col3) "
                f"WHERE t.{pk} = x.col1 AND x.col2 IS DISTINCT FROM x.col3",
                params,
            )
            changed += cursor.rowcount
        if not dry_run:
            cursor.execute("SELECT set_config('dbrules.repairing', 'off', true)")
    return changed
