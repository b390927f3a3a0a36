"""System checks: every rule is verified before any SQL is generated.

Ids: E001 missing app, E002 not a Derived, E003 bad target field, E004 unknown
field or relation, E005 unsupported expression, E006 type mismatch, E007
filter that cannot be compiled, E008 two rules for one field, E009 cycle,
E010 rules over one relation that disagree on deferred=, E011 rules on a
proxy model, E012 a multi-table child's rule over its parent's columns, E013
a rule needing triggers on an unmanaged model's table, E014 a copy or
same-row rule on a model with a composite primary key, E015 rules on a
model of a schema-per-tenant app (TENANT_APPS); W001 a ForeignKey the
triggers look rows up by with no index.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks

from dbrules.core import rules_of


@checks.register(checks.Tags.models)
def check_rules(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from django.apps import apps

    models = [
        m
        for m in apps.get_models()
        if rules_of(m) and (app_configs is None or apps.get_app_config(m._meta.app_label) in app_configs)
    ]
    errors: list[checks.CheckMessage] = []
    if models:
        for app in ("pgtrigger", "dbrules"):
            if app not in settings.INSTALLED_APPS:
                errors.append(
                    checks.Error(
                        f"{models[0]._meta.label} declares Meta.rules but {app!r} is not in "
                        "INSTALLED_APPS, so no trigger would be installed.",
                        hint='Add "pgtrigger" and "dbrules" to INSTALLED_APPS.',
                        id="dbrules.E001",
                    )
                )
    errors.extend(tenant_messages(models))
    for model in models:
        errors.extend(messages_for(model))
    errors.extend(cycle_messages())
    errors.extend(deferral_messages())
    errors.extend(index_messages())
    return errors


def tenant_messages(models: list[Any]) -> list[checks.CheckMessage]:
    """Schema-per-tenant projects (django-tenants, django-tenant-schemas list
    their per-tenant apps in TENANT_APPS) create an app's tables once per
    tenant schema. dbrules' triggers name their tables in one schema
    (DBRULES_SCHEMA): a tenant's tables would get none, and every
    migration of a tenant would install them on that one schema again."""
    from django.apps import apps

    tenant_apps = set(getattr(settings, "TENANT_APPS", None) or ())
    shared_apps = set(getattr(settings, "SHARED_APPS", None) or ())
    schema = getattr(settings, "DBRULES_SCHEMA", "public")
    messages = []
    for model in models:
        app = apps.get_app_config(model._meta.app_label)
        if app.name in tenant_apps or app.label in tenant_apps:
            shared = " (it is in SHARED_APPS too)" if app.name in shared_apps or app.label in shared_apps else ""
            messages.append(
                checks.Error(
                    f"{model._meta.label} declares Meta.rules, and its app {app.name!r} is in TENANT_APPS"
                    f"{shared}: its tables exist once per tenant schema, but dbrules' triggers name "
                    f"their tables in one schema (DBRULES_SCHEMA = {schema!r}), so no tenant's values "
                    "would be maintained.",
                    hint="Keep rules on models of shared apps only, and read per-tenant values with "
                    "dbrules.annotate_live() or annotate().",
                    obj=model,
                    id="dbrules.E015",
                )
            )
    return messages


def deferral_messages(plans: Any = None) -> list[checks.CheckMessage]:
    """Rules over one relation share their triggers, so they defer together."""
    from collections import defaultdict

    from dbrules import registry
    from dbrules.analysis import AggregatePlan

    groups: dict[tuple[str, str, str], list[AggregatePlan]] = defaultdict(list)
    for plan in registry.plans() if plans is None else plans:
        if isinstance(plan, AggregatePlan):
            groups[(plan.parent._meta.label, plan.child._meta.label, plan.fk.name)].append(plan)
    messages = []
    for (parent, child, fk), group in sorted(groups.items()):
        if len({p.rule.deferred for p in group}) > 1:
            messages.append(
                checks.Error(
                    f"{parent}: rules over {child}.{fk} disagree on deferred=: "
                    + ", ".join(f"{p.rule.field} (deferred={p.rule.deferred})" for p in group),
                    hint="They compile to the same triggers; give them all the same deferred=.",
                    obj=group[0].parent,
                    id="dbrules.E010",
                )
            )
    return messages


def index_messages(plans: Any = None) -> list[checks.CheckMessage]:
    """The triggers find rows by the ForeignKeys rules run along: a new
    parent's children, the rows a Max or Min must rescan, the copies of a
    changed source. Without an index each of those lookups reads the whole
    table (20 rows deleted among 200,000, each its parent's maximum:
    276-304 ms, against 14-21 ms with the index)."""
    from dbrules import registry
    from dbrules.analysis import AggregatePlan, CopyPlan

    found: dict[tuple[str, str], tuple[Any, Any, list[str]]] = {}
    for plan in registry.plans() if plans is None else plans:
        if isinstance(plan, AggregatePlan):
            keys = [(plan.child, plan.fk)]
        elif isinstance(plan, CopyPlan):
            keys = [(fk.model, fk) for fk in plan.path]
        else:
            continue
        for model, fk in keys:
            if not _indexed(model, fk):
                rules = found.setdefault((model._meta.label, fk.name), (model, fk, []))[2]
                if plan.label not in rules:
                    rules.append(plan.label)
    return [
        checks.Warning(
            f"{label}.{name} (column {fk.column}) has no index, and dbrules looks {label} rows up "
            f"by it to maintain {', '.join(rules)}: each such lookup reads the whole table.",
            hint=f"Keep db_index=True on {label}.{name}, or add an index that starts with "
            f"{fk.column} (Meta.indexes). If the database has one Django does not know of, add "
            '"dbrules.W001" to SILENCED_SYSTEM_CHECKS.',
            obj=model,
            id="dbrules.W001",
        )
        for (label, name), (model, fk, rules) in sorted(found.items())
    ]


def _indexed(model: Any, field: Any) -> bool:
    """An index whose first column is ``field``'s serves lookups by it: the
    field's own, a unique constraint's, one of Meta.indexes. Partial ones
    (a condition) leave some rows out."""
    from django.db import models

    if field.db_index or field.unique or field.primary_key:
        return True
    meta = model._meta
    firsts = [index.fields[0] for index in meta.indexes if index.fields and index.condition is None]
    firsts += [
        constraint.fields[0]
        for constraint in meta.constraints
        if isinstance(constraint, models.UniqueConstraint) and constraint.fields and constraint.condition is None
    ]
    firsts += [fields[0] for fields in meta.unique_together if fields]
    firsts += [fields[0] for fields in getattr(meta, "index_together", ()) if fields]
    return any(first.lstrip("-") in (field.name, field.attname) for first in firsts)


def cycle_messages(plans: Any = None) -> list[checks.CheckMessage]:
    from dbrules import registry
    from dbrules.analysis import dependency_cycles

    return [
        checks.Error(
            "Rules form a cycle: " + " -> ".join(cycle) + "; no trigger order can settle it.",
            hint="Break the cycle: derive one of these fields from stored, non-derived columns.",
            id="dbrules.E009",
        )
        for cycle in dependency_cycles(registry.plans() if plans is None else plans)
    ]


def messages_for(model: Any) -> list[checks.CheckMessage]:
    """The check errors of one model's rules (used by tests on isolated models)."""
    from dbrules.analysis import analyze_model

    return [
        checks.Error(error.msg, hint=error.hint, obj=model, id=error.id)
        for _, error in analyze_model(model).errors
    ]
