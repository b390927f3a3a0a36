"""System checks: every rule is verified before any SQL is generated.

Ids: E001 missing app, E002 not a Derived, E003 bad target field, E004 unknown
field or relation, E005 unsupported expression, E006 type mismatch, E007
filter that cannot be compiled, E008 two rules for one field, E009 cycle,
E010 rules over one relation that disagree on deferred=, E011 rules on a
proxy model, E012 a multi-table child's rule over its parent's columns, E013
a rule needing triggers on an unmanaged model's table, E014 a copy or
same-row rule on a model with a composite primary key.
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
    for model in models:
        errors.extend(messages_for(model))
    errors.extend(cycle_messages())
    errors.extend(deferral_messages())
    return errors


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
