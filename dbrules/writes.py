"""What Django sends and reads back when it writes rows of a model with rules.

Derived columns are the database's, but an INSERT or UPDATE goes through
Django's own field machinery first: these hooks make it send a copy whose
source it already holds in memory (or, for a move, have the UPDATE read
it), and read back what the triggers stored.
"""

from __future__ import annotations

from typing import Any, Callable

import pgtrigger
from django.db import models
from django.db.models import Expression, F, Value
from django.db.models.expressions import CombinedExpression, ExpressionWrapper
from django.db.models.functions import Cast
from django.db.models.sql.subqueries import UpdateQuery

from dbrules.analysis import CopyPlan, Plan
from dbrules.copy_sql import source_lookup
from dbrules.triggers import CompiledTrigger

_UNKNOWN = object()

# Hop by hop along a copy's path: the ForeignKey's cache name on the
# instance, its attname and the attname of the field it points at.
Hops = list[tuple[str, str, str]]

# Per concrete model, the copies an UPDATE may give (supply_copies_on_update):
# the copy, the ForeignKey names that set its first hop, its hops.
_SUPPLIED_ON_UPDATE: dict[type[models.Model], list[tuple[CopyPlan, tuple[str, str], Hops]]] = {}


def return_derived_values_on_insert(plans: list[Plan]) -> None:
    """Make ``create()``/``save()``/``bulk_create()`` read derived columns back.

    The BEFORE INSERT trigger may set a value other than the one Django sent
    (a child inserted earlier in the transaction). Django reads
    ``Options.db_returning_fields`` back with ``INSERT ... RETURNING``; adding
    the derived fields there costs no extra query.
    """
    targets: dict[type[models.Model], list[models.Field]] = {}
    for plan in plans:
        targets.setdefault(plan.parent, []).append(plan.target)
    for model, fields in targets.items():
        base = [f for f in model._meta.db_returning_fields if f not in fields]
        model._meta.db_returning_fields = base + fields


def _hops(plan: CopyPlan) -> Hops:
    return [
        (fk.cache_name if hasattr(fk, "cache_name") else fk.get_cache_name(), fk.attname, fk.target_field.attname)
        for fk in plan.path
    ]


def memory_reader(plan: CopyPlan, hops: Hops) -> Callable[[models.Model], Any]:
    """A function of an instance: the copy's value as the related instances
    cached on it along ``hops`` hold it, or ``_UNKNOWN`` where that would
    take a query (a relation or the source field not loaded) or may not be
    what the database has (an unsaved instance, a ForeignKey changed since
    the instance was cached). Names are looked up once: a ``bulk_create``
    runs it for every row."""
    source, limit = plan.source.attname, plan.target.max_length

    def read(instance: models.Model) -> Any:
        current = instance
        for cache_name, attname, target_attname in hops:
            related = current._state.fields_cache.get(cache_name)
            if related is None or related._state.adding:
                return _UNKNOWN
            key = current.__dict__.get(attname, _UNKNOWN)
            if key is _UNKNOWN or key != related.__dict__.get(target_attname, _UNKNOWN):
                return _UNKNOWN
            current = related
        value = current.__dict__.get(source, _UNKNOWN)
        if value is None:
            return _UNKNOWN
        if limit is not None and isinstance(value, str) and len(value) > limit:
            return _UNKNOWN
        return value

    return read


def _supplying(compiled: tuple[CompiledTrigger, ...]) -> list[CopyPlan]:
    """The copies whose row triggers keep a value the statement gives: the
    BEFORE INSERT trigger has a WHEN (copy_sql.supplied_condition), and the
    BEFORE UPDATE one then keeps the copies a move gives
    (copy_sql.row_update_condition). Elsewhere a value sent would be looked
    up all the same."""
    copies: list[CopyPlan] = []
    for item in compiled:
        trigger = item.trigger
        skips = trigger.when is pgtrigger.Before and trigger.operation is pgtrigger.Insert
        if skips and trigger.level is pgtrigger.Row and trigger.condition is not None:
            copies.extend(plan for plan in item.plans if isinstance(plan, CopyPlan))
    return copies


def supply_copies_on_save(copies: list[CopyPlan]) -> None:
    """Send each copy with the row when Django holds its source in memory.

    ``Book(author=author)`` caches ``author`` on the book: its ``name`` is
    at hand without a query. Given the value, an INSERT's row trigger skips
    its per-row lookup of the author, and so does an UPDATE's when the row
    moves to another author with it (``book.author = other; book.save()``);
    the statement's copy check, which compares those rows with their sources
    anyway, rewrites a stale value. Where the source is not in memory the
    field goes as before and the trigger looks it up.
    """
    for plan in copies:
        field = plan.target
        original = getattr(field.pre_save, "dbrules_original", field.pre_save)
        field.pre_save = _pre_save(plan, original)


def _pre_save(plan: CopyPlan, original: Callable[[models.Model, bool], Any]) -> Callable[[models.Model, bool], Any]:
    attname, read = plan.target.attname, memory_reader(plan, _hops(plan))
    # Field.pre_save only reads the attribute back: the value set is its answer.
    reads_back = getattr(original, "__func__", None) is models.Field.pre_save

    def pre_save(model_instance: models.Model, add: bool) -> Any:
        value = read(model_instance)
        if value is _UNKNOWN:
            return original(model_instance, add)
        setattr(model_instance, attname, value)
        return value if reads_back else original(model_instance, add)

    pre_save.dbrules_original = original  # type: ignore[attr-defined]
    return pre_save


def supply_copies_on_update(copies: list[CopyPlan]) -> None:
    """``QuerySet.update(author=...)`` sends ``author_name`` too, unless the
    statement sets it itself, so that the moved rows skip the row trigger's
    lookup: the value when a saved instance holds it in memory, and
    otherwise a lookup of the source inside the UPDATE (``LookedUpCopy``).
    ``None`` and other expressions go as before."""
    _SUPPLIED_ON_UPDATE.clear()
    for plan in copies:
        first = plan.path[0]
        model = plan.parent._meta.concrete_model
        _SUPPLIED_ON_UPDATE.setdefault(model, []).append((plan, (first.name, first.attname), _hops(plan)))
    if _SUPPLIED_ON_UPDATE and not hasattr(UpdateQuery.add_update_values, "dbrules_original"):
        UpdateQuery.add_update_values = _add_update_values(UpdateQuery.add_update_values)


def _add_update_values(original: Callable[[UpdateQuery, dict[str, Any]], None]) -> Callable[..., None]:
    def add_update_values(self: UpdateQuery, values: dict[str, Any]) -> None:
        supplied = _SUPPLIED_ON_UPDATE.get(self.get_meta().concrete_model)
        if supplied:
            values = with_supplied_copies(values, supplied)
        return original(self, values)

    add_update_values.dbrules_original = original  # type: ignore[attr-defined]
    return add_update_values


class LookedUpCopy(Expression):
    """The copy for rows whose first hop becomes ``key``, read from its
    source by the UPDATE itself.

    The row trigger would run the same lookup through PL/pgSQL for every
    moved row; as part of the statement, a key that is a constant is looked
    up once (an InitPlan), and an expression of the row's own columns costs
    a subquery per row, about half of the trigger's call. ``moved_only``
    keeps the copy of rows whose key the expression leaves as it was, which
    the trigger would not have looked up either.
    """

    def __init__(self, plan: CopyPlan, key: Any, moved_only: bool) -> None:
        super().__init__(output_field=plan.target)
        self.plan = plan
        self.moved_only = moved_only
        self.operands = [key, F(plan.path[0].attname), F(plan.target.attname)] if moved_only else [key]

    def get_source_expressions(self) -> list[Any]:
        return self.operands

    def set_source_expressions(self, exprs: list[Any]) -> None:
        self.operands = list(exprs)

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        compiled = [compiler.compile(operand) for operand in self.operands]
        (key, key_params), *row = compiled
        marker = "__dbrules_key__"
        # Names and the empty value go into the SQL text, which the driver
        # formats with the parameters.
        lookup = source_lookup(self.plan, marker).replace("%", "%%").replace(marker, f"({key})")
        if not self.moved_only:
            return lookup, list(key_params)
        (fk, fk_params), (copy, copy_params) = row
        sql = f"CASE WHEN ({key}) IS DISTINCT FROM {fk} THEN {lookup} ELSE {copy} END"
        return sql, [*key_params, *fk_params, *key_params, *copy_params]


# Expressions cheap to evaluate a second time, in the copy's lookup: the
# arithmetic of a move (``shelf_id=F("shelf_id") + 1``). Others (a CASE
# from bulk_update, a subquery) would cost more than the trigger's lookup.
_REEVALUATED = (F, Value, CombinedExpression, ExpressionWrapper, Cast)


def _reevaluable(expression: Any) -> bool:
    if isinstance(expression, F):
        return type(expression) is F  # not an OuterRef
    if not isinstance(expression, _REEVALUATED):
        return False
    return all(_reevaluable(operand) for operand in expression.get_source_expressions())


def _supplied_copy(plan: CopyPlan, hops: Hops, related: Any) -> Any:
    """What an ``update()`` that sets the copy's first hop to ``related``
    sends for the copy, or ``_UNKNOWN`` to send nothing."""
    first = plan.path[0]
    if isinstance(related, models.Model):
        if related._state.adding:
            return _UNKNOWN
        key = related.__dict__.get(hops[0][2])
        if key is not None:
            value = memory_reader(plan, hops[1:])(related)
            if value is not _UNKNOWN:
                return value
        related = key  # the source not in memory: looked up by the key
    if related is None:
        return _UNKNOWN
    if not hasattr(related, "resolve_expression"):
        return LookedUpCopy(plan, Value(related, output_field=first.target_field), moved_only=False)
    # The expression reads the row: the copy must be on the same table.
    same_table = first.model._meta.concrete_model is plan.target.model._meta.concrete_model
    if same_table and _reevaluable(related):
        return LookedUpCopy(plan, related, moved_only=True)
    return _UNKNOWN


def with_supplied_copies(
    values: dict[str, Any], supplied: list[tuple[CopyPlan, tuple[str, str], Hops]]
) -> dict[str, Any]:
    """``values`` of an ``update()``, with the copies of the ForeignKeys it sets."""
    added: dict[str, Any] = {}
    for plan, names, hops in supplied:
        target = plan.target
        if target.name in values or target.attname in values:
            continue
        name = next((name for name in names if name in values), None)
        if name is None:
            continue
        value = _supplied_copy(plan, hops, values[name])
        if value is not _UNKNOWN:
            added[target.name] = value
    return {**values, **added} if added else values


def install() -> None:
    from dbrules import registry

    return_derived_values_on_insert(registry.plans())
    copies = _supplying(registry.compiled())
    supply_copies_on_save(copies)
    supply_copies_on_update(copies)
