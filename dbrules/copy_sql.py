"""Copies along ForeignKeys and same-row expressions: the child's row
triggers, the copy check after a statement that copied, and the cascades on
every table along a copy's path.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import pgtrigger
from django.db import models

from dbrules.analysis import CopyPlan, Plan, RowPlan
from dbrules.sqlrender import column_type, literal, quote, render, render_expression, table, without_blank_lines
from dbrules.triggers import (
    COMMIT_DECLARE,
    OPERATIONS,
    REFERENCING,
    CompiledTrigger,
    RuleTrigger,
    any_column_changed,
    cascade_skip,
    cascade_steps,
    comment_for,
    commit_order_entry,
    commit_order_removal,
    commit_steps,
    fk_key,
    jit_steps,
    mark_parked,
    null_safe_equal,
    plans_by_size,
    quoted_column,
    transaction_table,
    trigger_name,
)


def _path_joins(plan: CopyPlan, outer: bool = False, hop: int = 0) -> str:
    """``t1 JOIN t2 ... tN`` along the FK path; ``tN`` holds the source column.
    ``outer``: LEFT JOINs, so a row comes back whenever the first hop exists.
    ``hop``: start at the table the path reaches there (``t{hop + 1}``)."""
    path = plan.path
    join = "LEFT JOIN" if outer else "JOIN"
    joins = [f"{table(path[hop].related_model)} AS t{hop + 1}"]
    for i, fk in enumerate(path[hop + 1 :], start=hop + 2):
        joins.append(
            f"{join} {table(fk.related_model)} AS t{i} ON t{i}.{fk_key(fk)} = t{i - 1}.{quoted_column(fk)}"
        )
    return " ".join(joins)


def _path_lookup(plan: CopyPlan, hop: int, key: str) -> str:
    """The copied value read from the row of the table at ``hop`` whose key
    is ``key``, along the rest of the path."""
    lookup = (
        f"(SELECT t{len(plan.path)}.{quoted_column(plan.source)} FROM {_path_joins(plan, hop=hop)} "
        f"WHERE t{hop + 1}.{fk_key(plan.path[hop])} = {key})"
    )
    if plan.empty_value is not None:
        lookup = f"coalesce({lookup}, {literal(plan.empty_value)})"
    return lookup


def source_lookup(plan: CopyPlan, key: str) -> str:
    """The copied value for a row whose first hop holds ``key`` (an SQL
    expression): a scalar subquery along the whole path."""
    return _path_lookup(plan, 0, key)


def _lookup_sql(plan: CopyPlan, row: str) -> str:
    """The copied value for the row ``row`` (an alias), along the FK path."""
    return _path_lookup(plan, 0, f"{row}.{quoted_column(plan.path[0])}")


def _lookup_assignment(plan: CopyPlan, park: str = "") -> str:
    """``NEW.target := `` the copied value, as one ``SELECT ... INTO``.

    Same result as ``NEW.target := coalesce((SELECT ...), empty)``, but runs
    one index scan instead of a subquery wrapped in an expression: measured
    on a 200,000-row insert, the copy trigger costs about 15% less.
    ``park`` runs when the first hop's row is not there although the row
    points at one (copy_recopy.sql); it joins the branch that sets the
    empty value, so a found source costs no extra test.
    """
    path = plan.path
    target = f"NEW.{quoted_column(plan.target)}"
    value = f"t{len(path)}.{quoted_column(plan.source)}"
    # With a park, LEFT JOINs past the first hop: FOUND then says whether
    # the first hop exists (a NULL further along is a legitimate empty copy).
    source = (
        f"FROM {_path_joins(plan, outer=bool(park))} "
        f"WHERE t1.{fk_key(path[0])} = NEW.{quoted_column(path[0])};"
    )
    not_found = []
    if plan.empty_value is None:
        lookup = f"SELECT {value} INTO {target} {source}"  # no row found sets NULL
    else:
        empty = literal(plan.empty_value)
        lookup = f"SELECT coalesce({value}, {empty}) INTO {target} {source}"
        not_found.append(f"{target} := {empty};")
    if park:
        not_found.append(f"IF NEW.{quoted_column(path[0])} IS NOT NULL THEN {park} END IF;")
    return f"{lookup}\nIF NOT FOUND THEN {' '.join(not_found)} END IF;" if not_found else lookup


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


def row_reads(plans: Iterable[Plan]) -> dict[str, None]:
    """Columns a model's row rules read: the copies' first hops and the
    expressions' columns (derived ones included). Ordered, for stable SQL."""
    reads: dict[str, None] = {}
    for plan in plans:
        if isinstance(plan, CopyPlan):
            reads[plan.path[0].column] = None
        elif isinstance(plan, RowPlan):
            reads.update(dict.fromkeys(c.column for c in plan.columns))
    return reads


def row_inputs(plans: Iterable[Plan]) -> dict[str, None]:
    """Columns whose change re-runs a model's row rules: what the copies and
    expressions read, and the derived columns themselves (a forged value is
    corrected). Ordered, for stable trigger SQL."""
    plans = list(plans)
    return {**row_reads(plans), **dict.fromkeys(plan.target.column for plan in plans)}


# Whether this transaction runs deferred (dbrules.deferred()), as a row
# trigger's WHEN reads it.
DEFERRED_SETTING = "pg_catalog.current_setting('dbrules.deferred', true)"


def row_update_condition(plans: list[Plan], supplies: bool = False) -> str:
    """The WHEN of a model's BEFORE UPDATE row trigger.

    Any change of what the rules read re-runs them. A derived column no rule
    reads is re-run only when a statement writes it itself (a forged value,
    a stale ``save()``): from inside a trigger it is dbrules' own write (a
    copy's cascade, which looked the value up already), as the parents'
    guard assumes (``pg_trigger_depth() < 1``). Re-running it there called
    the function once per cascaded row: about 0.6 s of a 1.4-1.7 s rename of
    1,000 authors over 100,000 copies.

    ``supplies``: the model's copies may come with the statement, as an
    INSERT's may (supplied_condition). A row whose first hop changes with
    any of its copies keeps what the statement gave: the statement's copy
    check compares every copy of every moved row with its source, rewrites
    the wrong ones (a copy left as it was, one forged) and notes the rows
    whose first hop is not there yet (copy_check). The row trigger still
    runs for a move that writes no copy, which an equal value cannot be told
    from, for a copy written without a move, and for every row of a deferred
    transaction, whose check waits for the commit.
    """
    reads = row_reads(plans)
    guarded = [plan.target.column for plan in plans if plan.target.column not in reads]
    changed = any_column_changed(reads) if reads else ""
    if supplies and changed and len(guarded) == len(plans):
        written = any_column_changed(guarded)
        return (
            f"(({changed}) AND NOT ({written}))"
            f" OR (NOT ({changed}) AND pg_trigger_depth() < 1 AND ({written}))"
            f" OR {DEFERRED_SETTING} = 'on'"
        )
    if not guarded:
        return changed
    forged = f"(pg_trigger_depth() < 1 AND ({any_column_changed(guarded)}))"
    return f"{changed} OR {forged}" if changed else forged


def cascade_writes(plans: list[Plan], copy: CopyPlan) -> set[str]:
    """The columns of a model (with row rules ``plans``) that a cascade's
    UPDATE of ``copy`` may change: the copy alone, unless a rule of the row
    reads it -- then the row trigger runs (row_update_condition) and
    recomputes every derived column of the row."""
    if copy.target.column in row_reads(plans):
        return {p.target.column for p in plans}
    return {copy.target.column}


_NOTED_HOPS: dict[type[models.Model], tuple[models.ForeignKey, ...]] = {}


def _noted_hops(model: type[models.Model]) -> tuple[models.ForeignKey, ...]:
    """The first hops of every copy of ``model``, in a stable order: the
    recopy table keeps, with the rows it notes, the keys they point at.
    Analysed once per model: each of the table's triggers asks."""
    from dbrules.analysis import analyze_model

    if model not in _NOTED_HOPS:
        plans = analyze_model(model).plans
        hops = {plan.path[0].name: plan.path[0] for plan in plans if isinstance(plan, CopyPlan)}
        _NOTED_HOPS[model] = tuple(hops[name] for name in sorted(hops))
    return _NOTED_HOPS[model]


def _recopy_table(model: type[models.Model]) -> tuple[str, str]:
    """The table of rows whose copies are checked again at commit
    (copy_recopy.sql): each row of it holds the keys of one or more rows of
    ``model``, and for each first hop of its copies the keys those rows
    point at, so the commit locks the sources without reading the rows.
    And the SQL that creates it."""
    hops = _noted_hops(model)
    columns = [f"row_keys {column_type(model._meta.pk)}[] NOT NULL"]
    columns += [f"{quoted_column(fk)} {column_type(fk.target_field)}[]" for fk in hops]
    return transaction_table(
        "recopy",
        model,
        (model._meta.db_table, model._meta.pk.column, "row_keys", *(fk.column for fk in hops)),
        ",\n    ".join(columns),
    )


def _noted(recopy: str, column: str) -> str:
    """The values of ``column`` (an array) this transaction noted in ``recopy``."""
    return f"SELECT unnest(r.{column}) FROM {recopy} AS r WHERE r.dbrules_txid = txid_current()"


def _noted_rows(recopy: str) -> str:
    """The keys this transaction noted in ``recopy``."""
    return _noted(recopy, "row_keys")


def _note(model: type[models.Model]) -> tuple[str, str]:
    """The recopy table's columns, and what a SELECT of the rows to note
    (alias ``n``) puts in them: the rows' keys and, per first hop, the
    distinct keys they point at."""
    hops = [quoted_column(fk) for fk in _noted_hops(model)]
    columns = ", ".join(["row_keys", *hops])
    keys = f"array_agg(n.{quoted_column(model._meta.pk)})"
    values = ", ".join([keys, *(f"array_agg(DISTINCT n.{h})" for h in hops)])
    return columns, values


def _source_prefixes(copies: Iterable[CopyPlan]) -> list[tuple[models.ForeignKey, ...]]:
    """Every ForeignKey path the copies read, and each of its prefixes:
    nearer tables first (a child's parents before theirs, as the count
    triggers and their chains lock them), then a stable order."""
    return sorted(
        {plan.path[:hop] for plan in copies for hop in range(1, len(plan.path) + 1)},
        key=lambda prefix: (len(prefix), [f"{fk.model._meta.label}.{fk.name}" for fk in prefix]),
    )


def recheck_rows(model: type[models.Model], operation: str, where: str = "") -> str:
    """copy_recheck.sql: note the rows of a statement of a deferred
    transaction whose copies a copy check would have checked. ``where``:
    only those of them (the rows a check found pointing at a missing
    parent)."""
    recopy, _ = _recopy_table(model)
    pk = quoted_column(model._meta.pk)
    rows = "dbrules_new AS n" + (f" WHERE {where}" if where else "")
    if operation == "update":
        # The rows whose first hops changed: a new version whose values
        # appear once, old and new together. Grouped, not an anti-join of
        # the two transition tables: a session keeps the plan made for the
        # first statement, and planned for an empty one (dbrules' own UPDATE
        # at a commit) the anti-join was a nested loop, 180 s for 50,000 rows.
        # Every first hop the table notes, which covers these copies' own.
        hops = [quoted_column(fk) for fk in _noted_hops(model)]
        columns = ", ".join([pk, *hops])
        grouped = ", ".join(f"r.{c}" for c in [pk, *hops])
        rows = (
            f"(SELECT {grouped} FROM "
            f"(SELECT {columns}, true AS is_new FROM dbrules_new "
            f"UNION ALL SELECT {columns}, false FROM dbrules_old) AS r "
            f"GROUP BY {grouped} HAVING count(*) = 1 AND bool_or(r.is_new)) AS n"
        ) + (f" WHERE {where}" if where else "")
    columns, values = _note(model)
    text = render(
        "copy_recheck.sql",
        recopy_table=recopy,
        columns=columns,
        values=values,
        rows=rows,
        mark_parked=mark_parked(recopy),
    )
    return textwrap.indent(text, "    ")


def supplied_condition(plans: list[Plan], supplied: set[int]) -> str:
    """The BEFORE INSERT row trigger's WHEN when the statement may supply
    the copies itself: some copy is left as Django sends an unset field (its
    default) or NULL, or the transaction is deferred (its copy check waits
    for the commit). Otherwise the row keeps the values it came with, and the
    statement's copy check compares them with their sources and rewrites the
    wrong ones (copy_check.sql). "" where every row must be looked up: a
    same-row rule, a copy that ``supplied`` leaves out, a default PostgreSQL
    or a callable computes."""
    copies = [p for p in plans if isinstance(p, CopyPlan) and id(p) in supplied]
    if not plans or len(copies) < len(plans):
        return ""
    unset = []
    for plan in copies:
        target = plan.target
        if (target.has_default() and callable(target.default)) or getattr(
            target, "db_default", models.NOT_PROVIDED
        ) is not models.NOT_PROVIDED:
            return ""
        column = f"NEW.{quoted_column(target)}"
        unset.append(f"{column} IS NULL")
        if plan.empty_value is not None:
            unset.append(f"{column} = {literal(plan.empty_value)}")
    return " OR ".join([*dict.fromkeys(unset), f"{DEFERRED_SETTING} = 'on'"])


def row_triggers(
    model: type[models.Model], plans: list[Plan], supplied: set[int], recounted_by: Sequence[str] = ()
) -> list[CompiledTrigger]:
    """The BEFORE row triggers that compute the copies and same-row rules
    of ``model``; ``supplied``: the copies an INSERT may give itself
    (``supplied_condition``); ``recounted_by``: key columns whose change
    makes the model's rekey trigger rewrite aggregates these rules read."""
    ordered = _row_order(plans)
    copies = [p for p in ordered if isinstance(p, CopyPlan)]
    recopy, setup = _recopy_table(model)
    noted = [model._meta.pk, *_noted_hops(model)]
    park = (
        f"INSERT INTO {recopy} (dbrules_txid, {_note(model)[0]}) "
        f"VALUES (txid_current(), {', '.join(f'ARRAY[NEW.{quoted_column(f)}]' for f in noted)}); {mark_parked(recopy)}"
    )
    first_hops: set[str] = set()
    assignments = []
    for plan in ordered:
        if isinstance(plan, CopyPlan):
            # The first lookup along each first hop tells whether it exists.
            first = plan.path[0].column not in first_hops
            first_hops.add(plan.path[0].column)
            assignments.append(_lookup_assignment(plan, park if first else ""))
        else:
            value = render_expression(model, plan.rule.expression, "NEW")
            assignments.append(f"NEW.{quoted_column(plan.target)} := {value};")
    inputs = row_inputs(ordered)
    func = render("row_compute.sql", assignments="\n".join(assignments))
    comment = comment_for(ordered)
    given = supplied_condition(ordered, supplied)
    changed = row_update_condition(ordered, supplies=bool(given))
    insert = RuleTrigger(
        name=trigger_name(model._meta.model_name, "row_ins"),
        when=pgtrigger.Before,
        operation=pgtrigger.Insert,
        level=pgtrigger.Row,
        condition=pgtrigger.Condition(given) if given else None,
        func=func,
        comment=comment,
    )
    update = RuleTrigger(
        name=trigger_name(model._meta.model_name, "row_upd"),
        when=pgtrigger.Before,
        # UPDATE OF: statements that set none of the inputs (dbrules' own
        # count updates, most app updates) skip the trigger before PostgreSQL
        # prepares its WHEN, which it does once per statement.
        # A column list is matched against what the statement sets, not what
        # BEFORE triggers change: a key change, whose rekey trigger rewrites
        # the counts in NEW, is listed for rules that read them.
        operation=pgtrigger.UpdateOf(*inputs, *(c for c in recounted_by if c not in inputs)),
        level=pgtrigger.Row,
        condition=pgtrigger.Condition(changed),
        func=func,
        comment=comment,
    )
    result = [
        CompiledTrigger(model, insert, tuple(ordered)),
        CompiledTrigger(model, update, tuple(ordered)),
    ]
    if copies:
        result.append(CompiledTrigger(model, _recopy_trigger(model, copies, recopy, setup), tuple(copies)))
    return result


def _recopy_trigger(model: type[models.Model], copies: list[CopyPlan], recopy: str, setup: str) -> RuleTrigger:
    """At commit: check again, with their sources locked, the rows noted in
    ``recopy`` -- those whose first hop was not there when they were
    written, and those a deferred statement wrote (copy_recopy.sql)."""
    pk = quote(model._meta.pk.column)
    prefixes = _source_prefixes(copies)
    joins, source, _ = _joined_sources(prefixes, "c")
    # The noted keys, read into arrays once; the statements read those
    # (commit_start.sql plans them for the arrays' lengths).
    first_hops = _noted_hops(model)
    arrays = {fk.column: f"dbrules_noted_{i}" for i, fk in enumerate(first_hops)}
    collect = [f"dbrules_noted := ARRAY({_noted_rows(recopy)});"]
    declare = [("dbrules_noted", f"{column_type(model._meta.pk)}[]")]
    for fk in first_hops:
        collect.append(f"{arrays[fk.column]} := ARRAY({_noted(recopy, quoted_column(fk))});")
        declare.append((arrays[fk.column], f"{column_type(fk.target_field)}[]"))
    locks, entries = [], []
    for prefix in prefixes:
        last = prefix[-1]
        keys = _path_keys(prefix, arrays[prefix[0].column], "array")
        locks.append(
            f"PERFORM 1 FROM {table(last.related_model)} AS s WHERE s.{fk_key(last)} = ANY ({keys}) "
            f"ORDER BY s.{fk_key(last)} FOR NO KEY UPDATE;"
        )
        # What the first commit-time trigger to fire locks for this table
        # (commit_locks.sql): a query of its own, with no variable.
        stored = _path_keys(prefix, _noted(recopy, quoted_column(prefix[0])), "query")
        holder = prefix[-2].related_model if len(prefix) > 1 else model
        entry = f"{recopy} {'.'.join(fk.column for fk in prefix)}"
        entries.append(commit_order_entry(entry, recopy, last.related_model, fk_key(last), holder, stored))
    return RuleTrigger(
        name=trigger_name(model._meta.model_name, "recopy"),
        when=pgtrigger.After,
        operation=pgtrigger.Insert,
        level=pgtrigger.Row,
        func=render(
            "copy_recopy.sql",
            recopy_table=recopy,
            collect="\n".join(collect),
            locks="\n".join(locks),
            model_table=table(model),
            assignments=",\n       ".join(f"{quoted_column(p.target)} = {_lookup_sql(p, 'c')}" for p in copies),
            noted_rows=f"c.{pk} = ANY (dbrules_noted)",
            **commit_steps(recopy),
            joins=joins,
            stale=" OR ".join(f"NOT {null_safe_equal(f'c.{quoted_column(p.target)}', source(p))}" for p in copies),
            differs=" OR ".join(
                f"NOT {null_safe_equal(f'c.{quoted_column(p.target)}', _lookup_sql(p, 'c'))}" for p in copies
            ),
        ),
        comment=comment_for(copies),
        declare=[("dbrules_lock", "text"), ("dbrules_stale", "bigint"), *declare, *COMMIT_DECLARE],
        on_table=recopy,
        setup="\n".join([setup, *entries]),
        teardown=f"{commit_order_removal(recopy)}\nDROP TABLE IF EXISTS {recopy};",
        deferrable=True,
    )


# Column types with min() and max() in PostgreSQL: a copy into one of them
# is compared by its extremes (``copy_check``); booleans by bool_and and
# bool_or. Named as Django's PostgreSQL backend spells them, less modifiers.
_ORDERED_TYPES = frozenset({
    "smallint", "integer", "bigint", "numeric", "real", "double precision", "money",
    "varchar", "char", "text", "date", "time", "timestamp", "timestamp with time zone", "interval", "inet",
})


def _extremes(field: models.Field) -> tuple[str, str] | None:
    """The aggregates giving the least and greatest value of ``field``'s
    column, or None when its type has none (uuid, jsonb, arrays, bytea)."""
    kind = re.sub(r"\(.*?\)", "", column_type(field) or "").strip().lower()
    if kind == "boolean":
        return ("bool_and", "bool_or")
    return ("min", "max") if kind in _ORDERED_TYPES else None


def checked_copies(plans: list[Plan]) -> list[CopyPlan]:
    """The copies of one model that a copy check covers (copy_check.sql)."""
    return sorted((p for p in plans if isinstance(p, CopyPlan)), key=lambda p: p.target.name)


def deferred_sources(copies: list[CopyPlan], deferred_parents: set[type[models.Model]]) -> bool:
    """A source of these copies is the parent of rules deferred by
    declaration. Deferred mode promises that a transaction locks those
    parents only at commit, and the check would lock them at once: their
    check, too, waits for the commit (copy_recheck.sql, docs/deferred.md)."""
    return any(fk.related_model in deferred_parents for p in copies for fk in p.path)


# The field of a first hop's record (hop0, hop1...) that a one-row check
# reads it into: NULL when the row it points at is not there.
FOUND = "dbrules_found"


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


def _joined_sources(
    prefixes: list[tuple[models.ForeignKey, ...]], row: str
) -> tuple[str, Callable[[CopyPlan], str], str]:
    """LEFT JOINs from the rows ``row`` along every prefix, hop by hop; how
    a copy's current value reads from them; and the test that a row points
    at a first hop that is not there (yet: a parent inserted later in the
    transaction, or by another one not yet committed)."""
    alias = {prefix: f"j{i}" for i, prefix in enumerate(prefixes)}
    joins = " ".join(
        f"LEFT JOIN {table(prefix[-1].related_model)} AS {alias[prefix]} "
        f"ON {alias[prefix]}.{fk_key(prefix[-1])} = "
        f"{row if len(prefix) == 1 else alias[prefix[:-1]]}.{quoted_column(prefix[-1])}"
        for prefix in prefixes
    )

    def source(plan: CopyPlan) -> str:
        value = f"{alias[plan.path]}.{quoted_column(plan.source)}"
        return value if plan.empty_value is None else f"coalesce({value}, {literal(plan.empty_value)})"

    missing = " OR ".join(
        f"({row}.{quoted_column(prefix[0])} IS NOT NULL AND {alias[prefix]}.{fk_key(prefix[0])} IS NULL)"
        for prefix in prefixes
        if len(prefix) == 1
    )
    return joins, source, missing


def copy_check(
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
    pk = quoted_column(model._meta.pk)
    prefixes = _source_prefixes(copies)
    first_columns = list(dict.fromkeys(plan.path[0].column for plan in copies))
    # The copied values as of now, joined hop by hop (a correlated lookup
    # per row would cost a subquery per row and copy on bulk writes).
    joins, source, missing = _joined_sources(prefixes, "n")

    rewrite = {
        "child_table": table(model),
        "pk": pk,
        "assignments": ",\n           ".join(f"{quoted_column(p.target)} = {_lookup_sql(p, 'c')}" for p in copies),
        # The transition row holds the copy as first written; a cascade in
        # the same statement (a copied count-derived value) may have
        # rewritten it since, so the current row decides what to rewrite.
        "still_stale": " OR ".join(
            f"NOT {null_safe_equal(f'c.{quoted_column(p.target)}', _lookup_sql(p, 'c'))}" for p in copies
        ),
    }
    # Compared per first hop, not per row: with no statistics on a
    # transition table PostgreSQL estimates at most 200 groups, so the cached
    # plan of this join suits a statement of 2 rows and one of 100,000
    # alike. Joined row by row, its plan was fixed by the first statement a
    # session ran: after a large one, each small one scanned the whole parent
    # table (66 ms for a two-row insert beside 200,000 authors, against
    # 0.19 ms). Grouping by the stored copy too, PostgreSQL estimates 200
    # groups per column, 40,000 for the pair: past about 400,000 rows it
    # sorted them on disk and JIT-compiled the query (0.9 s of a
    # 1,000,000-row insert, against 0.5 s grouped by the hop alone). So a
    # copy whose type has min and max is reduced to them (``_extremes``), at
    # about 0.5% more instructions for a 20,000-row insert, and only the
    # others are grouped on.
    group_columns = list(first_columns)
    aggregates: dict[str, str] = {}  # name: expression, per copy reduced to its extremes
    compared, stale = [], []
    for i, plan in enumerate(copies):
        column = plan.target.column
        stored = f"n.{quote(column)}"
        extremes = _extremes(plan.target)
        if extremes is None:  # grouped on: a type without min and max (uuid, json)
            group_columns.append(column)
            compared.append(f"{stored} AS stored_{i}, {source(plan)} AS source_{i}")
            stale.append(f"NOT {null_safe_equal(f'x.stored_{i}', f'x.source_{i}')}")
            continue
        # Every stored copy equals the source: both extremes equal it, and
        # where the column takes NULL (which min and max skip) none is NULL,
        # or all are where the source is.
        parts = ("low", "high", "null") if plan.target.null else ("low", "high")
        names = {part: f"{part}:{column}" for part in parts}
        aggregates[names["low"]] = f"{extremes[0]}({stored})"
        aggregates[names["high"]] = f"{extremes[1]}({stored})"
        same = f"x.low_{i} = x.source_{i} AND x.high_{i} = x.source_{i}"
        if plan.target.null:
            aggregates[names["null"]] = f"bool_or({stored} IS NULL)"
            same = f"(x.source_{i} IS NULL AND x.low_{i} IS NULL) OR (NOT x.null_{i} AND {same})"
        selected = [f"n.{quote(name)} AS {part}_{i}" for part, name in names.items()]
        compared.append(", ".join(selected + [f"{source(plan)} AS source_{i}"]))
        stale.append(f"NOT coalesce({same}, false)")
    group = ", ".join(f"n.{quote(c)}" for c in group_columns)
    summarised = ", ".join([group] + [f"{expression} AS {quote(name)}" for name, expression in aggregates.items()])
    summary = group_columns + list(aggregates)  # the columns of one group: what an UPDATE keeps in arrays
    rows = "SELECT * FROM dbrules_new"
    pairs = f"SELECT {summarised} FROM ({rows}) AS n GROUP BY {group}"
    if operation == "update":
        # An UPDATE checks only the rows whose first hop changed. Their
        # groups are found once, by an anti-join of the new rows with the
        # unchanged old ones (an inner join's estimate for two 50,000-row
        # transition tables, 12M rows, made PostgreSQL JIT-compile it), and
        # kept in arrays that the locks and the comparison read.
        moved = {c: quote("moved:" + c) for c in summary}
        unchanged = " AND ".join(null_safe_equal(f"o.{quote(c)}", f"n.{quote(c)}") for c in first_columns)
        pairs = "SELECT " + ", ".join(f"unnest(moved.{moved[c]}) AS {quote(c)}" for c in summary)
    locks = []
    for prefix in prefixes:
        if counted and operation == "insert" and len(prefix) == 1:
            continue  # the count has locked every parent of the new rows
        start = f"SELECT n.{quoted_column(prefix[0])} FROM ({rows}) AS n"
        if operation == "update":
            start = f"SELECT unnest(moved.{moved[prefix[0].column]})"
        source_keys = _path_keys(prefix, start, "query")
        last = prefix[-1]
        locks.append(
            f"PERFORM 1 FROM {table(last.related_model)} AS s WHERE s.{fk_key(last)} IN ({source_keys}) "
            f"ORDER BY s.{fk_key(last)} FOR NO KEY UPDATE;"
        )
    keys = {c: quote("k:" + c) for c in first_columns}
    stale_keys = [f"array_agg(x.{quote(c)}) AS {keys[c]}" for c in first_columns]
    stale_test = " OR ".join(stale)
    # Rows of the statement that copy from a stale first hop; the
    # UPDATE's own test keeps those whose copy is right as they are.
    # A NULL first hop is stale when its copies are not empty (a value
    # forged or left from before a move to NULL), and IN never matches it.
    nullable = {plan.path[0].column for plan in copies if plan.path[0].null}
    stale_where = " OR ".join(
        f"n.{quote(c)} IN (SELECT unnest(stale.{keys[c]}))"
        + (f" OR (n.{quote(c)} IS NULL AND array_position(stale.{keys[c]}, NULL) IS NOT NULL)" if c in nullable else "")
        for c in first_columns
    )
    park_missing = ""
    if missing:
        # An INSERT or a move may give its copies (supplied_condition,
        # row_update_condition): then no row trigger looked the first hop
        # up, nor noted a row whose first hop is not there yet for the
        # commit to check again (copy_recopy.sql). The comparison finds
        # them, and notes them here.
        compared.append(f"({missing}) AS dbrules_missing")
        stale_keys.append("count(*) FILTER (WHERE x.dbrules_missing) AS dbrules_missing")
        stale_test = f"({stale_test}) OR x.dbrules_missing"
        park_missing = (
            "IF stale.dbrules_missing > 0 THEN\n"
            + recheck_rows(model, operation, where=stale_where)
            + "\nEND IF;"
        )
    several = render(
        "copy_check_rows.sql",
        locks="\n".join(locks),
        stale_keys=", ".join(stale_keys),
        compare=f"SELECT {', '.join(f'n.{quote(c)}' for c in first_columns)}, {', '.join(compared)} "
        f"FROM ({pairs}) AS n {joins}",
        stale=stale_test,
        stale_rows=f"SELECT n.{pk} FROM dbrules_new AS n WHERE {stale_where}",
        park_missing=park_missing,
        **rewrite,
    ).rstrip()
    if operation == "update":
        several = (
            "SELECT count(*) AS dbrules_moved, "
            + ", ".join(f"array_agg(n.{quote(c)}) AS {moved[c]}" for c in summary)
            + f" INTO moved FROM (SELECT {summarised} FROM dbrules_new AS n "
            f"WHERE NOT EXISTS (SELECT FROM dbrules_old AS o WHERE o.{pk} = n.{pk} AND {unchanged}) "
            f"GROUP BY {group}) AS n"
            + ";\nIF moved.dbrules_moved > 0 THEN\n"
            + textwrap.indent(several, "    ")
            + "\nEND IF;"
        )
    row_columns = [f"n.{pk} AS dbrules_pk"]
    row_columns += [f"n.{quote(c)}" for c in first_columns]
    row_columns += [f"n.{quoted_column(plan.target)}" for plan in copies]
    if operation == "update":
        row_columns += [f"o.{quote(c)} AS {quote('old:' + c)}" for c in first_columns]
    declare = [("moved", "record"), ("stale", "record")] + [(f"hop{k}", "record") for k in range(len(prefixes))]
    returning = ""
    if folded:
        declare.append(("dbrules_hop0", "boolean"))
        read = [plan for plan in copies if plan.path == prefixes[0]]
        returned = list(dict.fromkeys(f"p.{quoted_column(plan.source)}" for plan in read))
        returned.insert(0, f"true AS {FOUND}")
        returning = f"\n RETURNING {', '.join(returned)} INTO hop0"
    park_missing = recheck_rows(model, operation)
    return CopyCheck(
        row_columns=row_columns,
        one_row=_copy_check_one_row(copies, prefixes, first_columns, operation, rewrite, folded, park_missing),
        rows=several,
        declare=declare,
        returning=returning,
    )


def copy_check_triggers(
    model: type[models.Model],
    copies: list[CopyPlan],
    always_deferred: bool = False,
    cascade_marks: Sequence[str] = (),
) -> list[CompiledTrigger]:
    """The copy check as statement triggers of its own, for copies no
    count's statement trigger carries (``copy_check``). ``always_deferred``:
    a source is the parent of rules deferred by declaration, whose lock
    the check must not take before commit (deferred_sources).
    ``cascade_marks``: the cascades whose UPDATE moves no row, which the
    UPDATE check skips (cascade_skip.sql)."""
    if not copies:
        return []
    result = []
    for operation, suffix in (("insert", "ins"), ("update", "upd")):
        check = copy_check(model, copies, operation, folded=False)
        func = render(
            "copy_check.sql",
            deferred="TRUE" if always_deferred else "coalesce(current_setting('dbrules.deferred', true), '') = 'on'",
            recheck=recheck_rows(model, operation),
            one_row_branch=render(
                "one_row_branch.sql",
                row_columns=",\n       ".join(check.row_columns),
                row_table="dbrules_new",
                row_from="dbrules_new AS n" if operation == "insert" else "dbrules_old AS o, dbrules_new AS n",
                one_row=textwrap.indent(check.one_row, "    "),
            ),
            rows=plans_by_size(check.rows, "dbrules_new"),
            cascade_skip=cascade_skip(cascade_marks) if operation == "update" else "",
            **jit_steps(),
        )
        trigger = RuleTrigger(
            name=trigger_name(model._meta.model_name, "copycheck", suffix),
            when=pgtrigger.After,
            operation=OPERATIONS[operation],
            level=pgtrigger.Statement,
            referencing=REFERENCING[operation],
            jit_in_body=True,
            declare=[("one", "record"), *check.declare],
            func=func,
            comment=comment_for(copies),
        )
        result.append(CompiledTrigger(model, trigger, tuple(copies)))
    return result


def _path_keys(prefix: tuple[models.ForeignKey, ...], start: str, start_is: Literal["one", "query", "array"]) -> str:
    """The key(s) of the rows of ``prefix``'s last table that ``start`` (the
    first hop's column) reaches, hop by hop: one value, a query of them, or
    an array of them, as ``start_is``."""
    keys = start
    for previous, fk in zip(prefix, prefix[1:]):
        select = f"SELECT t.{quoted_column(fk)} FROM {table(previous.related_model)} AS t WHERE t.{fk_key(previous)}"
        if start_is == "one":
            keys = f"({select} = {keys})"
        elif start_is == "array":
            keys = f"ARRAY({select} = ANY ({keys}))"
        else:
            keys = f"{select} IN ({keys})"
    return keys


def _copy_check_one_row(
    copies: list[CopyPlan],
    prefixes: list[tuple[models.ForeignKey, ...]],
    first_columns: list[str],
    operation: str,
    rewrite: dict[str, str],
    folded: bool,
    park_missing: str = "",
) -> str:
    """copy_check.sql's one-row branch: the row is read into ``one`` (its
    key, first hops and copies; for an UPDATE, the old first hops too).
    ``folded``: a count's one-row UPDATE of the first hop may have locked and
    read it already (``dbrules_hop0``). ``park_missing``: what
    notes the row for the commit when a first hop it points at is not there;
    each first hop's read then says whether it found it (``FOUND``)."""
    unmoved = ""
    if operation == "update":
        # Copies follow their first hop; an UPDATE that keeps every first
        # hop recopies nothing that a concurrent source change could miss
        # (that change's cascade waits for this row's lock, then sees it).
        kept = " AND ".join(null_safe_equal(f"one.{quote('old:' + c)}", f"one.{quote(c)}") for c in first_columns)
        unmoved = f"IF {kept} THEN\n    RETURN NULL;\nEND IF;"
    # Lock each source row by key and read it in the same statement: after
    # waiting for a change in flight, FOR NO KEY UPDATE returns its newest
    # version. The copies ending at a hop compare with that hop's record.
    locks, value = [], {}
    for k, prefix in enumerate(prefixes):
        key = _path_keys(prefix, f"one.{quoted_column(prefix[0])}", "one")
        last = prefix[-1]
        ending = [plan for plan in copies if plan.path == prefix]
        for plan in ending:
            read = f"hop{k}.{quoted_column(plan.source)}"
            value[plan.target.name] = read if plan.empty_value is None else f"coalesce({read}, {literal(plan.empty_value)})"
        columns = list(dict.fromkeys(f"s.{quoted_column(plan.source)}" for plan in ending))
        if park_missing and len(prefix) == 1:
            columns.insert(0, f"true AS {FOUND}")
        target = f"SELECT {', '.join(columns)} INTO hop{k}" if columns else "PERFORM 1"
        lock = f"{target} FROM {table(last.related_model)} AS s WHERE s.{fk_key(last)} = {key} FOR NO KEY UPDATE;"
        if folded and k == 0:
            lock = f"IF dbrules_hop0 IS NULL THEN\n    {lock}\nEND IF;"
        locks.append(lock)
    absent = " OR ".join(
        f"(one.{quoted_column(prefix[0])} IS NOT NULL AND hop{k}.{FOUND} IS NULL)"
        for k, prefix in enumerate(prefixes)
        if len(prefix) == 1
    )
    text = render(
        "copy_check_one_row.sql",
        unmoved=unmoved,
        locks="\n".join(locks),
        park_missing=f"IF {absent} THEN\n{park_missing}\nEND IF;" if park_missing and absent else "",
        stale=" OR ".join(
            f"NOT {null_safe_equal(f'one.{quoted_column(plan.target)}', value[plan.target.name])}" for plan in copies
        ),
        **rewrite,
    )
    return without_blank_lines(text)


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


def _reaching(plan: CopyPlan, hop: int, keys: str, one: bool) -> str:
    """The condition on the copy's rows (``m``) that their path reaches,
    at ``hop``, the source keys ``keys``: one key (``NEW``) or a set."""
    path = plan.path
    reaches = keys
    for back in range(hop, 0, -1):
        prev = path[back - 1]
        # Past the first step back one source row may reach many rows.
        match = "=" if back == hop and one else "IN"
        reaches = (
            f"(SELECT t.{fk_key(prev)} FROM {table(prev.related_model)} AS t "
            f"WHERE t.{quoted_column(path[back])} {match} {reaches})"
        )
    operator = "=" if hop == 0 and one else "IN"
    return f"m.{quoted_column(path[0])} {operator} {reaches}"


def copy_cascade_triggers(
    plan: CopyPlan, aggregated: dict[type[models.Model], set[str]], marked: bool = False
) -> list[CompiledTrigger]:
    """On each table along the path: re-copy when the value or the next hop
    changes. ``marked``: a statement trigger on the copy's model skips the
    cascade's UPDATE when it is marked (cascade_skip.sql)."""
    result = []
    path = plan.path
    for hop, fk in enumerate(path):
        source_model = fk.related_model
        relevant = path[hop + 1].column if hop + 1 < len(path) else plan.source.column
        update = _cascade_update_of(source_model, aggregated.get(source_model, set()), relevant)
        name = [plan.parent._meta.model_name, plan.target.name, "src", str(hop)]
        copy = {
            "model_table": table(plan.parent),
            "target": quoted_column(plan.target),
        }
        # An updated source row: its WHEN compares OLD and NEW, so dbrules'
        # own count updates there cost no call. Every row it reaches copies
        # the same value, read once from it: a lookup per rewritten row was
        # a fifth of a rename of 1,000 authors over 100,000 copies.
        changed = _reaching(plan, hop, f"NEW.{fk_key(fk)}", one=True)
        steps = cascade_steps(plan.parent, plan.target) if marked else {"mark": "", "unmark": ""}
        cascade = render(
            "copy_cascade.sql", **copy, **steps, value=_path_lookup(plan, hop, f"NEW.{fk_key(fk)}"), reaches_changed=changed
        )
        cascade_update = RuleTrigger(
            name=trigger_name(*name, "upd"),
            when=pgtrigger.After,
            operation=update,
            level=pgtrigger.Row,
            condition=pgtrigger.Condition(any_column_changed([relevant, fk.target_field.column])),
            func=without_blank_lines(cascade),
            comment=plan.label,
        )
        # Inserted source rows: once per statement. Dependents can only be
        # there already when inserted first in this transaction (deferred
        # ForeignKeys) or without a constraint; per row, even the UPDATE
        # finding none fired the dependents' statement triggers, a third of
        # a 100,000-row bulk_create of the source.
        inserted = _reaching(plan, hop, f"(SELECT n.{fk_key(fk)} FROM dbrules_new AS n)", one=False)
        # Probed row by row: a scalar subquery stays one index probe per
        # inserted row whatever plan the session cached. The semi-join it
        # replaces, planned for a first insert of 100,000 rows, scanned every
        # dependent row on each later one-row insert (340 ms against 4 ms).
        reaches_one = _reaching(plan, hop, f"n.{fk_key(fk)}", one=True)
        probe = f"SELECT true FROM {table(plan.parent)} AS m WHERE {reaches_one} LIMIT 1"
        cascade_insert = RuleTrigger(
            name=trigger_name(*name, "ins"),
            when=pgtrigger.After,
            operation=pgtrigger.Insert,
            level=pgtrigger.Statement,
            referencing=REFERENCING["insert"],
            func=render(
                "copy_cascade_inserted.sql",
                **copy,
                lookup=_lookup_sql(plan, "m"),
                reaches_inserted=inserted,
                probe=probe,
            ),
            comment=plan.label,
        )
        for trigger in (cascade_update, cascade_insert):
            result.append(CompiledTrigger(source_model, trigger, (plan,)))
    return result
