"""The parent's own triggers for its aggregates over a reverse ForeignKey:
``compute`` sets the values of a new parent from the children that already
carry its key, ``guard`` keeps direct writes off the derived columns, and
``rekey`` recomputes a parent whose key changes."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import pgtrigger
from django.db import models

from dbrules.aggregate_sql import PARKED, aggregate_over_children, pending_table, relation_groups
from dbrules.analysis import AggregatePlan
from dbrules.sqlrender import quote, render, table
from dbrules.triggers import (
    CompiledTrigger,
    RuleTrigger,
    any_column_changed,
    comment_for,
    quoted_column,
    trigger_name,
)


def rekey_columns(plans: Sequence[AggregatePlan]) -> list[str]:
    """The parent's key columns (its primary key, a ForeignKey's to_field)
    whose change makes the rekey trigger recompute ``plans``' values."""
    return list(dict.fromkeys(group[0].parent_key.column for group in relation_groups(list(plans))))


def parent_triggers(
    parent: type[models.Model], plans: list[AggregatePlan]
) -> list[CompiledTrigger]:
    ordered = relation_groups(plans)
    computations = [_compute_from_children(group) for group in ordered]
    comment = comment_for(plans)
    targets = sorted({p.target.column for p in plans})
    compute = RuleTrigger(
        name=trigger_name(parent._meta.model_name, "compute"),
        when=pgtrigger.Before,
        operation=pgtrigger.Insert,
        level=pgtrigger.Row,
        func=render("parent_insert.sql", computations="\n".join(computations)),
        comment=comment,
    )
    guard = RuleTrigger(
        name=trigger_name(parent._meta.model_name, "guard"),
        when=pgtrigger.Before,
        operation=pgtrigger.Update,
        level=pgtrigger.Row,
        # PostgreSQL rebuilds a trigger's WHEN from its stored node tree for
        # every statement that updates the table, dbrules' own one-row parent
        # updates included. Its cost grows with the expression: with the
        # repair test beside the depth test it was ~48k instructions per
        # update (~37k more than this), so the repair test is in the body,
        # which only direct writes and repair reach.
        condition=pgtrigger.Condition("pg_trigger_depth() < 1"),
        func=render(
            "parent_guard.sql",
            restores="\n".join(f"NEW.{quote(c)} := OLD.{quote(c)};" for c in targets),
        ),
        comment=comment,
    )
    keys = rekey_columns(plans)
    rekey = RuleTrigger(
        name=trigger_name(parent._meta.model_name, "rekey"),
        # BEFORE: see parent_rekey.sql. By name it fires after the guard,
        # which would restore the old values, and before row_upd, whose
        # same-row rules read the new ones.
        when=pgtrigger.Before,
        # UPDATE OF the keys: dbrules' own updates of the parent, and Django's
        # save(), which never sets the primary key, skip it before its WHEN.
        operation=pgtrigger.UpdateOf(*keys),
        level=pgtrigger.Row,
        condition=pgtrigger.Condition(any_column_changed(keys)),
        func=render(
            "parent_rekey.sql",
            recomputes="\n".join(_rekey_recompute(group, several=len(keys) > 1) for group in ordered),
        ),
        comment=comment,
    )
    return [
        CompiledTrigger(parent, compute, tuple(plans)),
        CompiledTrigger(parent, guard, tuple(plans)),
        CompiledTrigger(parent, rekey, tuple(plans)),
    ]


def _children_of_new(group: Sequence[AggregatePlan], indent: str) -> str:
    """``FROM`` the children (alias ``r``) of the parent row ``NEW``; the
    ``WHERE`` on a line of its own after ``indent``."""
    first = group[0]
    return (
        f"FROM {table(first.child)} AS r\n"
        f"{indent}WHERE r.{quoted_column(first.fk)} = NEW.{quoted_column(first.parent_key)}"
    )


def _clear_parked(group: Sequence[AggregatePlan]) -> str:
    """Drop the deltas this transaction parked for the parent key ``NEW`` now
    holds: the value just computed from the children already includes them,
    and applying them again at commit would count them twice."""
    pending, _ = pending_table(group)
    key = quoted_column(group[0].parent_key)
    # Only a transaction that parked deltas has any (aggregate_delta.sql sets
    # the flag): the test spares every other parent insert a DELETE, about
    # 6 us of the 60 us a parent insert takes on the benchmark's tables.
    return (
        f"IF {PARKED} THEN\n"
        f"    DELETE FROM {pending} WHERE dbrules_txid = txid_current() AND parent_key = NEW.{key};\n"
        "END IF;"
    )


def _compute_from_children(group: Sequence[AggregatePlan]) -> str:
    """Set one relation's values of the parent row ``NEW`` from the children
    that carry its key, and drop the deltas this transaction parked for it."""
    return (
        "SELECT "
        + ",\n       ".join(aggregate_over_children(p, "r") for p in group)
        + "\n  INTO "
        + ", ".join(f"NEW.{quoted_column(p.target)}" for p in group)
        + f"\n  {_children_of_new(group, ' ')};\n"
        + _clear_parked(group)
    )


def _rekey_recompute(group: Sequence[AggregatePlan], several: bool) -> str:
    """Recompute one relation's values of a parent whose key changes, from the
    children that carry the new key; with ``several`` keys, only when this
    relation's key is the one changing."""
    statements = _compute_from_children(group)
    if not several:
        return statements
    key = quoted_column(group[0].parent_key)
    return f"IF NEW.{key} IS DISTINCT FROM OLD.{key} THEN\n{textwrap.indent(statements, '    ')}\nEND IF;"
