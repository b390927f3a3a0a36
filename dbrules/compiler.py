"""Compilation: plans -> SQL (from ``migrations_templates/``) -> pgtrigger triggers.

Rules that share a parent and a relation compile together: one statement
trigger per operation on the child table updates every derived column of the
parent in one ``UPDATE``. Each parent gets a BEFORE INSERT trigger that
computes its derived columns and a BEFORE UPDATE guard that keeps them.
"""

from __future__ import annotations

import hashlib
import textwrap
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import pgtrigger
from pgtrigger import core as pgcore
from django.db import models
from django.utils.deconstruct import deconstructible
from pgtrigger import compiler as pgcompiler

from dbrules.analysis import AggregatePlan, CopyPlan, Plan, RowPlan
from dbrules.qualify import qualify
from dbrules.sqlrender import (
    literal,
    quote,
    render,
    render_condition,
    render_expression,
    table,
)

NAME_LIMIT = 47  # pgtrigger's limit for trigger names


class RuleTriggerSql(pgcompiler.UpsertTriggerSql):
    """Installation SQL of a dbrules trigger (``migrations_templates/trigger.sql``).

    Migrations store the arguments and the hash; the SQL is rendered from the
    template, as pgtrigger does for its own triggers.
    """

    def __init__(
        self,
        *,
        pgid: str,
        table: str,
        func: str,
        when: str,
        operation: str,
        level: str = "ROW",
        referencing: str = "",
        condition: str = "",
        declare: str = "",
        comment: str = "",
        setup: str = "",
        teardown: str = "",
        deferrable: bool = False,
        qualified: bool = False,
        hash: Optional[str] = None,
    ) -> None:
        self.kwargs: dict[str, Any] = {
            "pgid": pgid,
            "table": table,
            "func": func,
            "when": str(when),
            "operation": str(operation),
            "level": str(level),
            "referencing": str(referencing),
            "condition": condition,
            "declare": declare,
            "comment": comment,
            "setup": setup,
            "teardown": teardown,
            "deferrable": deferrable,
            "qualified": qualified,
        }
        self.defaults: dict[str, Any] = {
            "level": "ROW",
            "referencing": "",
            "condition": "",
            "declare": "",
            "setup": "",
            "teardown": "",
            "deferrable": False,
            "qualified": False,
        }
        self.pgid = pgid
        self.table = table
        self.hash = hash or hashlib.sha1(self._render("").encode()).hexdigest()
        self.data = self._render(self.hash)

    def _render(self, hash: str) -> str:
        values = dict(self.kwargs)
        values["table"] = self.table
        values["condition"] = f"WHEN ({values['condition']})" if values["condition"] else ""
        values["comment"] = literal(f"dbrules: {self.kwargs['comment']}")
        values["trigger_comment"] = literal(f"dbrules: {self.kwargs['comment']} [{hash}]")
        values["constraint"] = "CONSTRAINT " if self.kwargs["deferrable"] else ""
        values["timing"] = "DEFERRABLE INITIALLY DEFERRED" if self.kwargs["deferrable"] else ""
        values["search_path"] = (
            "-- no SET search_path: every table, operator and function below is qualified"
            if self.kwargs["qualified"]
            else "SET search_path = pg_catalog, pg_temp"
        )
        text = render("trigger.sql", **values)
        # Empty optional clauses of CREATE TRIGGER leave blank lines; drop
        # them there (never inside the function body, whose literals count).
        body, end, declaration = text.rpartition("$dbrules$;")
        declaration = "\n".join(
            line.rstrip() for line in declaration.splitlines() if line.strip() or not line
        )
        return body + end + declaration

    def get_template(self) -> str:  # pragma: no cover - pgtrigger API; we render ourselves
        return self.data

    def deconstruct(self) -> tuple[str, Sequence[Any], dict[str, Any]]:
        kwargs = {k: v for k, v in self.kwargs.items() if self.defaults.get(k) != v}
        return "dbrules.compiler.RuleTriggerSql", [], {**kwargs, "hash": self.hash}


class CompiledRuleTrigger(pgcompiler.Trigger):
    """What migrations store; removing it drops the trigger and its function."""

    @property
    def uninstall_sql(self) -> str:
        teardown = self.sql.kwargs.get("teardown", "")
        return f"{super().uninstall_sql}\nDROP FUNCTION IF EXISTS {self.sql.pgid}();\n{teardown}".strip()


class RuleTrigger(pgtrigger.Trigger):
    """A pgtrigger trigger whose function and installation SQL dbrules writes."""

    def __init__(
        self,
        *,
        comment: str,
        on_table: str = "",
        setup: str = "",
        teardown: str = "",
        deferrable: bool = False,
        **kwargs: Any,
    ) -> None:
        self.comment = comment
        self.on_table = on_table
        self.setup = setup
        self.teardown = teardown
        self.deferrable = deferrable
        # Named in pg_catalog throughout, the body needs no pinned
        # search_path, which costs a configuration change per call
        # (dbrules/qualify.py); otherwise it keeps the pin.
        qualified = qualify(kwargs["func"])
        self.qualified = qualified is not None
        if qualified is not None:
            kwargs["func"] = qualified
        super().__init__(**kwargs)

    def table_of(self, model: type[models.Model]) -> str:
        """The table the trigger is on: the model's, unless set explicitly."""
        return self.on_table or table(model)

    def compile(self, model: type[models.Model]) -> pgcompiler.Trigger:
        return CompiledRuleTrigger(
            name=self.name,
            sql=RuleTriggerSql(
                pgid=self.get_pgid(model),
                table=self.table_of(model),
                func=self.render_func(model),
                when=str(self.when),
                operation=str(self.operation),
                level=str(self.level),
                referencing=str(self.referencing or ""),
                condition=self.condition.sql if self.condition else "",
                declare=self.render_declare(model),
                comment=self.comment,
                setup=self.setup,
                teardown=self.teardown,
                deferrable=self.deferrable,
                qualified=self.qualified,
            ),
        )

    def get_installation_status(self, model: Any, database: Optional[str] = None) -> Any:
        """pgtrigger compares the trigger comment with the hash; ours carries the
        rule text too, with the hash in brackets at its end."""
        from django.db import transaction
        from django.db.utils import ProgrammingError

        if not self.allow_migrate(model, database=database):
            return (pgcore.UNALLOWED, None)
        query = (
            "SELECT obj_description(oid, 'pg_trigger'), tgenabled FROM pg_trigger "
            f"WHERE tgname = {literal(self.get_pgid(model))} "
            f"AND tgrelid = {literal(self.table_of(model))}::regclass"
        )
        try:
            with transaction.atomic(using=database):
                rows = self.exec_sql(query, model, database=database, fetchall=True)
        except ProgrammingError:  # table not created yet
            return (pgcore.UNINSTALLED, None)
        if not rows:
            return (pgcore.UNINSTALLED, None)
        comment, enabled = rows[0]
        installed_hash = (comment or "").rsplit("[", 1)[-1].rstrip("]")
        status = pgcore.INSTALLED if installed_hash == self.compile(model).hash else pgcore.OUTDATED
        return (status, enabled == "O")


@deconstructible(path="dbrules.compiler.ThroughTrigger")
class ThroughTrigger:
    """A compiled trigger on the auto-created table of ManyToMany ``field``."""

    def __init__(self, field: str, trigger: pgcompiler.Trigger) -> None:
        self.field = field
        self.trigger = trigger

    @property
    def name(self) -> str:
        return self.trigger.name

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ThroughTrigger)
            and self.field == other.field
            and self.trigger == other.trigger
        )

    def __hash__(self) -> int:
        return hash((self.field, self.trigger.name))


@dataclass(frozen=True)
class CompiledTrigger:
    """A trigger, the model whose table it is on, and the plans it serves."""

    model: type[models.Model]
    trigger: RuleTrigger
    plans: tuple[Plan, ...]


def trigger_name(*parts: str) -> str:
    name = "_".join(["dbrules", *parts]).lower()
    if len(name) <= NAME_LIMIT:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[: NAME_LIMIT - 9]}_{digest}"


def comment_for(plans: Iterable[Plan]) -> str:
    return "; ".join(plan.label for plan in plans)


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
        parent: {p.target.column for p in group} - set(_row_inputs(row_plans.get(parent, [])))
        for parent, group in by_parent.items()
    }
    deferred_parents = {
        group[0].parent for group in aggregate_groups.values() if deferred_by_rule(group)
    }
    checked = {model: checked_copies(row_plans[model], deferred_parents) for model in row_plans}
    # A copy whose first hop is a relation some rules count over is checked
    # by that count's statement trigger: one trigger, one read of the row,
    # and the count's parent UPDATE is the copy's lock on its first hop.
    folded: dict[tuple[Any, ...], list[CopyPlan]] = {}
    for key, group in aggregate_groups.items():
        if not deferred_by_rule(group):
            folded[key] = [c for c in checked.get(group[0].child, []) if c.path[0] == group[0].fk]
    carried = {id(c) for copies in folded.values() for c in copies}
    reacting = _reacting_parents(plans, aggregate_groups, aggregated)
    for key in sorted(aggregate_groups):
        group = aggregate_groups[key]
        compiled.extend(_aggregate_group_triggers(group, folded.get(key, []), group[0].parent in reacting))
    for parent in sorted(by_parent, key=lambda m: m._meta.label):
        compiled.extend(_parent_triggers(parent, by_parent[parent]))
    for model in sorted(row_plans, key=lambda m: m._meta.label):
        compiled.extend(_row_triggers(model, row_plans[model]))
        compiled.extend(_copy_check_triggers(model, [c for c in checked[model] if id(c) not in carried]))
        for plan in sorted(row_plans[model], key=lambda p: p.target.name):
            if isinstance(plan, CopyPlan):
                compiled.extend(_copy_cascade_triggers(plan, aggregated))
    return compiled


def _reacting_parents(
    plans: Sequence[Plan],
    aggregate_groups: dict[tuple[Any, ...], list[AggregatePlan]],
    aggregated: dict[type[models.Model], set[str]],
) -> set[type[models.Model]]:
    """Parents whose count UPDATE makes dbrules lock further rows: a chained
    rule's grandparent, or the rows a copy of a derived column is copied to."""
    reacting = {group[0].child for group in aggregate_groups.values()}
    targets: dict[type[models.Model], set[str]] = defaultdict(set)
    for group in aggregate_groups.values():
        targets[group[0].parent] |= {p.target.column for p in group}
    for plan in plans:
        if not isinstance(plan, CopyPlan):
            continue
        for hop, fk in enumerate(plan.path):
            source = fk.related_model
            relevant = plan.path[hop + 1].column if hop + 1 < len(plan.path) else plan.source.column
            # The cascade's UPDATE OF skips these (_cascade_update_of).
            skipped = aggregated.get(source, set()) - {relevant}
            if targets.get(source, set()) - skipped:
                reacting.add(source)
    return reacting


# -- aggregates over a reverse ForeignKey -------------------------------------


def _condition_sql(plan: AggregatePlan, alias: str) -> str:
    if plan.condition is None:
        return "TRUE"
    return render_condition(plan.child, plan.condition, alias)


def _column(field: models.Field) -> str:
    return quote(field.column)


def any_column_changed(columns: Iterable[str]) -> str:
    """A row trigger's WHEN condition: true when any of ``columns`` changed."""
    return " OR ".join(f"OLD.{quote(c)} IS DISTINCT FROM NEW.{quote(c)}" for c in dict.fromkeys(columns))


def needs_rescan(plan: AggregatePlan) -> bool:
    """Min/Max (when the extreme leaves) and a nullable Sum (when it may become
    empty) cannot always be updated from deltas alone."""
    return plan.function in {"min", "max"} or (plan.function == "sum" and plan.target.null)


def _delta_columns(plan: AggregatePlan) -> list[str]:
    """Columns of the per-parent ``deltas`` row for ``plan`` (alias ``r``: signed rows)."""
    condition = _condition_sql(plan, "r")
    name = plan.target.column
    value = f"r.{_column(plan.value)}" if plan.value is not None else None
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
        f"(SELECT {_aggregate_sql(plan, 'c')} FROM {table(plan.child)} AS c "
        f"WHERE c.{_column(plan.fk)} = p.{_column(plan.parent_key)})"
    )


def _delta_assignment(plan: AggregatePlan, d: "str | Ref" = "d") -> str:
    """``target = <new value>`` from the parent's deltas row ``d``. Constant
    deltas (a one-row side, ``_row_deltas``) drop the cases they rule out."""
    ref = _ref(d)
    column = _column(plan.target)
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
    value = f"{alias}.{_column(plan.value)}" if plan.value is not None else None
    tests = [t for t in (condition, f"{value} IS NOT NULL" if value else None) if t and t != "TRUE"]
    counted = " AND ".join(f"({t})" if t == condition else t for t in tests)
    ours, other = ("__added", "__removed") if sign == 1 else ("__removed", "__added")

    def when(then: str, otherwise: str) -> str:
        return f"CASE WHEN {counted} THEN {then} ELSE {otherwise} END" if counted else then

    if plan.function == "count":
        return {name: when(str(sign), "0")}
    if plan.function == "sum":
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
REFERENCING = {
    "insert": pgtrigger.Referencing(new="dbrules_new"),
    "delete": pgtrigger.Referencing(old="dbrules_old"),
    "update": pgtrigger.Referencing(old="dbrules_old", new="dbrules_new"),
}
OPERATIONS = {
    "insert": pgtrigger.Insert,
    "update": pgtrigger.Update,
    "delete": pgtrigger.Delete,
}


def _merge_column(plan: AggregatePlan, column: str) -> str:
    """How parked deltas of several statements combine, per pending column."""
    name = column.split(" AS ")[-1]
    if plan.function in {"min", "max"}:
        return f"{plan.function}(q.{name}) AS {name}"
    return f"sum(q.{name}) AS {name}"


def _pending_columns(plan: AggregatePlan) -> list[tuple[str, str]]:
    """(quoted column, SQL type) of ``plan``'s columns in the pending table."""
    from django.db import connections

    connection = connections["default"]
    columns = []
    for text in _delta_columns(plan):
        name = text.split(" AS ")[-1]
        if plan.function in {"min", "max"}:
            kind = plan.value.db_type(connection)
        elif plan.function == "sum" and not name.endswith(('__removed"', '__added"')):
            kind = "numeric"
        else:
            kind = "bigint"
        columns.append((name, kind))
    return columns


def deferred_by_rule(plans: Sequence[AggregatePlan]) -> bool:
    return any(p.rule.deferred for p in plans)


# The one-row path reads the transition rows of each side under this alias.
ROW_SIDES = {
    "insert": [("new", "n", 1)],
    "delete": [("old", "o", -1)],
    "update": [("old", "o", -1), ("new", "n", 1)],
}


def _one_row_path(
    plans: list[AggregatePlan], operation: str, rescans: bool, check: Optional[CopyCheck], reacting: bool
) -> dict[str, str]:
    """The placeholders of aggregate_delta.sql for a statement that wrote one
    row: the SELECT of that row's deltas into ``one``, and what applies them;
    then a folded copy check's part (``check``), whose first hop is the
    parent the row's new side updates. ``reacting``: updating the parent
    locks further rows (``_reacting_parents``)."""
    first = plans[0]
    parent_table, parent_key, fk = table(first.parent), _column(first.parent_key), _column(first.fk)
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
        # A rescan must see every earlier writer of this parent: lock it
        # first, so the UPDATE (a new statement) takes a fresh snapshot.
        if not rescans or operation == "insert":
            return ""
        return f"PERFORM 1 FROM {parent_table} AS p WHERE p.{parent_key} = one.{key} FOR NO KEY UPDATE;"

    values = {"parent_table": parent_table, "parent_key": parent_key}
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

        sides = {
            "old_applies": applies("dbrules_old_key", old.__getitem__),
            "new_applies": applies("dbrules_new_key", new.__getitem__),
            "old_assignments": assignments(old.__getitem__, 11),
            "new_assignments": assignments(new.__getitem__, 11),
            "new_returning": returning,
            "new_read": read,
            **values,
        }
        # Both parents in key order. Updating a parent that locks nothing
        # further takes its lock: the smaller key's UPDATE goes first. One
        # that does (a chain, a copied derived column), or whose update
        # rescans, is locked with the other first, in one statement.
        ordered = not (reacting or rescans)
        moved = render("one_row_move_ordered.sql" if ordered else "one_row_move_locked.sql", **sides)
        one_row = render(
            "one_row_update.sql",
            same_changed=changed(same),
            lock_same=lock("dbrules_new_key"),
            same_assignments=assignments(same, 15),
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
            returning=returning if side == "new" else "",
            read=read if side == "new" else "",
            **values,
        )
    if check:
        columns += check.row_columns
        one_row += "\n" + check.one_row
    one_row = "\n".join(line for line in one_row.splitlines() if line.strip())
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


def _aggregate_group_triggers(
    plans: list[AggregatePlan], copies: list[CopyPlan], reacting: bool
) -> list[CompiledTrigger]:
    """The statement triggers of rules over one relation; ``copies``: the
    child's copies whose first hop is that relation, whose check they run;
    ``reacting``: updating the parent locks further rows."""
    from django.db import connections

    first = plans[0]
    parent, child, fk = first.parent, first.child, first.fk
    parent_key = _column(first.parent_key)
    comment = comment_for(plans)
    checked = comment_for([*plans, *copies])
    base = (parent._meta.model_name, first.relation)
    result: list[CompiledTrigger] = []
    pending_columns = [c for p in plans for c in _pending_columns(p)]
    digest = hashlib.sha1(
        repr((parent._meta.db_table, child._meta.db_table, fk.column, pending_columns)).encode()
    ).hexdigest()[:10]
    pending = f'"dbrules"."pending_{parent._meta.model_name[:30]}_{digest}"'
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
    for operation, suffix in (("insert", "ins"), ("update", "upd"), ("delete", "del")):
        deltas = render(
            "aggregate_deltas.sql",
            fk=_column(fk),
            signed_rows=SIGNED_ROWS[operation],
            delta_columns=delta_columns,
        )
        lock_one = ""
        if rescans and operation != "insert":
            # A rescan must see every earlier writer of this parent: lock it
            # first, so the UPDATE (a new statement) takes a fresh snapshot.
            lock_one = (
                f"PERFORM 1 FROM {table(parent)} AS p "
                f"WHERE p.{parent_key} = single.dbrules_low FOR NO KEY UPDATE;"
            )
        check = None
        if copies and operation != "delete":
            counted = any(p.function == "count" and p.value is None and p.condition is None for p in plans)
            check = _copy_check(child, copies, operation, folded=True, counted=counted)
        func = render(
            "aggregate_delta.sql",
            **_one_row_path(plans, operation, rescans, check, reacting),
            copy_rows=check.rows if check else "",
            deferred=deferred,
            pending_table=pending,
            pending_columns=", ".join(name for name, _ in pending_columns),
            deltas=deltas,
            any_change=any_change,
            apply_all=render(
                "apply_deltas.sql",
                deltas=deltas,
                if_none_locked="IF NOT FOUND THEN\n    EXIT dbrules_counts;\nEND IF;",
                **common,
            ),
            lock_one=lock_one,
            parent_table=table(parent),
            parent_key=parent_key,
            fk=_column(fk),
            signed_rows=SIGNED_ROWS[operation],
            delta_columns=delta_columns,
            single_changed=" OR ".join(_delta_changed(p, "single") for p in plans),
            single_assignments=",\n               ".join(_delta_assignment(p, "single") for p in plans),
        )
        trigger = RuleTrigger(
            name=trigger_name(*base, suffix),
            when=pgtrigger.After,
            operation=OPERATIONS[operation],
            level=pgtrigger.Statement,
            referencing=REFERENCING[operation],
            declare=[("one", "record"), ("single", "record"), *(check.declare if check else [])],
            func=func,
            comment=checked if check else comment,
        )
        result.append(CompiledTrigger(child, trigger, (*plans, *copies) if check else tuple(plans)))
    truncate = render(
        "aggregate_truncate.sql",
        parent_table=table(parent),
        pending_table=pending,
        assignments=", ".join(f"{_column(p.target)} = {_empty_sql(p)}" for p in plans),
        any_change=" OR ".join(
            f"p.{_column(p.target)} IS DISTINCT FROM {_empty_sql(p)}" for p in plans
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
    connection = connections["default"]
    merged = render(
        "apply_deltas.sql",
        if_none_locked="",  # the parked deltas are cleared after it in any case
        deltas=(
            "SELECT q.parent_key, "
            + ", ".join(_merge_column(p, c) for p in plans for c in _delta_columns(p))
            + f" FROM {pending} AS q WHERE q.dbrules_txid = txid_current() GROUP BY q.parent_key"
        ),
        **common,
    )
    setup = render(
        "pending_table.sql",
        pending_table=pending,
        pending_index=quote(f"pending_{digest}_txid"),
        parent_key_type=fk.db_type(connection),
        pending_column_types=",\n    ".join(f"{name} {kind}" for name, kind in pending_columns),
    )
    apply = RuleTrigger(
        name=trigger_name(*base, "apply"),
        when=pgtrigger.After,
        operation=pgtrigger.Insert,
        level=pgtrigger.Row,
        func=render("aggregate_apply.sql", pending_table=pending, apply=merged),
        comment=comment,
        on_table=pending,
        setup=setup,
        teardown=f"DROP TABLE IF EXISTS {pending};",
        deferrable=True,
    )
    result.append(CompiledTrigger(parent, apply, tuple(plans)))
    return result


def _empty_sql(plan: AggregatePlan) -> str:
    return "NULL" if plan.empty_value is None else literal(plan.empty_value)


def _aggregate_sql(plan: AggregatePlan, alias: str) -> str:
    """``plan``'s aggregate over rows ``alias`` of the child table, from scratch."""
    condition = _condition_sql(plan, alias)
    argument = "*" if plan.value is None else f"{alias}.{_column(plan.value)}"
    expression = f"{plan.function}({argument}) FILTER (WHERE {condition})"
    if plan.empty_value is not None:
        expression = f"coalesce({expression}, {_empty_sql(plan)})"
    return expression


def _parent_triggers(
    parent: type[models.Model], plans: list[AggregatePlan]
) -> list[CompiledTrigger]:
    groups: dict[tuple[str, str], list[AggregatePlan]] = defaultdict(list)
    for plan in plans:
        groups[(plan.child._meta.label, plan.fk.name)].append(plan)
    computations = []
    for key in sorted(groups):
        group = groups[key]
        first = group[0]
        computations.append(
            "SELECT "
            + ",\n       ".join(_aggregate_sql(p, "r") for p in group)
            + "\n  INTO "
            + ", ".join(f"NEW.{_column(p.target)}" for p in group)
            + f"\n  FROM {table(first.child)} AS r"
            + f"\n WHERE r.{_column(first.fk)} = NEW.{_column(first.parent_key)};"
        )
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
    return [
        CompiledTrigger(parent, compute, tuple(plans)),
        CompiledTrigger(parent, guard, tuple(plans)),
    ]


# -- copies and same-row expressions -------------------------------------------


def _fk_key(fk: models.ForeignKey) -> str:
    """The column of the related table a ForeignKey points at (pk or to_field)."""
    return quote(fk.target_field.column)


def _path_joins(plan: CopyPlan) -> str:
    """``t1 JOIN t2 ... tN`` along the FK path; ``tN`` holds the source column."""
    path = plan.path
    joins = [f"{table(path[0].related_model)} AS t1"]
    for i, fk in enumerate(path[1:], start=2):
        joins.append(
            f"JOIN {table(fk.related_model)} AS t{i} ON t{i}.{_fk_key(fk)} = t{i - 1}.{_column(fk)}"
        )
    return " ".join(joins)


def _lookup_sql(plan: CopyPlan, row: str) -> str:
    """The copied value for the row ``row`` (an alias), along the FK path."""
    path = plan.path
    lookup = (
        f"(SELECT t{len(path)}.{_column(plan.source)} FROM {_path_joins(plan)} "
        f"WHERE t1.{_fk_key(path[0])} = {row}.{_column(path[0])})"
    )
    if plan.empty_value is not None:
        lookup = f"coalesce({lookup}, {literal(plan.empty_value)})"
    return lookup


def _lookup_assignment(plan: CopyPlan) -> str:
    """``NEW.target := `` the copied value, as one ``SELECT ... INTO``.

    Same result as ``NEW.target := coalesce((SELECT ...), empty)``, but runs
    one index scan instead of a subquery wrapped in an expression: measured
    on a 200,000-row insert, the copy trigger costs about 15% less.
    """
    path = plan.path
    target = f"NEW.{_column(plan.target)}"
    value = f"t{len(path)}.{_column(plan.source)}"
    source = f"FROM {_path_joins(plan)} WHERE t1.{_fk_key(path[0])} = NEW.{_column(path[0])};"
    if plan.empty_value is None:
        return f"SELECT {value} INTO {target} {source}"  # no row found sets NULL
    empty = literal(plan.empty_value)
    return (
        f"SELECT coalesce({value}, {empty}) INTO {target} {source}\n"
        f"IF NOT FOUND THEN {target} := {empty}; END IF;"
    )


def _row_order(plans: list[Plan]) -> list[Plan]:
    """Copies first, then expressions after the derived columns they read."""
    copies = sorted((p for p in plans if isinstance(p, CopyPlan)), key=lambda p: p.target.name)
    rows = sorted((p for p in plans if isinstance(p, RowPlan)), key=lambda p: p.target.name)
    ordered: list[Plan] = list(copies)
    pending = list(rows)
    while pending:
        done = {p.target.name for p in ordered}
        ready = [
            p
            for p in pending
            if all(
                c.name in done or c.name == p.target.name or c.name not in {q.target.name for q in pending}
                for c in p.columns
            )
        ]
        if not ready:  # a cycle: reported by the checks; keep a stable order
            ready = pending[:1]
        ordered.extend(ready)
        pending = [p for p in pending if p not in ready]
    return ordered


def _row_inputs(plans: Iterable[Plan]) -> dict[str, None]:
    """Columns whose change re-runs a model's row rules: what the copies and
    expressions read, and the derived columns themselves (a forged value is
    corrected). Ordered, for stable trigger SQL."""
    inputs: dict[str, None] = {}
    for plan in plans:
        if isinstance(plan, CopyPlan):
            inputs[plan.path[0].column] = None
        elif isinstance(plan, RowPlan):
            inputs.update(dict.fromkeys(c.column for c in plan.columns))
        inputs[plan.target.column] = None
    return inputs


def _row_triggers(model: type[models.Model], plans: list[Plan]) -> list[CompiledTrigger]:
    ordered = _row_order(plans)
    assignments = []
    for plan in ordered:
        if isinstance(plan, CopyPlan):
            assignments.append(_lookup_assignment(plan))
        else:
            value = render_expression(model, plan.rule.expression, "NEW")
            assignments.append(f"NEW.{_column(plan.target)} := {value};")
    inputs = _row_inputs(ordered)
    func = render("row_compute.sql", assignments="\n".join(assignments))
    comment = comment_for(ordered)
    changed = any_column_changed(inputs)
    insert = RuleTrigger(
        name=trigger_name(model._meta.model_name, "row_ins"),
        when=pgtrigger.Before,
        operation=pgtrigger.Insert,
        level=pgtrigger.Row,
        func=func,
        comment=comment,
    )
    update = RuleTrigger(
        name=trigger_name(model._meta.model_name, "row_upd"),
        when=pgtrigger.Before,
        # UPDATE OF: statements that set none of the inputs (dbrules' own
        # count updates, most app updates) skip the trigger before PostgreSQL
        # prepares its WHEN, which it does once per statement.
        operation=pgtrigger.UpdateOf(*inputs),
        level=pgtrigger.Row,
        condition=pgtrigger.Condition(changed),
        func=func,
        comment=comment,
    )
    return [
        CompiledTrigger(model, insert, tuple(ordered)),
        CompiledTrigger(model, update, tuple(ordered)),
    ]


def _same(a: str, b: str) -> str:
    """``a`` equals ``b``, NULL equal to NULL (``IS NOT DISTINCT FROM``, which
    has no pg_catalog-qualified spelling)."""
    return f"({a} = {b} OR ({a} IS NULL AND {b} IS NULL))"


def checked_copies(plans: list[Plan], deferred_parents: set[type[models.Model]]) -> list[CopyPlan]:
    """The copies of one model that a copy check covers (copy_check.sql).

    Deferred mode promises that a transaction locks its parents only at
    commit; the check would lock them at once. So it is skipped in a
    deferred transaction, and there is none when a source is the parent of
    rules deferred by declaration (docs/deferred.md)."""
    copies = sorted((p for p in plans if isinstance(p, CopyPlan)), key=lambda p: p.target.name)
    if any(fk.related_model in deferred_parents for p in copies for fk in p.path):
        return []
    return copies


@dataclass(frozen=True)
class CopyCheck:
    """The copy check of some copies for one operation, in the parts a
    trigger function is built from: what the one-row branch reads into
    ``one``, what it does with that row, and what a statement of several
    rows does."""

    row_columns: list[str]
    one_row: str
    rows: str
    declare: list[tuple[str, str]]
    # Folded into the statement trigger of a count over the copies' first
    # hop: that trigger's one-row UPDATE of the parent reads hop 0 with this.
    returning: str = ""


def _copy_check(
    model: type[models.Model], copies: list[CopyPlan], operation: str, folded: bool, counted: bool = False
) -> CopyCheck:
    """After a statement that copied into ``model``'s rows: lock the copies'
    sources in key order, hop by hop, and copy again where a change committed
    meanwhile (migrations_templates/copy_check.sql).

    ``folded``: the copies share their first hop with a count's relation, and
    the check runs in that count's statement trigger, whose one-row UPDATE of
    the parent both locks it and returns its newest version (hop 0).
    ``counted``: that trigger counts every row (an unfiltered Count), so
    after an INSERT it has locked every first hop already."""
    pk = _column(model._meta.pk)
    # Every ForeignKey path the copies read, and each of its prefixes: nearer
    # tables first (a child's parents before theirs, as the count triggers
    # and their chains lock them), then a stable order.
    prefixes = sorted(
        {plan.path[:hop] for plan in copies for hop in range(1, len(plan.path) + 1)},
        key=lambda prefix: (len(prefix), [f"{fk.model._meta.label}.{fk.name}" for fk in prefix]),
    )
    first_columns = list(dict.fromkeys(plan.path[0].column for plan in copies))
    # The copied values as of now, joined hop by hop (a correlated lookup
    # per row would cost a subquery per row and copy on bulk writes).
    alias = {prefix: f"j{i}" for i, prefix in enumerate(prefixes)}
    joins = " ".join(
        f"LEFT JOIN {table(prefix[-1].related_model)} AS {alias[prefix]} "
        f"ON {alias[prefix]}.{_fk_key(prefix[-1])} = "
        f"{'n' if len(prefix) == 1 else alias[prefix[:-1]]}.{_column(prefix[-1])}"
        for prefix in prefixes
    )

    def source(plan: CopyPlan) -> str:
        value = f"{alias[plan.path]}.{_column(plan.source)}"
        return value if plan.empty_value is None else f"coalesce({value}, {literal(plan.empty_value)})"

    compared = ", ".join(
        f"n.{_column(plan.target)} AS stored_{i}, {source(plan)} AS source_{i}" for i, plan in enumerate(copies)
    )
    rewrite = {
        "child_table": table(model),
        "pk": pk,
        "assignments": ",\n           ".join(f"{_column(p.target)} = {_lookup_sql(p, 'c')}" for p in copies),
        # The transition row holds the copy as first written; a cascade in
        # the same statement (a copied count-derived value) may have
        # rewritten it since, so the current row decides what to rewrite.
        "still_stale": " OR ".join(
            f"NOT {_same(f'c.{_column(p.target)}', _lookup_sql(p, 'c'))}" for p in copies
        ),
    }
    rows = "SELECT * FROM dbrules_new"
    if operation == "update":
        # An UPDATE recopies only the rows whose first hop changed: found
        # once, by joining its old and new rows, with the first hops they
        # moved to, then read by key.
        rows = f"SELECT * FROM dbrules_new AS n WHERE n.{pk} IN (SELECT unnest(moved.keys))"
    locks = []
    for prefix in prefixes:
        if counted and operation == "insert" and len(prefix) == 1:
            continue  # the count has locked every parent of the new rows
        start = f"SELECT n.{_column(prefix[0])} FROM ({rows}) AS n"
        if operation == "update":
            start = f"SELECT unnest(moved.{quote('to:' + prefix[0].column)})"
        keys = _path_keys(prefix, start, one=False)
        last = prefix[-1]
        locks.append(
            f"PERFORM 1 FROM {table(last.related_model)} AS s WHERE s.{_fk_key(last)} IN ({keys}) "
            f"ORDER BY s.{_fk_key(last)} FOR NO KEY UPDATE;"
        )
    several = render(
        "copy_check_rows.sql",
        locks="\n".join(locks),
        compare=f"SELECT n.{pk} AS dbrules_pk, {compared} FROM ({rows}) AS n {joins}",
        stale=" OR ".join(f"NOT {_same(f'x.stored_{i}', f'x.source_{i}')}" for i in range(len(copies))),
        **rewrite,
    )
    if operation == "update":
        several = (
            f"SELECT array_agg(n.{pk}) AS keys, "
            + ", ".join(f"array_agg(n.{quote(c)}) AS {quote('to:' + c)}" for c in first_columns)
            + " INTO moved "
            f"FROM dbrules_new AS n JOIN dbrules_old AS o ON o.{pk} = n.{pk} WHERE "
            + " OR ".join(f"NOT {_same(f'o.{quote(c)}', f'n.{quote(c)}')}" for c in first_columns)
            + ";\nIF moved.keys IS NOT NULL THEN\n"
            + textwrap.indent(several, "    ")
            + "\nEND IF;"
        )
    row_columns = [f"n.{pk} AS dbrules_pk"]
    row_columns += [f"n.{quote(c)}" for c in first_columns]
    row_columns += [f"n.{_column(plan.target)}" for plan in copies]
    if operation == "update":
        row_columns += [f"o.{quote(c)} AS {quote('old:' + c)}" for c in first_columns]
    declare = [("moved", "record"), ("stale", "record")] + [(f"hop{k}", "record") for k in range(len(prefixes))]
    returning = ""
    if folded:
        declare.append(("dbrules_hop0", "boolean"))
        read = [plan for plan in copies if plan.path == prefixes[0]]
        if read:
            columns = ", ".join(dict.fromkeys(f"p.{_column(plan.source)}" for plan in read))
            returning = f"\n RETURNING {columns} INTO hop0"
    return CopyCheck(
        row_columns=row_columns,
        one_row=_copy_check_one_row(copies, prefixes, first_columns, operation, rewrite, folded),
        rows=several,
        declare=declare,
        returning=returning,
    )


def _copy_check_triggers(model: type[models.Model], copies: list[CopyPlan]) -> list[CompiledTrigger]:
    """The copy check as statement triggers of its own, for copies no
    count's statement trigger carries (``_copy_check``)."""
    if not copies:
        return []
    result = []
    for operation, suffix in (("insert", "ins"), ("update", "upd")):
        check = _copy_check(model, copies, operation, folded=False)
        func = render(
            "copy_check.sql",
            one_row_branch=render(
                "one_row_branch.sql",
                row_columns=",\n       ".join(check.row_columns),
                row_table="dbrules_new",
                row_from="dbrules_new AS n" if operation == "insert" else "dbrules_old AS o, dbrules_new AS n",
                one_row=textwrap.indent(check.one_row, "    "),
            ),
            rows=check.rows,
        )
        trigger = RuleTrigger(
            name=trigger_name(model._meta.model_name, "copycheck", suffix),
            when=pgtrigger.After,
            operation=OPERATIONS[operation],
            level=pgtrigger.Statement,
            referencing=REFERENCING[operation],
            declare=[("one", "record"), *check.declare],
            func=func,
            comment=comment_for(copies),
        )
        result.append(CompiledTrigger(model, trigger, tuple(copies)))
    return result


def _path_keys(prefix: tuple[models.ForeignKey, ...], start: str, one: bool) -> str:
    """The key(s) of the rows of ``prefix``'s last table that ``start`` (the
    first hop's column: one value, or a query of them) reaches, hop by hop."""
    keys = start
    for previous, fk in zip(prefix, prefix[1:]):
        select = f"SELECT t.{_column(fk)} FROM {table(previous.related_model)} AS t WHERE t.{_fk_key(previous)}"
        keys = f"({select} = {keys})" if one else f"{select} IN ({keys})"
    return keys


def _copy_check_one_row(
    copies: list[CopyPlan],
    prefixes: list[tuple[models.ForeignKey, ...]],
    first_columns: list[str],
    operation: str,
    rewrite: dict[str, str],
    folded: bool,
) -> str:
    """copy_check.sql's one-row branch: the row is read into ``one`` (its
    key, first hops and copies; for an UPDATE, the old first hops too).
    ``folded``: a count's one-row UPDATE of the first hop may have locked and
    read it already (``dbrules_hop0``)."""
    unmoved = ""
    if operation == "update":
        # Copies follow their first hop; an UPDATE that keeps every first
        # hop recopies nothing that a concurrent source change could miss
        # (that change's cascade waits for this row's lock, then sees it).
        kept = " AND ".join(_same(f"one.{quote('old:' + c)}", f"one.{quote(c)}") for c in first_columns)
        unmoved = f"IF {kept} THEN\n    RETURN NULL;\nEND IF;"
    # Lock each source row by key and read it in the same statement: after
    # waiting for a change in flight, FOR NO KEY UPDATE returns its newest
    # version. The copies ending at a hop compare with that hop's record.
    locks, value = [], {}
    for k, prefix in enumerate(prefixes):
        key = _path_keys(prefix, f"one.{_column(prefix[0])}", one=True)
        last = prefix[-1]
        ending = [plan for plan in copies if plan.path == prefix]
        for plan in ending:
            read = f"hop{k}.{_column(plan.source)}"
            value[plan.target.name] = read if plan.empty_value is None else f"coalesce({read}, {literal(plan.empty_value)})"
        columns = ", ".join(dict.fromkeys(f"s.{_column(plan.source)}" for plan in ending))
        target = f"SELECT {columns} INTO hop{k}" if ending else "PERFORM 1"
        lock = f"{target} FROM {table(last.related_model)} AS s WHERE s.{_fk_key(last)} = {key} FOR NO KEY UPDATE;"
        if folded and k == 0:
            lock = f"IF dbrules_hop0 IS NULL THEN\n    {lock}\nEND IF;"
        locks.append(lock)
    text = render(
        "copy_check_one_row.sql",
        unmoved=unmoved,
        locks="\n".join(locks),
        stale=" OR ".join(
            f"NOT {_same(f'one.{_column(plan.target)}', value[plan.target.name])}" for plan in copies
        ),
        **rewrite,
    )
    return "\n".join(line for line in text.splitlines() if line.strip())


def _cascade_update_of(
    source_model: type[models.Model], aggregated: set[str], relevant: str
) -> pgtrigger.Operation:
    """The UPDATE operation of a copy's cascade trigger on ``source_model``.

    Every column but the aggregates dbrules keeps on that table
    (``aggregated``, less those a same-row rule there reads): an UPDATE that
    sets only those (dbrules' own count updates, repair) cannot change what
    is copied, and PostgreSQL then skips the trigger without preparing its
    WHEN -- which it otherwise does for each such statement. Any other
    UPDATE fires it as before and the WHEN compares OLD and NEW, so a column
    changed by a BEFORE trigger (a same-row rule) is still seen.
    """
    skipped = aggregated - {relevant}
    if not skipped:
        return pgtrigger.Update
    columns = [f.column for f in source_model._meta.local_concrete_fields if f.column not in skipped]
    return pgtrigger.UpdateOf(*columns)


def _copy_cascade_triggers(
    plan: CopyPlan, aggregated: dict[type[models.Model], set[str]]
) -> list[CompiledTrigger]:
    """On each table along the path: re-copy when the value or the next hop changes."""
    result = []
    path = plan.path
    for hop, fk in enumerate(path):
        source_model = fk.related_model
        relevant = path[hop + 1].column if hop + 1 < len(path) else plan.source.column
        # Walk back from the changed row to the rows holding the copy.
        reaches = f"NEW.{_fk_key(fk)}"
        for back in range(hop, 0, -1):
            prev = path[back - 1]
            reaches = (
                f"(SELECT t.{_fk_key(prev)} FROM {table(prev.related_model)} AS t "
                f"WHERE t.{_column(path[back])} = {reaches})"
            )
        operator = "=" if hop == 0 else "IN"
        func = render(
            "copy_cascade.sql",
            model_table=table(plan.parent),
            target=_column(plan.target),
            lookup=_lookup_sql(plan, "m"),
            reaches_changed=f"m.{_column(path[0])} {operator} {reaches}",
        )
        update = _cascade_update_of(source_model, aggregated.get(source_model, set()), relevant)
        for suffix, operation in (("upd", update), ("ins", pgtrigger.Insert)):
            condition = None
            if suffix == "upd":
                condition = pgtrigger.Condition(
                    any_column_changed([relevant, fk.target_field.column])
                )
            trigger = RuleTrigger(
                name=trigger_name(
                    plan.parent._meta.model_name, plan.target.name, "src", str(hop), suffix
                ),
                when=pgtrigger.After,
                operation=operation,
                level=pgtrigger.Row,
                condition=condition,
                func=func,
                comment=plan.label,
            )
            result.append(CompiledTrigger(source_model, trigger, (plan,)))
    return result
