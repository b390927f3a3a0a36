"""Runtime: read-time values (``annotate()``), drift detection and repair.

Everything here derives from the rule's own ORM expression, so the stored
column is always compared with -- and repaired to -- exactly what
``annotate()`` computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from django.db import connections, models, router, transaction
from django.db.models import Expression, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce

from dbrules.analysis import AggregatePlan, Plan, analyze
from dbrules.core import Derived, rules_of
from dbrules.sqlrender import quote, table

LIVE_SUFFIX = "_live"


def _plans(model: type[models.Model], fields: Iterable[str] = ()) -> list[Plan]:
    wanted = set(fields)
    rules = [r for r in rules_of(model) if not wanted or r.field in wanted]
    unknown = wanted - {r.field for r in rules}
    if unknown:
        raise ValueError(
            f"{model._meta.label} has no rule for {', '.join(sorted(unknown))}; "
            f"derived fields: {', '.join(r.field for r in rules_of(model)) or 'none'}."
        )
    return [analyze(model, rule) for rule in rules]


def live_expression(plan: Plan, *, standalone: bool = False) -> Expression:
    """The ORM expression whose value the stored column must equal.

    It is the rule's expression, with the empty case made explicit where the
    stored column cannot hold NULL. ``standalone`` gives a correlated subquery
    instead, which can be combined with aggregates over other relations
    without multiplying joined rows.
    """
    if isinstance(plan, AggregatePlan):
        if standalone:
            child = plan.child._default_manager.filter(
                **{plan.fk.name: OuterRef(plan.parent_key.attname)}
            )
            if plan.condition is not None:
                child = child.filter(plan.condition)
            aggregate = plan.rule.expression.__class__(plan.value.name if plan.value else "pk")
            expression: Expression = Subquery(
                child.order_by().values(plan.fk.name).annotate(v=aggregate).values("v"),
                output_field=plan.target,
            )
        else:
            expression = plan.rule.expression
        if plan.empty_value is not None:
            expression = Coalesce(expression, Value(plan.empty_value), output_field=plan.target)
        return expression
    raise TypeError(plan)  # pragma: no cover


def annotate_live(
    queryset: models.QuerySet, *fields: str, suffix: str = LIVE_SUFFIX
) -> models.QuerySet:
    """Annotate ``queryset`` with the live value of its model's derived fields.

    ``annotate_live(Author.objects.all())`` adds ``num_books_live`` (and one
    ``<field>_live`` per rule), computed at read time from each rule's own
    expression: the fallback before triggers are installed, and the oracle the
    stored values are checked against. Pass field names to restrict it.
    """
    plans = _plans(queryset.model, fields)
    relations = {plan.relation for plan in plans if isinstance(plan, AggregatePlan)}
    standalone = len(relations) > 1  # joins of two to-many relations multiply rows
    return queryset.annotate(
        **{plan.rule.field + suffix: live_expression(plan, standalone=standalone) for plan in plans}
    )


# -- drift and repair ---------------------------------------------------------


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
    for plan in _plans(model, fields):
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
        plans = _plans(model, fields)
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


def return_derived_values_on_insert() -> None:
    """Make ``create()``/``save()``/``bulk_create()`` read derived columns back.

    The BEFORE INSERT trigger may set a value other than the one Django sent
    (a child inserted earlier in the transaction). Django reads
    ``Options.db_returning_fields`` back with ``INSERT ... RETURNING``; adding
    the derived fields there costs no extra query.
    """
    from django.apps import apps

    for model in apps.get_models():
        rules = rules_of(model)
        if not rules:
            continue
        targets = []
        for rule in rules:
            try:
                plan = analyze(model, rule)
            except Exception:  # reported by the system checks
                continue
            if isinstance(plan, AggregatePlan):
                targets.append(plan.target)
        base = [f for f in model._meta.db_returning_fields if f not in targets]
        model._meta.db_returning_fields = base + targets
