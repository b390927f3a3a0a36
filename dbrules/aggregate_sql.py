"""Aggregates over a reverse ForeignKey: the statement triggers on the child
table, and deferred mode's pending table with its commit-time trigger (the
parent's own triggers are in ``parent_sql``).

Rules that share a parent and a relation compile together: one statement
trigger per operation on the child table updates every derived column of the
parent in one ``UPDATE``, and checks the child's copies whose first hop is
that relation (``copy_sql.copy_check``).
"""

from __future__ import annotations

import textwrap
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Optional

import pgtrigger

from dbrules.analysis import AggregatePlan, CopyPlan, condition_columns
from dbrules.copy_sql import CopyCheck, copy_check, recheck_rows
from dbrules.sqlrender import column_type, literal, quote, render, render_condition, table, without_blank_lines
from dbrules.triggers import (
    COMMIT_DECLARE,
    OPERATIONS,
    REFERENCING,
    CompiledTrigger,
    RuleTrigger,
    cascade_skip,
    comment_for,
    commit_order_entry,
    commit_steps,
    commit_order_removal,
    jit_steps,
    mark_parked,
    planned_each_call,
    plans_by_size,
    quoted_column,
    transaction_table,
    trigger_name,
)


# A transaction that parked deltas for its commit lists their pending
# tables in this setting (mark_parked.sql).
PARKED = "coalesce(current_setting('dbrules.parked', true), '') <> ''"
# Parents a grouped apply updated (or locked) and parents whose deltas
# change them: fewer of the first means a parent was not there.
COUNTS = (("dbrules_applied", "bigint"), ("dbrules_changed", "bigint"))


def relation_groups(plans: Iterable[AggregatePlan]) -> list[list[AggregatePlan]]:
    """One parent's aggregate plans by relation (child model and foreign
    key), in the order the triggers and pending tables are built from."""
    groups: dict[tuple[str, str], list[AggregatePlan]] = defaultdict(list)
    for plan in plans:
        groups[(plan.child._meta.label, plan.fk.name)].append(plan)
    return [groups[key] for key in sorted(groups)]


def neutral_parked(plan: AggregatePlan) -> list[str]:
    """Assignments that make ``plan``'s parked deltas change nothing at commit."""
    value = "NULL" if plan.function in {"min", "max"} else "0"
    return [f"{name} = {value}" for name, _ in _pending_columns(plan)]


def pending_table(plans: Sequence[AggregatePlan]) -> tuple[str, str]:
    """The pending table of rules over one relation (deferred mode parks
    their deltas there), and the SQL that creates it."""
    first = plans[0]
    columns = [c for p in plans for c in _pending_columns(p)]
    return transaction_table(
        "pending",
        first.parent,
        (first.parent._meta.db_table, first.child._meta.db_table, first.fk.column, columns),
        ",\n    ".join([f"parent_key {column_type(first.fk)} NOT NULL", *(f"{n} {k}" for n, k in columns)]),
    )


def _condition_sql(plan: AggregatePlan, alias: str) -> str:
    if plan.condition is None:
        return "TRUE"
    return render_condition(plan.child, plan.condition, alias)


def needs_rescan(plan: AggregatePlan) -> bool:
    """Min/Max (when the extreme leaves) and a nullable Sum (when it may become
    empty) cannot always be updated from deltas alone."""
    return plan.function in {"min", "max"} or (plan.function == "sum" and plan.target.null)


def _delta_columns(plan: AggregatePlan) -> list[str]:
    """Columns of the per-parent ``deltas`` row for ``plan`` (alias ``r``: signed rows)."""
    condition = _condition_sql(plan, "r")
    name = plan.target.column
    value = f"r.{quoted_column(plan.value)}" if plan.value is not None else None
    if plan.function == "count":
        if value is not None:
            condition = f"({condition}) AND {value} IS NOT NULL"
        return [f"coalesce(sum(r.dbrules_sign) FILTER (WHERE {condition}), 0) AS {quote(name)}"]
    if plan.function == "sum":
        columns = [
            f"coalesce(sum(r.dbrules_sign * {value}) FILTER (WHERE {condition}), 0) AS {quote(name)}"
        ]
        if plan.target.null:
            for sign, suffix in ((-1, "removed"), (1, "added")):
                columns.append(
                    f"count(*) FILTER (WHERE r.dbrules_sign = {sign} AND ({condition}) "
                    f"AND {value} IS NOT NULL) AS {quote(name + '__' + suffix)}"
                )
        return columns
    # min / max: the extreme among added rows, and among removed rows
    return [
        f"{plan.function}({value}) FILTER (WHERE r.dbrules_sign = {sign} AND ({condition})) "
        f"AS {quote(name + '__' + suffix)}"
        for sign, suffix in ((1, "added"), (-1, "removed"))
    ]


Ref = Callable[[str], str]


def _ref(d: "str | Ref") -> Ref:
    """How a delta column is read: ``d.column`` of the record or alias ``d``,
    or whatever expression a callable gives for the column name."""
    if callable(d):
        return d
    return lambda name: f"{d}.{quote(name)}"


def _is_constant(sql: str) -> bool:
    """A delta a one-row side knows without reading its row: NULL or a number."""
    return sql == "NULL" or sql.lstrip("-").isdigit()


def _any(conditions: Iterable[str]) -> str:
    """``a OR b ...``, with the constants TRUE and FALSE decided here."""
    terms = [c for c in conditions if c != "FALSE"]
    if "TRUE" in terms:
        return "TRUE"
    return " OR ".join(terms) or "FALSE"


def _delta_changed(plan: AggregatePlan, d: "str | Ref" = "d") -> str:
    """True when the deltas row ``d`` changes ``plan``'s value. Constant
    deltas (a one-row side, ``_row_deltas``) are decided here."""
    ref = _ref(d)
    name = plan.target.column
    if plan.function == "count" or (plan.function == "sum" and not plan.target.null):
        tests = [(ref(name), "<> 0")]
    elif plan.function == "sum":
        tests = [(ref(name + "__removed"), "<> 0"), (ref(name + "__added"), "<> 0")]
    else:
        tests = [(ref(name + "__added"), "IS NOT NULL"), (ref(name + "__removed"), "IS NOT NULL")]
    # A constant delta decides its test: NULL or 0 never changes the value.
    terms = [
        f"{value} {test}" if not _is_constant(value) else "FALSE" if value in {"NULL", "0"} else "TRUE"
        for value, test in tests
    ]
    changed = _any(terms)
    return f"({changed})" if " OR " in changed else changed


def _rescan_sql(plan: AggregatePlan) -> str:
    """The aggregate over one parent's children, recomputed (alias ``c``)."""
    return (
        f"(SELECT {aggregate_over_children(plan, 'c')} FROM {table(plan.child)} AS c "
        f"WHERE c.{quoted_column(plan.fk)} = p.{quoted_column(plan.parent_key)})"
    )


def _delta_assignment(plan: AggregatePlan, d: "str | Ref" = "d") -> str:
    """``target = <new value>`` from the parent's deltas row ``d``. Constant
    deltas (a one-row side, ``_row_deltas``) drop the cases they rule out."""
    ref = _ref(d)
    column = quoted_column(plan.target)
    name = plan.target.column
    if plan.function == "count" or (plan.function == "sum" and not plan.target.null):
        delta = ref(name)
        return f"{column} = p.{column}" if delta == "0" else f"{column} = p.{column} + {delta}"
    if plan.function == "sum":
        removed, added, delta = ref(name + "__removed"), ref(name + "__added"), ref(name)
        add = f"coalesce(p.{column}, 0) + {delta}"
        if removed == "0":  # rows were only added
            return f"{column} = CASE WHEN {added} = 0 THEN p.{column} ELSE {add} END"
        if added == "0":  # rows were only removed: the last value may have left
            return f"{column} = CASE WHEN {removed} = 0 THEN p.{column} ELSE {_rescan_sql(plan)} END"
        # Untouched by this statement: keep (NULL stays NULL). Only additions:
        # add. A value left: it may have been the last one, so rescan.
        return (
            f"{column} = CASE WHEN {removed} = 0 AND {added} = 0 THEN p.{column} "
            f"WHEN {removed} = 0 THEN {add} "
            f"ELSE {_rescan_sql(plan)} END"
        )
    added, removed = ref(name + "__added"), ref(name + "__removed")
    # The extreme may have left when a removed value reaches it: rescan.
    # Otherwise the new extreme is the old one or the best added value
    # (GREATEST/LEAST ignore NULLs).
    left = ">=" if plan.function == "max" else "<="
    combine = "GREATEST" if plan.function == "max" else "LEAST"
    if removed == "NULL":  # rows were only added
        return f"{column} = {combine}(p.{column}, {added})"
    kept = f"p.{column}" if added == "NULL" else f"{combine}(p.{column}, {added})"
    # A removal with no stored extreme happens when deferred mode merged
    # "added x" and "removed x" of one transaction: rescan then too.
    return (
        f"{column} = CASE WHEN {removed} {left} p.{column} "
        f"OR ({removed} IS NOT NULL AND p.{column} IS NULL) THEN {_rescan_sql(plan)} "
        f"ELSE {kept} END"
    )


def _row_deltas(plan: AggregatePlan, alias: str, sign: int) -> dict[str, str]:
    """The deltas one transition row ``alias`` (added: sign 1, removed: -1)
    contributes, as expressions over that row, named like ``_delta_columns``.

    A column the side cannot contribute to (an added row never removes an
    extreme) is the constant it would aggregate to: NULL or 0."""
    condition = _condition_sql(plan, alias)
    name = plan.target.column
    value = f"{alias}.{quoted_column(plan.value)}" if plan.value is not None else None
    tests = [t for t in (condition, f"{value} IS NOT NULL" if value else None) if t and t != "TRUE"]
    counted = " AND ".join(f"({t})" if t == condition else t for t in tests)
    ours, other = ("__added", "__removed") if sign == 1 else ("__removed", "__added")

    def when(then: str, otherwise: str) -> str:
        return f"CASE WHEN {counted} THEN {then} ELSE {otherwise} END" if counted else then

    if plan.function == "count":
        return {name: when(str(sign), "0")}
    if plan.function == "sum":
        assert value is not None  # analysis refuses a Sum without a field (dbrules.E005)
        if condition == "TRUE":
            signed = f"coalesce({value}, 0)" if sign == 1 else f"0 - coalesce({value}, 0)"
        else:
            signed = when(value if sign == 1 else f"0 - {value}", "0")
        deltas = {name: signed}
        if plan.target.null:
            deltas[name + ours] = when("1", "0")
            deltas[name + other] = "0"
        return deltas
    # min/max: a NULL value is no extreme, as the aggregate would skip it
    extreme = value if condition == "TRUE" else f"CASE WHEN ({condition}) THEN {value} END"
    return {name + ours: str(extreme), name + other: "NULL"}


SIGNED_ROWS = {
    "insert": "SELECT 1 AS dbrules_sign, n.* FROM dbrules_new AS n",
    "delete": "SELECT -1 AS dbrules_sign, o.* FROM dbrules_old AS o",
    "update": (
        "SELECT -1 AS dbrules_sign, o.* FROM dbrules_old AS o "
        "UNION ALL SELECT 1, n.* FROM dbrules_new AS n"
    ),
}


def _merged(plan: AggregatePlan) -> list[str]:
    """How parked deltas of several statements combine, per pending column."""
    merge = plan.function if plan.function in {"min", "max"} else "sum"
    return [f"{merge}(q.{quote(name)})" for name in _delta_names([plan])]


def _pending_columns(plan: AggregatePlan) -> list[tuple[str, str]]:
    """(quoted column, SQL type) of ``plan``'s columns in the pending table."""
    columns = []
    for name in _delta_names([plan]):
        if plan.function in {"min", "max"}:
            kind = column_type(plan.value)
        elif plan.function == "sum" and name == plan.target.column:
            kind = "numeric"
        else:
            kind = "bigint"
        columns.append((quote(name), kind))
    return columns


def _delta_names(plans: Sequence[AggregatePlan]) -> list[str]:
    """The deltas' column names, unquoted, in the order ``_delta_columns``
    writes them and the pending table holds them."""
    names: list[str] = []
    for plan in plans:
        name = plan.target.column
        if plan.function == "count":
            names.append(name)
        elif plan.function == "sum":
            names += [name, name + "__removed", name + "__added"] if plan.target.null else [name]
        else:
            names += [name + "__added", name + "__removed"]
    return names


def _missed_one(
    plans: Sequence[AggregatePlan], park: dict[str, str], key: str, ref: Ref, missing: str = "NOT FOUND"
) -> str:
    """Park one row's deltas ``ref`` for parent ``key`` in ``park``'s pending
    table when ``missing``: the UPDATE before found no such parent
    (missed_parent_one.sql)."""
    return render(
        "missed_parent_one.sql",
        missing=missing,
        key=key,
        values=", ".join(ref(n) for n in _delta_names(plans)),
        **park,
    )


def deferred_by_rule(plans: Sequence[AggregatePlan]) -> bool:
    return any(p.rule.deferred for p in plans)


# The one-row path reads the transition rows of each side under this alias.
ROW_SIDES = {
    "insert": [("new", "n", 1)],
    "delete": [("old", "o", -1)],
    "update": [("old", "o", -1), ("new", "n", 1)],
}


def _rescan_lock(plan: AggregatePlan, operation: str, key: str) -> str:
    """Lock the parent ``key`` before an UPDATE that rescans it.

    A rescan must see every earlier writer of this parent: locked first, the
    UPDATE (a new statement) takes a fresh snapshot. An INSERT only adds
    values, which never makes a rescan necessary."""
    if operation == "insert":
        return ""
    return (
        f"PERFORM 1 FROM {table(plan.parent)} AS p "
        f"WHERE p.{quoted_column(plan.parent_key)} = {key} FOR NO KEY UPDATE;"
    )


def _one_row_path(
    plans: list[AggregatePlan],
    operation: str,
    rescans: bool,
    check: Optional[CopyCheck],
    reacting: bool,
    park: dict[str, str],
) -> dict[str, str]:
    """The placeholders of aggregate_delta.sql for a statement that wrote one
    row: the SELECT of that row's deltas into ``one``, and what applies them;
    then a folded copy check's part (``check``), whose first hop is the
    parent the row's new side updates. ``reacting``: updating the parent
    locks further rows (``compiler._reacting_parents``)."""
    first = plans[0]
    parent_table, parent_key, fk = table(first.parent), quoted_column(first.parent_key), quoted_column(first.fk)
    columns: list[str] = []
    refs: dict[str, dict[str, str]] = {}
    for side, alias, sign in ROW_SIDES[operation]:
        columns.append(f"{alias}.{fk} AS dbrules_{side}_key")
        refs[side] = {}
        for plan in plans:
            for name, expression in _row_deltas(plan, alias, sign).items():
                if _is_constant(expression):  # known without reading the row
                    refs[side][name] = expression
                    continue
                label = quote(f"{side}:{name}")
                columns.append(f"{expression} AS {label}")
                refs[side][name] = f"one.{label}"

    def changed(ref: Ref) -> str:
        return _any(_delta_changed(p, ref) for p in plans)

    def assignments(ref: Ref, indent: int) -> str:
        return (",\n" + " " * indent).join(_delta_assignment(p, ref) for p in plans)

    def applies(key: str, ref: Ref) -> str:
        test = changed(ref)
        return f"one.{key} IS NOT NULL" + ("" if test == "TRUE" else f" AND ({test})")

    def lock(key: str) -> str:
        return _rescan_lock(first, operation, f"one.{key}") if rescans else ""

    values = {"parent_table": parent_table, "parent_key": parent_key}

    def missed(key: str, ref: Ref, indent: int, missing: str = "NOT FOUND") -> str:
        return textwrap.indent(_missed_one(plans, park, f"one.{key}", ref, missing), " " * indent)

    def absent(key: str) -> str:
        return f"NOT EXISTS (SELECT FROM {parent_table} AS p WHERE p.{parent_key} = one.{key})"

    # The new side's parent UPDATE locks the copies' first hop and returns
    # its newest version: the copy check need not lock and read it again.
    returning = check.returning if check else ""
    read = "dbrules_hop0 := true;" if check else ""
    if operation == "update":
        old, new = refs["old"], refs["new"]

        def same(name: str) -> str:
            """The old and new row's deltas together: for one parent."""
            a, b = old[name], new[name]
            if a in {"0", "NULL"}:  # a side that contributes nothing to it
                return b
            if b in {"0", "NULL"}:
                return a
            if _is_constant(a) and _is_constant(b):
                return str(int(a) + int(b))
            return f"({a} + {b})"

        def both(name: str) -> str:
            """The old or the new row's delta, by the parent being updated."""
            a, b = old[name], new[name]
            return a if a == b else f"CASE WHEN p.{parent_key} = one.dbrules_old_key THEN {a} ELSE {b} END"

        sides = {
            "old_applies": applies("dbrules_old_key", old.__getitem__),
            "new_applies": applies("dbrules_new_key", new.__getitem__),
            **values,
        }
        # Both parents in key order. Updating a parent that locks nothing
        # further takes its lock: the smaller key's UPDATE goes first. One
        # that does (a chain, a copied derived column), or whose update
        # rescans, is locked with the other first, then both are updated in
        # one statement, so a chained rule's trigger on the parent table
        # sees both rows at once and locks the grandparents in key order.
        if reacting or rescans:
            moved = render(
                "one_row_move_locked.sql",
                both_assignments=assignments(both, 7),
                old_missed=missed(
                    "dbrules_old_key", old.__getitem__, 4,
                    f"{sides['old_applies']} AND {absent('dbrules_old_key')}",
                ),
                new_missed=missed(
                    "dbrules_new_key", new.__getitem__, 4,
                    f"{sides['new_applies']} AND {absent('dbrules_new_key')}",
                ),
                **sides,
            )
        else:
            moved = render(
                "one_row_move_ordered.sql",
                old_assignments=assignments(old.__getitem__, 11),
                new_assignments=assignments(new.__getitem__, 11),
                old_missed=missed("dbrules_old_key", old.__getitem__, 4),
                new_missed=missed("dbrules_new_key", new.__getitem__, 4),
                new_returning=returning,
                new_read=read,
                **sides,
            )
        one_row = render(
            "one_row_update.sql",
            same_changed=changed(same),
            lock_same=lock("dbrules_new_key"),
            same_assignments=assignments(same, 15),
            same_missed=missed("dbrules_new_key", same, 8),
            moved_changed=_any([changed(old.__getitem__), changed(new.__getitem__)]),
            moved=textwrap.indent(moved, "    "),
            **values,
        )
    else:
        [(side, _, _)] = ROW_SIDES[operation]
        key = f"dbrules_{side}_key"
        ref = refs[side].__getitem__
        one_row = render(
            "one_row_side.sql",
            key=key,
            applies=applies(key, ref),
            lock=lock(key),
            assignments=assignments(ref, 11),
            missed=missed(key, ref, 4),
            returning=returning if side == "new" else "",
            read=read if side == "new" else "",
            **values,
        )
    if check:
        columns += check.row_columns
        one_row += "\n" + check.one_row
    one_row = without_blank_lines(one_row)
    return {
        "one_row_branch": render(
            "one_row_branch.sql",
            row_columns=",\n       ".join(columns),
            row_table="dbrules_new" if operation == "insert" else "dbrules_old",
            row_from={"insert": "dbrules_new AS n", "delete": "dbrules_old AS o"}.get(
                operation, "dbrules_old AS o, dbrules_new AS n"
            ),
            one_row=textwrap.indent(one_row, "    "),
        )
    }


def _group_deltas(plans: list[AggregatePlan], operation: str) -> str:
    """The per-parent deltas of a statement for rules over one relation
    (but the parents it wrote itself: _own_parents_recount)."""
    deltas = render(
        "aggregate_deltas.sql",
        fk=quoted_column(plans[0].fk),
        signed_rows=SIGNED_ROWS[operation],
        delta_columns=",\n       ".join(c for p in plans for c in _delta_columns(p)),
    )
    if not _writes_own_parents(plans, operation):
        return deltas
    # An anti-join, not NOT IN: hashed only while it fits in work_mem.
    first = plans[0]
    key, fk = quoted_column(first.parent_key), quoted_column(first.fk)
    written = (
        f"SELECT FROM dbrules_new AS n WHERE n.{key} = d.parent_key"
        f" AND EXISTS (SELECT FROM dbrules_new AS m WHERE m.{fk} = n.{key}){_renumbering(plans, operation)}"
    )
    return f"SELECT d.* FROM ({deltas}) AS d\n WHERE NOT EXISTS ({written})"


def _renumbering(plans: list[AggregatePlan], operation: str) -> str:
    """For an UPDATE, the condition that it gave some row a key no row had:
    then every key it wrote may name another row than before (``id = id +
    1`` moves each key to the next row), and no delta by key is safe."""
    if operation != "update":
        return ""
    key = quoted_column(plans[0].parent_key)
    return (
        f" AND EXISTS (SELECT FROM dbrules_new AS k"
        f" WHERE NOT EXISTS (SELECT FROM dbrules_old AS o WHERE o.{key} = k.{key}))"
    )


def _writes_own_parents(plans: list[AggregatePlan], operation: str) -> bool:
    """Whether a statement of ``operation`` can write parents of its own
    rows: an INSERT or UPDATE of a tree in one table."""
    return plans[0].child is plans[0].parent and operation != "delete"


def _own_parents(plans: list[AggregatePlan], operation: str) -> str:
    """A tree in one table: the parents a statement inserted, or wrote while
    it renumbered rows, together with children of theirs (a data-only
    restore or a COPY of a tree in its rows' order; a tree renumbered in one
    UPDATE). Each such parent computed its values when its row was written
    (parent_insert.sql, parent_rekey.sql), from the children the statement
    had written before it; their deltas would count them again."""
    if not _writes_own_parents(plans, operation):
        return ""
    first = plans[0]
    key, fk = quoted_column(first.parent_key), quoted_column(first.fk)
    return (
        f"SELECT n.{key} FROM dbrules_new AS n WHERE n.{key} IN (SELECT m.{fk} FROM dbrules_new AS m)"
        + _renumbering(plans, operation)
    )


def _own_parents_recount(plans: list[AggregatePlan], operation: str) -> str:
    """Recompute the parents _own_parents names from all their children, now
    that the statement has written every row: rows of this statement, which
    no other transaction can have locked or changed."""
    own = _own_parents(plans, operation)
    if not own:
        return ""
    first = plans[0]
    key, fk = quoted_column(first.parent_key), quoted_column(first.fk)
    # Guarded: the UPDATE fires this table's statement triggers again, even
    # for no row, and the deferred branch runs before any test for rows.
    # Grouped, not a subquery per parent: every such parent has children
    # (that is how it was chosen), and one pass over them is planned as one.
    targets = [quoted_column(p.target) for p in plans]
    assignments = ", ".join(f"{t} = c.{t}" for t in targets)
    aggregates = ", ".join(f"{aggregate_over_children(p, 'r')} AS {t}" for p, t in zip(plans, targets))
    return (
        f"IF EXISTS ({own}) THEN\n"
        f"    UPDATE {table(first.parent)} AS p\n"
        f"       SET {assignments}\n"
        f"      FROM (SELECT r.{fk} AS parent_key, {aggregates}\n"
        f"              FROM {table(first.child)} AS r\n"
        f"             WHERE r.{fk} IN ({own})\n"
        f"             GROUP BY r.{fk}) AS c\n"
        f"     WHERE p.{key} = c.parent_key;\n"
        "END IF;"
    )


def _written_rows(operation: str) -> str:
    """The transition table holding a statement's rows: the new ones, or
    the deleted ones."""
    return "dbrules_old" if operation == "delete" else "dbrules_new"


UNION_ALL = "\n UNION ALL "


def _sibling_locks(groups: list[list[AggregatePlan]], operation: str) -> str:
    """sibling_locks.sql for the relations of one child table to one parent
    table, after a statement of ``operation``."""
    if len(groups) < 2:
        return ""  # the template's next line follows directly
    first = groups[0][0]
    # A relation through a to_field names its parents by that column; all
    # are locked in the order of the primary key.
    keys_by_column: dict[str, list[str]] = {}
    for group in groups:
        keys_by_column.setdefault(quoted_column(group[0].parent_key), []).append(
            _changed_parent_keys(group, operation)
        )
    lock = render(
        "sibling_locks.sql",
        parent_table=table(first.parent),
        parents="\n    OR ".join(
            f"p.{column} IN ({UNION_ALL.join(keys)})" for column, keys in keys_by_column.items()
        ),
        order_key=quoted_column(first.parent._meta.pk),
    )
    # One-row statements run it too: on a plan made for a bulk statement
    # they would scan the whole parent table. Planned freely for few rows:
    # setting the planner (index_plans.sql) in each of their triggers made
    # one-row transfers between two accounts take a fifth longer.
    return plans_by_size(lock, _written_rows(operation), by_index=False) + "\n"


def _changed_parent_keys(plans: list[AggregatePlan], operation: str) -> str:
    """The keys of the parents a statement changes through one relation."""
    changed = " OR ".join(_delta_changed(p) for p in plans)
    return f"SELECT d.parent_key FROM ({_group_deltas(plans, operation)}) AS d WHERE {changed}"


def group_reads(plans: list[AggregatePlan]) -> set[str]:
    """The child's columns that the statement triggers of ``plans`` read:
    the ForeignKey, the aggregated columns and those the filters name."""
    reads = {plans[0].fk.column}
    for plan in plans:
        if plan.value is not None:
            reads.add(plan.value.column)
        if plan.condition is not None:
            reads.update(condition_columns(plan.child, plan.condition))
    return reads


def aggregate_group_triggers(
    plans: list[AggregatePlan],
    copies: list[CopyPlan],
    reacting: bool,
    siblings: Sequence[list[AggregatePlan]] = (),
    cascade_marks: Sequence[str] = (),
) -> list[CompiledTrigger]:
    """The statement triggers of rules over one relation; ``copies``: the
    child's copies whose first hop is that relation, whose check they run;
    ``reacting``: updating the parent locks further rows; ``siblings``: the
    rule groups over the child's other relations to the same parent table,
    whose parents are locked together with these (sibling_locks.sql);
    ``cascade_marks``: the marks of the cascades whose UPDATE of the child
    the UPDATE trigger skips (cascade_skip.sql)."""
    first = plans[0]
    parent, child = first.parent, first.child
    parent_key = quoted_column(first.parent_key)
    comment = comment_for(plans)
    checked = comment_for([*plans, *copies])
    base = (parent._meta.model_name, first.relation)
    result: list[CompiledTrigger] = []
    pending, setup = pending_table(plans)
    # Where the deltas go that wait for the commit (deferred mode, or a
    # parent not there yet).
    park = {
        "pending_table": pending,
        "pending_columns": ", ".join(quote(n) for n in _delta_names(plans)),
        "mark_parked": mark_parked(pending),
    }
    any_change = " OR ".join(_delta_changed(p) for p in plans)
    common = {
        "parent_key": parent_key,
        "parent_table": table(parent),
        "any_change": any_change,
        "assignments": ",\n       ".join(_delta_assignment(p) for p in plans),
    }
    rescans = any(needs_rescan(p) for p in plans)
    deferred = (
        "TRUE"
        if deferred_by_rule(plans)
        else "coalesce(current_setting('dbrules.deferred', true), '') = 'on'"
    )
    delta_columns = ",\n       ".join(c for p in plans for c in _delta_columns(p))
    related = [plans, *siblings]
    for operation, suffix in (("insert", "ins"), ("update", "upd"), ("delete", "del")):
        deltas = _group_deltas(plans, operation)
        check = None
        if copies and operation != "delete":
            counted = any(p.function == "count" and p.value is None and p.condition is None for p in plans)
            check = copy_check(child, copies, operation, folded=True, counted=counted)
        sibling_locks = _sibling_locks(related, operation)
        recount = _own_parents_recount(plans, operation)
        func = render(
            "aggregate_delta.sql",
            recheck="\n".join(
                part for part in (recheck_rows(child, operation) if check else "", recount) if part
            ),
            sibling_locks=sibling_locks,
            **jit_steps(),
            **_one_row_path(plans, operation, rescans, check, reacting, park),
            deferred=deferred,
            cascade_skip=cascade_skip(cascade_marks) if operation == "update" else "",
            **park,
            deltas=deltas,
            any_change=any_change,
            several_rows=plans_by_size(
                _apply_several(plans, operation, deltas, rescans, common, delta_columns, park)
                + ("\n" + recount if recount else "")
                + ("\n" + check.rows if check else ""),
                _written_rows(operation),
            ),
        )
        trigger = RuleTrigger(
            name=trigger_name(*base, suffix),
            when=pgtrigger.After,
            operation=OPERATIONS[operation],
            level=pgtrigger.Statement,
            referencing=REFERENCING[operation],
            # Sibling locks run before the one-row branch, planned for the
            # size of the first statement: JIT stays off for the whole call.
            jit_in_body=not sibling_locks,
            declare=[
                ("one", "record"),
                *COUNTS,
                *([("single", "record")] if rescans else []),  # apply_several_rescan.sql
                *(check.declare if check else []),
            ],
            func=func,
            comment=checked if check else comment,
        )
        result.append(CompiledTrigger(child, trigger, (*plans, *copies) if check else tuple(plans)))
    truncate = render(
        "aggregate_truncate.sql",
        parent_table=table(parent),
        pending_table=pending,
        assignments=", ".join(f"{quoted_column(p.target)} = {empty_value_sql(p)}" for p in plans),
        any_change=" OR ".join(
            f"p.{quoted_column(p.target)} IS DISTINCT FROM {empty_value_sql(p)}" for p in plans
        ),
    )
    result.append(
        CompiledTrigger(
            child,
            RuleTrigger(
                name=trigger_name(*base, "trunc"),
                when=pgtrigger.After,
                operation=pgtrigger.Truncate,
                level=pgtrigger.Statement,
                func=truncate,
                comment=comment,
            ),
            tuple(plans),
        )
    )
    # Deferred mode: the pending table and the commit-time apply trigger.
    collect = render(
        "commit_deltas.sql", pending_table=pending, merged=", ".join(m for p in plans for m in _merged(p))
    )
    columns = ", ".join(f"d.{quote(n)}" for n in _delta_names(plans))
    parked = f"SELECT d.parent_key, {columns} FROM unnest(dbrules_deltas) AS d"
    # The parked deltas are cleared after it in any case. Planned for each
    # commit (planned_each_call).
    merged = planned_each_call(
        _apply_grouped(parked, rescans, common, if_none_locked="", park=None), ["dbrules_deltas"]
    )
    apply = RuleTrigger(
        name=trigger_name(*base, "apply"),
        when=pgtrigger.After,
        operation=pgtrigger.Insert,
        level=pgtrigger.Row,
        func=render(
            "aggregate_apply.sql",
            pending_table=pending,
            collect=collect,
            apply=merged,
            **commit_steps(pending),
        ),
        declare=[*COUNTS, ("dbrules_lock", "text"), ("dbrules_deltas", f"{pending}[]"), *COMMIT_DECLARE],
        comment=comment,
        on_table=pending,
        setup=setup
        + "\n"
        + commit_order_entry(
            pending,
            pending,
            parent,
            parent_key,
            child,
            f"SELECT q.parent_key FROM {pending} AS q WHERE q.dbrules_txid = txid_current()",
        ),
        teardown=f"{commit_order_removal(pending)}\nDROP TABLE IF EXISTS {pending};",
        deferrable=True,
    )
    result.append(CompiledTrigger(parent, apply, tuple(plans)))
    return result


def _apply_grouped(
    deltas: str, rescans: bool, common: dict[str, str], if_none_locked: str, park: Optional[dict[str, str]]
) -> str:
    """Grouped per-parent ``deltas`` applied in key order: in one statement
    (apply_deltas_merged.sql), or -- for rules that may rescan, whose rescan
    needs a snapshot taken after the locks -- locked first and updated in a
    second statement (apply_deltas.sql; ``if_none_locked`` runs between).
    ``park``: the pending table and its columns, where the deltas of a parent
    that is not there go (missed_parents.sql); None at commit, where there
    is nothing left to wait for."""
    missed = render("missed_parents.sql", deltas=deltas, **park, **common) if park else ""
    if rescans:
        return render("apply_deltas.sql", deltas=deltas, if_none_locked=if_none_locked, missed=missed, **common)
    return render("apply_deltas_merged.sql", deltas=deltas, missed=missed, **common)


def _apply_several(
    plans: list[AggregatePlan],
    operation: str,
    deltas: str,
    rescans: bool,
    common: dict[str, str],
    delta_columns: str,
    park: dict[str, str],
) -> str:
    """aggregate_delta.sql's part for a statement of several rows: the
    grouped deltas locked and applied in one statement, or -- for rules that
    may rescan, which need a snapshot taken after the locks -- a single-parent
    pass, then the locks and the UPDATE as two statements.

    Measured in instructions against the two-statement form with its
    single-parent pass (20,000-row insert, 10,000-row move and delete over
    1,000 parents): one statement removes two of the three passes over the
    transition rows -- delete -23%, move -6%, insert -3% of the trigger's
    whole statement; a two-row insert to one parent costs 7% more, to two
    parents 1% less."""
    if not rescans:
        return _apply_grouped(deltas, rescans, common, if_none_locked="", park=park)
    first = plans[0]
    return render(
        "apply_several_rescan.sql",
        apply_all=_apply_grouped(
            deltas, rescans, common,
            if_none_locked="IF dbrules_changed = 0 THEN\n    EXIT dbrules_counts;\nEND IF;",
            park=park,
        ),
        single_missed=textwrap.indent(_missed_one(plans, park, "single.dbrules_low", _ref("single")), " " * 8),
        lock_one=_rescan_lock(first, operation, "single.dbrules_low"),
        parent_table=common["parent_table"],
        parent_key=common["parent_key"],
        fk=quoted_column(first.fk),
        signed_rows=SIGNED_ROWS[operation],
        delta_columns=delta_columns,
        single_changed=" OR ".join(_delta_changed(p, "single") for p in plans),
        single_assignments=",\n               ".join(_delta_assignment(p, "single") for p in plans),
    )


def empty_value_sql(plan: AggregatePlan) -> str:
    """``plan``'s stored value over no children, as SQL (``AggregatePlan.empty_value``)."""
    return "NULL" if plan.empty_value is None else literal(plan.empty_value)


def aggregate_over_children(plan: AggregatePlan, alias: str) -> str:
    """``plan``'s aggregate over rows ``alias`` of the child table, from scratch."""
    condition = _condition_sql(plan, alias)
    argument = "*" if plan.value is None else f"{alias}.{quoted_column(plan.value)}"
    expression = f"{plan.function}({argument}) FILTER (WHERE {condition})"
    if plan.empty_value is not None:
        expression = f"coalesce({expression}, {empty_value_sql(plan)})"
    return expression
