"""The project's rules: every installed model's plans, compiled once."""

from __future__ import annotations

import functools

from django.apps import apps
from django.db import models

from dbrules.analysis import ModelRules, Plan, analyze_model
from dbrules.compiler import compile_plans
from dbrules.triggers import CompiledTrigger, ThroughTrigger
from dbrules.core import rules_of


def models_with_rules() -> list[type[models.Model]]:
    return [m for m in apps.get_models() if rules_of(m)]


@functools.lru_cache(maxsize=None)
def analyzed() -> tuple[ModelRules, ...]:
    return tuple(analyze_model(model) for model in models_with_rules())


def plans() -> list[Plan]:
    return [plan for model_rules in analyzed() for plan in model_rules.plans]


def plans_for(model: type[models.Model]) -> list[Plan]:
    return [plan for plan in plans() if plan.parent is model]


@functools.lru_cache(maxsize=None)
def compiled() -> tuple[CompiledTrigger, ...]:
    return tuple(compile_plans(plans()))


def register_triggers() -> None:
    """Hand every compiled trigger to pgtrigger, which puts it in the model's
    ``Meta.triggers``: ``makemigrations`` then writes it like any other.

    A trigger on an auto-created ManyToMany table is also recorded on the
    model that declares the field, where dbrules' own migration operations
    find it (Django keeps no migration state for auto-created tables).
    """
    from dbrules.core import THROUGH_TRIGGERS

    for item in compiled():
        item.trigger.register(item.model)
        owner = item.model._meta.auto_created
        if owner:
            field = next(
                f.name for f in owner._meta.local_many_to_many if f.remote_field.through is item.model
            )
            entry = ThroughTrigger(field, item.trigger.compile(item.model))
            existing = owner._meta.original_attrs.setdefault(THROUGH_TRIGGERS, [])
            if entry not in existing:
                existing.append(entry)
            setattr(owner._meta, THROUGH_TRIGGERS, existing)


def clear_cache() -> None:
    analyzed.cache_clear()
    compiled.cache_clear()


def generated_fields() -> list[models.Field]:
    """Django GeneratedFields of installed models: PostgreSQL keeps them exact
    itself; ``dbrules list`` shows them beside the rules."""
    return [
        field
        for model in apps.get_models()
        for field in model._meta.local_concrete_fields
        if getattr(field, "generated", False)
    ]
