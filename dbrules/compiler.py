"""Compilation: plans -> SQL (from ``migrations_templates/``) -> pgtrigger triggers.

``compile_plans`` decides which trigger carries what; the SQL of each kind is
built in ``aggregate_sql`` (counts, sums, min/max over a relation) and
``copy_sql`` (copies and same-row expressions), on the trigger classes of
``triggers``, which migrations name by this module.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from django.db import models

from dbrules.aggregate_sql import aggregate_group_triggers, deferred_by_rule, group_reads
from dbrules.analysis import AggregatePlan, CopyPlan, Plan, RowPlan
from dbrules.copy_sql import (
    cascade_writes,
    checked_copies,
    copy_cascade_triggers,
    copy_check_triggers,
    deferred_sources,
    row_inputs,
    row_reads,
    row_triggers,
)
from dbrules.parent_sql import parent_triggers, rekey_columns
from dbrules.triggers import CompiledTrigger, cascade_mark

# Migrations name the trigger classes by this module, their first home.
from dbrules.triggers import CompiledRuleTrigger, RuleTriggerSql, ThroughTrigger  # noqa: F401  isort: skip


def compile_plans(plans: Sequence[Plan]) -> list[CompiledTrigger]:
    """All triggers for a project's plans, in a stable order."""
    compiled: list[CompiledTrigger] = []
    aggregate_groups: dict[tuple[Any, ...], list[AggregatePlan]] = defaultdict(list)
    by_parent: dict[type[models.Model], list[AggregatePlan]] = defaultdict(list)
    for plan in plans:
        if isinstance(plan, AggregatePlan):
            key = (plan.parent._meta.label, plan.child._meta.label, plan.fk.name)
            aggregate_groups[key].append(plan)
            by_parent[plan.parent].append(plan)
    row_plans: dict[type[models.Model], list[Plan]] = defaultdict(list)
    for plan in plans:
        if isinstance(plan, (CopyPlan, RowPlan)):
            row_plans[plan.parent].append(plan)
    aggregated = {
        parent: {p.target.column for p in group} - set(row_inputs(row_plans.get(parent, [])))
        for parent, group in by_parent.items()
    }
    deferred_parents = {
        group[0].parent for group in aggregate_groups.values() if deferred_by_rule(group)
    }
    checked = {model: checked_copies(row_plans[model]) for model in row_plans}
    # A copy whose first hop is a relation some rules count over is checked
    # by that count's statement trigger: one trigger, one read of the row,
    # and the count's parent UPDATE is the copy's lock on its first hop (or,
    # deferred, it notes the rows to check at commit). Not in a count that
    # checks at once a copy that reads a parent of deferred rules further on.
    folded: dict[tuple[Any, ...], list[CopyPlan]] = {}
    for key, group in aggregate_groups.items():
        folded[key] = [
            c
            for c in checked.get(group[0].child, [])
            if c.path[0] == group[0].fk
            and (deferred_by_rule(group) or not deferred_sources([c], deferred_parents))
        ]
    carried = {id(c) for copies in folded.values() for c in copies}
    reacting = _reacting_parents(plans, by_parent, aggregated)
    skipped = {
        key: _skipped_cascades(group_reads(group), row_plans.get(group[0].child, []))
        for key, group in aggregate_groups.items()
    }
    standalone = {model: [c for c in checked[model] if id(c) not in carried] for model in row_plans}
    # An UPDATE check reads the rows whose first hop moved.
    skipped_by_check = {
        model: _skipped_cascades({c.path[0].column for c in copies}, row_plans[model]) if copies else []
        for model, copies in standalone.items()
    }
    marked = {id(c) for copies in [*skipped.values(), *skipped_by_check.values()] for c in copies}
    supplied = _supplied_copies(plans, aggregate_groups, folded, standalone, deferred_parents)
    for key in sorted(aggregate_groups):
        group = aggregate_groups[key]
        # The child's other relations to the same parent table, deferred alike.
        siblings = [
            other
            for other_key, other in sorted(aggregate_groups.items())
            if other_key != key and other_key[:2] == key[:2] and deferred_by_rule(other) == deferred_by_rule(group)
        ]
        marks = [cascade_mark(c.parent, c.target) for c in skipped[key]]
        compiled.extend(
            aggregate_group_triggers(group, folded.get(key, []), group[0].parent in reacting, siblings, marks)
        )
    for parent in sorted(by_parent, key=lambda m: m._meta.label):
        compiled.extend(parent_triggers(parent, by_parent[parent]))
    for model in sorted(row_plans, key=lambda m: m._meta.label):
        recounted = {p.target.column for p in by_parent.get(model, [])}
        recounted_by = rekey_columns(by_parent[model]) if recounted & set(row_reads(row_plans[model])) else []
        compiled.extend(row_triggers(model, row_plans[model], supplied, recounted_by))
        copies = standalone[model]
        marks = [cascade_mark(c.parent, c.target) for c in skipped_by_check[model]]
        compiled.extend(copy_check_triggers(model, copies, deferred_sources(copies, deferred_parents), marks))
        for plan in sorted(row_plans[model], key=lambda p: p.target.name):
            if isinstance(plan, CopyPlan):
                compiled.extend(copy_cascade_triggers(plan, aggregated, marked=id(plan) in marked))
    return compiled


def _supplied_copies(
    plans: Sequence[Plan],
    aggregate_groups: dict[tuple[Any, ...], list[AggregatePlan]],
    folded: dict[tuple[Any, ...], list[CopyPlan]],
    standalone: dict[type[models.Model], list[CopyPlan]],
    deferred_parents: set[type[models.Model]],
) -> set[int]:
    """The copies (by ``id``) whose value an INSERT may supply itself: the
    BEFORE row trigger skips its lookup when the statement gives one, and the
    statement's copy check rewrites a wrong one (copy_sql.supplied_condition).

    Only where that check runs at the end of the statement (not at commit,
    for copies whose check is deferred by declaration) and where nothing
    else reads the copy before the check has run: no aggregate counts,
    sums or filters on it, and no other copy is copied from it."""
    checked_later = {
        id(c) for key, copies in folded.items() if deferred_by_rule(aggregate_groups[key]) for c in copies
    }
    for copies in standalone.values():
        if deferred_sources(copies, deferred_parents):
            checked_later.update(id(c) for c in copies)
    read: set[tuple[str, str]] = set()
    for group in aggregate_groups.values():
        read.update((group[0].child._meta.label, column) for column in group_reads(group))
    for plan in plans:
        if isinstance(plan, CopyPlan):
            read.add((plan.source.model._meta.label, plan.source.column))
    return {
        id(plan)
        for plan in plans
        if isinstance(plan, CopyPlan)
        and id(plan) not in checked_later
        and (plan.parent._meta.label, plan.target.column) not in read
    }


def _skipped_cascades(reads: set[str], row_plans: list[Plan]) -> list[CopyPlan]:
    """The copies among ``row_plans`` whose cascade cannot change the
    columns ``reads`` of a statement trigger on their model."""
    copies = sorted((p for p in row_plans if isinstance(p, CopyPlan)), key=lambda p: p.target.name)
    return [c for c in copies if not cascade_writes(row_plans, c) & reads]


def _reacting_parents(
    plans: Sequence[Plan],
    by_parent: dict[type[models.Model], list[AggregatePlan]],
    aggregated: dict[type[models.Model], set[str]],
) -> set[type[models.Model]]:
    """Parents whose count UPDATE makes dbrules lock further rows: a chained
    rule's grandparent, or the rows a copy of a derived column is copied to."""
    reacting = {p.child for group in by_parent.values() for p in group}
    for plan in plans:
        if not isinstance(plan, CopyPlan):
            continue
        for hop, fk in enumerate(plan.path):
            source = fk.related_model
            relevant = plan.path[hop + 1].column if hop + 1 < len(plan.path) else plan.source.column
            # The cascade's UPDATE OF skips these (copy_sql._cascade_update_of).
            skipped = aggregated.get(source, set()) - {relevant}
            if {p.target.column for p in by_parent.get(source, [])} - skipped:
                reacting.add(source)
    return reacting
