"""What Django sends and reads back when it inserts rows of a model with rules.

Derived columns are the database's, but an INSERT goes through Django's own
field machinery first: these hooks make it send a copy the instance already
holds in memory, and read back what the triggers stored.
"""

from __future__ import annotations

from typing import Any, Callable

import pgtrigger
from django.db import models

from dbrules.analysis import CopyPlan, Plan
from dbrules.triggers import CompiledTrigger

_UNKNOWN = object()


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


def _hops(plan: CopyPlan) -> list[tuple[str, str, str]]:
    """Per ForeignKey of the path: its cache name on the instance, its
    attname and the attname of the field it points at."""
    return [
        (fk.cache_name if hasattr(fk, "cache_name") else fk.get_cache_name(), fk.attname, fk.target_field.attname)
        for fk in plan.path
    ]


def copy_in_memory(instance: models.Model, plan: CopyPlan, hops: list[tuple[str, str, str]]) -> Any:
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


def supply_copies_on_insert(compiled: tuple[CompiledTrigger, ...]) -> None:
    """Send each copy with the row when Django holds its source in memory.

    ``Book(author=author)`` caches ``author`` on the book: its ``name`` is
    at hand without a query. Given the value, the BEFORE INSERT trigger
    skips its per-row lookup of the author (its WHEN, where the compiler
    gave it one: copy_sql.supplied_condition), and the statement's copy
    check, which compares every inserted copy with its source anyway,
    rewrites the row if the value was stale. Where the source is not in
    memory the field goes as before and the trigger looks it up. Copies
    whose trigger runs for every row are left alone: a value sent would be
    looked up all the same.
    """
    for item in compiled:
        trigger = item.trigger
        skips = trigger.when is pgtrigger.Before and trigger.operation is pgtrigger.Insert
        if not (skips and trigger.level is pgtrigger.Row and trigger.condition is not None):
            continue
        for plan in item.plans:
            if isinstance(plan, CopyPlan):
                field = plan.target
                original = getattr(field.pre_save, "dbrules_original", field.pre_save)
                field.pre_save = _pre_save(plan, original)


def _pre_save(plan: CopyPlan, original: Callable[[models.Model, bool], Any]) -> Callable[[models.Model, bool], Any]:
    attname, hops = plan.target.attname, _hops(plan)

    def pre_save(model_instance: models.Model, add: bool) -> Any:
        if add:
            value = copy_in_memory(model_instance, plan, hops)
            if value is not _UNKNOWN:
                setattr(model_instance, attname, value)
        return original(model_instance, add)

    pre_save.dbrules_original = original  # type: ignore[attr-defined]
    return pre_save


def install() -> None:
    from dbrules import registry

    return_derived_values_on_insert(registry.plans())
    supply_copies_on_insert(registry.compiled())
