"""What Django sends and reads back when it writes rows of a model with rules.

Derived columns are the database's, but an INSERT or UPDATE goes through
Django's own field machinery first: these hooks make it send a copy whose
source it already holds in memory, and read back what the triggers stored.
"""

from __future__ import annotations

from typing import Any, Callable

import pgtrigger
from django.db import models
from django.db.models.sql.subqueries import UpdateQuery

from dbrules.analysis import CopyPlan, Plan
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


def copy_in_memory(instance: models.Model, plan: CopyPlan, hops: Hops) -> Any:
    """The copy's value as the related instances cached on ``instance`` hold
    it, or ``_UNKNOWN`` where that would take a query (a relation or the
    source field not loaded) or may not be what the database has (an
    unsaved instance, a ForeignKey changed since the instance was cached)."""
    current: models.Model = instance
    for cache_name, attname, target_attname in hops:
        related = current._state.fields_cache.get(cache_name)
        if related is None or related._state.adding:
            return _UNKNOWN
        key = current.__dict__.get(attname, _UNKNOWN)
        if key is _UNKNOWN or key != related.__dict__.get(target_attname, _UNKNOWN):
            return _UNKNOWN
        current = related
    value = current.__dict__.get(plan.source.attname, _UNKNOWN)
    if value is None:
        return _UNKNOWN
    limit = plan.target.max_length
    if limit is not None and isinstance(value, str) and len(value) > limit:
        return _UNKNOWN
    return value


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
    attname, hops = plan.target.attname, _hops(plan)

    def pre_save(model_instance: models.Model, add: bool) -> Any:
        value = copy_in_memory(model_instance, plan, hops)
        if value is not _UNKNOWN:
            setattr(model_instance, attname, value)
        return original(model_instance, add)

    pre_save.dbrules_original = original  # type: ignore[attr-defined]
    return pre_save


def supply_copies_on_update(copies: list[CopyPlan]) -> None:
    """``QuerySet.update(author=author)`` sends ``author_name`` too when the
    instance holds it (and the statement does not set it itself), so that
    the moved rows skip the row trigger's lookup. Any other value of the
    ForeignKey (a key, an expression, None) goes as before."""
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


def with_supplied_copies(
    values: dict[str, Any], supplied: list[tuple[CopyPlan, tuple[str, str], Hops]]
) -> dict[str, Any]:
    """``values`` of an ``update()``, with the copies that a ForeignKey set
    to a saved instance brings in memory."""
    added: dict[str, Any] = {}
    for plan, names, hops in supplied:
        target = plan.target
        if target.name in values or target.attname in values:
            continue
        related = next((values[name] for name in names if name in values), None)
        if not isinstance(related, models.Model) or related._state.adding:
            continue
        _, _, target_attname = hops[0]
        if related.__dict__.get(target_attname) is None:
            continue
        value = copy_in_memory(related, plan, hops[1:])
        if value is not _UNKNOWN:
            added[target.name] = value
    return {**values, **added} if added else values


def install() -> None:
    from dbrules import registry

    return_derived_values_on_insert(registry.plans())
    copies = _supplying(registry.compiled())
    supply_copies_on_save(copies)
    supply_copies_on_update(copies)
