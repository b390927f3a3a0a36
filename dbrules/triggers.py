"""The pgtrigger triggers dbrules compiles rules into, their names, and the
SQL pieces every kind of rule uses.

Migrations name these classes ``dbrules.compiler.*`` (their first home), and
``dbrules.compiler`` still exports them: the paths they deconstruct to stay
the same.
"""

from __future__ import annotations

import hashlib
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import pgtrigger
from pgtrigger import core as pgcore
from django.db import models
from django.utils.deconstruct import deconstructible
from pgtrigger import compiler as pgcompiler

from dbrules.analysis import Plan
from dbrules.qualify import qualify
from dbrules.sqlrender import literal, quote, render, table

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
        jit_in_body: bool = False,
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
            "jit_in_body": jit_in_body,
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
            "jit_in_body": False,
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
        settings = [
            "-- no SET search_path: every table, operator and function below is qualified"
            if self.kwargs["qualified"]
            else "SET search_path = pg_catalog, pg_temp"
        ]
        if self.kwargs["level"].upper() == "STATEMENT" and not self.kwargs["jit_in_body"]:
            # A session plans these statements once, for the first call's
            # transition table: after a 100,000-row statement its estimate
            # stayed, and JIT compiled the plan again on every later call,
            # 265 ms for a 3-row insert (1.6 ms without); the bulk statement
            # itself ran 14% faster without JIT. Bodies with a one-row
            # branch turn it off after that branch instead (jit_steps).
            settings.append("SET jit = off")
        # Commit-time functions set it, and more, in their first firing of
        # a commit only (commit_start.sql): a SET here costs every firing.
        values["search_path"] = "\n".join(settings)
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

    def deconstruct(self) -> tuple[str, Sequence[Any], dict[str, Any]]:
        _, args, kwargs = super().deconstruct()
        return "dbrules.compiler.CompiledRuleTrigger", args, kwargs

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
        jit_in_body: bool = False,
        **kwargs: Any,
    ) -> None:
        self.comment = comment
        self.on_table = on_table
        self.setup = setup
        self.teardown = teardown
        self.deferrable = deferrable
        self.jit_in_body = jit_in_body
        for variable, kind in VARIABLES.items():
            if variable in kwargs["func"]:
                kwargs["declare"] = [*kwargs.get("declare", []), (variable, kind)]
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
                condition=(self.condition.sql or "") if self.condition else "",
                declare=self.render_declare(model),
                comment=self.comment,
                setup=self.setup,
                teardown=self.teardown,
                deferrable=self.deferrable,
                qualified=self.qualified,
                jit_in_body=self.jit_in_body,
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
        name = self.trigger.name
        assert name is not None  # pgtrigger names every compiled trigger
        return name

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


def transaction_table(kind: str, model: type[models.Model], identity: Any, columns: str) -> tuple[str, str]:
    """A table in schema "dbrules" whose rows live only as long as their
    transaction (transaction_table.sql): its name, from ``kind``, ``model``
    and a digest of ``identity``, and the SQL that creates it with ``columns``
    after ``dbrules_txid``."""
    digest = hashlib.sha1(repr(identity).encode()).hexdigest()[:10]
    name = f'"dbrules"."{kind}_{model._meta.model_name[:30]}_{digest}"'
    setup = render("transaction_table.sql", table=name, index=quote(f"{kind}_{digest}_txid"), columns=columns)
    return name, setup


def mark_parked(name: str) -> str:
    """List ``name`` in the transaction's dbrules.parked (mark_parked.sql)."""
    return render("mark_parked.sql", entry=literal(name + ";"))


# What every commit-time trigger declares: the settings commit_start.sql
# changes, as they were.
COMMIT_DECLARE = [("dbrules_settings", "text[]")]


def commit_steps(name: str) -> dict[str, str]:
    """The steps of the commit-time trigger of ``name``, a pending or recopy
    table, for its template: ``commit_start`` (only its first firing in a
    commit goes on, and the reads after it are planned for this commit:
    commit_start.sql), ``writes`` before its first statement that writes
    (plan_cache_mode given back, so the triggers that statement fires plan
    as the session does), ``commit_end`` after its work (jit given back)."""
    entry = literal(name + ";")
    unmark = (
        "PERFORM set_config('dbrules.parked', "
        f"replace(current_setting('dbrules.parked', true), {entry}, ''), true);"
    )
    return {
        "commit_start": render(
            "commit_start.sql", entry=entry, table=name, unmark=unmark, commit_locks=render("commit_locks.sql")
        ),
        "writes": "PERFORM set_config('plan_cache_mode', dbrules_settings[1], true);",
        "commit_end": "PERFORM set_config('jit', dbrules_settings[2], true);",
    }


_INTO = re.compile(r"\s+INTO\s+([\w, ]+)$")


def planned_each_call(statements: str, arrays: Sequence[str]) -> str:
    """SQL ``statements`` (one or more, each ending in ``;``, none but a
    trailing ``INTO`` of PL/pgSQL) that read the array variables ``arrays``,
    run by EXECUTE with them as $1, $2 ...: PostgreSQL then plans each one
    on every call, for the arrays' lengths and the tables' sizes of now,
    while the triggers it fires keep their own plans. As plain statements a
    session keeps, after five runs, one generic plan made for arrays of
    unknown length; made while a parent table was nearly empty, it scanned
    that table whole on every later commit until an ANALYZE (45-51 ms for a
    two-row commit once the table had grown from 10 rows to 200,000, against
    2-3 ms in a new session). Each statement is qualified before it is
    quoted, since the body's qualification does not read inside strings; a
    statement that cannot be qualified stays as it is (the body then keeps
    the pinned search_path)."""
    executed = []
    for statement in (part.strip() for part in statements.split(";\n") if part.strip()):
        statement = statement.rstrip(";")
        into = _INTO.search(statement)
        query = statement[: into.start()] if into else statement
        qualified = qualify(query)
        if qualified is None:
            executed.append(statement + ";")
            continue
        for number, name in enumerate(arrays, start=1):
            qualified = re.sub(rf"\b{name}\b", f"${number}", qualified)
        target = f"\n   INTO {into.group(1)}" if into else ""
        executed.append(f"EXECUTE {literal(qualified)}{target}\n  USING {', '.join(arrays)};")
    return "\n".join(executed)


# The caller's jit while jit_steps hold it off; RuleTrigger declares it
# in any body that uses it.
JIT_VARIABLE = "dbrules_jit"


def jit_steps() -> dict[str, str]:
    """JIT off around a statement function's statements over several rows
    (migrations_templates/jit_off.sql), for a body that sets it itself
    (``RuleTrigger(jit_in_body=True)``): ``jit_off`` at the top level of
    the body, ``nested_jit_off`` one block deep, ``jit_back`` after them."""
    off = render("jit_off.sql", variable=JIT_VARIABLE)
    return {
        "jit_off": off,
        "nested_jit_off": textwrap.indent(off, "    ").lstrip(),
        "jit_back": f"PERFORM set_config('jit', {JIT_VARIABLE}, true);",
    }


# A copy's cascade marks its UPDATE of the dependents (copy_cascade.sql);
# a statement trigger of theirs that reads nothing it can change returns at
# once (cascade_skip.sql). The mark names the table, the column and the
# depth the UPDATE's triggers fire at, which no other statement's share.
CASCADE_SETTING = "dbrules.cascading"
CASCADE_VARIABLE = "dbrules_cascading"
# The caller's planner settings while plans_by_size holds them.
PLANNER_VARIABLE = "dbrules_planner"

# Variables a body may use, declared by RuleTrigger where it does: jit_steps,
# cascade_steps, plans_by_size.
VARIABLES = {JIT_VARIABLE: "text", CASCADE_VARIABLE: "text", PLANNER_VARIABLE: "text[]"}


def cascade_mark(model: type[models.Model], field: models.Field) -> str:
    """What a cascade writing ``field`` of ``model`` marks its UPDATE with,
    less the depth."""
    return f"{table(model)}.{quoted_column(field)}:"


def cascade_steps(model: type[models.Model], field: models.Field) -> dict[str, str]:
    """Around a cascade's UPDATE: ``mark`` it, then ``unmark`` (the mark of
    an enclosing cascade comes back)."""
    return {
        "mark": (
            f"{CASCADE_VARIABLE} := current_setting('{CASCADE_SETTING}', true);\n"
            f"PERFORM set_config('{CASCADE_SETTING}', "
            f"{literal(cascade_mark(model, field))} || (pg_trigger_depth() + 1)::text, true);"
        ),
        "unmark": f"PERFORM set_config('{CASCADE_SETTING}', coalesce({CASCADE_VARIABLE}, ''), true);",
    }


def cascade_skip(marks: Iterable[str]) -> str:
    """A statement trigger's return when the statement is a cascade marked
    with one of ``marks`` (cascade_mark), on a line of its own, or nothing."""
    marks = list(marks)
    if not marks:
        return ""
    return "\n" + render(
        "cascade_skip.sql",
        setting=literal(CASCADE_SETTING),
        marks=", ".join(f"{literal(mark)} || pg_trigger_depth()::text" for mark in marks),
    )


def commit_order_entry(
    entry: str, parked: str, parent: type[models.Model], parent_key: str, child: type[models.Model], keys: str
) -> str:
    """SQL registering, in dbrules.commit_order, parents a commit may lock:
    those of ``parent`` whose keys ``keys`` selects once the transaction has
    listed ``parked`` in dbrules.parked (commit_locks.sql)."""
    qualified = qualify(keys)
    assert qualified is not None, keys  # dbrules writes these; each qualifies
    return render(
        "commit_order.sql",
        entry=literal(entry),
        parked=literal(parked),
        parent_table=literal(table(parent)),
        parent_key=literal(parent_key),
        child_table=literal(table(child)),
        keys=literal(qualified),
    )


def commit_order_removal(parked: str) -> str:
    return f'DELETE FROM "dbrules"."commit_order" WHERE parked = {literal(parked)};'


ROLE_WIDTH = 7  # the longest last part: "compute", "row_ins", "row_upd"


def trigger_name(*parts: str) -> str:
    """``dbrules_<parts>``; the last part names the trigger's role.

    PostgreSQL fires a table's triggers of one timing and event in name
    order, and a model's BEFORE triggers rely on it: ``compute`` before
    ``row_ins`` and ``guard`` before ``row_upd``, so that same-row rules see
    the counts. A name too long for pgtrigger is shortened in its subject,
    to the same width and digest for every role of that subject, and keeps
    the role at the end: the order stays the roles' order."""
    name = "_".join(["dbrules", *parts]).lower()
    if len(name) <= NAME_LIMIT:
        return name
    *subject, role = [part.lower() for part in parts]
    head = "_".join(["dbrules", *subject])
    digest = hashlib.sha1(head.encode()).hexdigest()[:8]
    width = NAME_LIMIT - len(digest) - 2 - max(len(role), ROLE_WIDTH)
    return f"{head[:width]}_{digest}_{role}"


def comment_for(plans: Iterable[Plan]) -> str:
    return "; ".join(plan.label for plan in plans)


def quoted_column(field: models.Field) -> str:
    """A field's column, quoted for SQL."""
    return quote(field.column)


def any_column_changed(columns: Iterable[str]) -> str:
    """A row trigger's WHEN condition: true when any of ``columns`` changed."""
    return " OR ".join(f"OLD.{quote(c)} IS DISTINCT FROM NEW.{quote(c)}" for c in dict.fromkeys(columns))


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


def fk_key(fk: models.ForeignKey) -> str:
    """The column of the related table a ForeignKey points at (pk or to_field)."""
    return quote(fk.target_field.column)


def null_safe_equal(a: str, b: str) -> str:
    """``a`` equals ``b``, NULL equal to NULL (``IS NOT DISTINCT FROM``, which
    has no pg_catalog-qualified spelling). Never NULL itself, so that its
    negation is true when one side alone is NULL."""
    return f"coalesce({a} = {b}, {a} IS NULL AND {b} IS NULL)"


# Statements of fewer rows than this run on plans of their own (plans_by_size.sql).
FEW_ROWS = 64


def plans_by_size(statements: str, rows: str, by_index: bool = True) -> str:
    """``statements`` (for a statement of several rows of the transition
    table ``rows``) in two copies, each cached with plans for its own sizes;
    with ``by_index``, the copy for few rows reads every table by index
    (index_plans.sql). Statements that one-row statements run too go
    without: setting the planner costs more than their one-row plan needs."""
    save, for_many, for_few, restore = (
        render("index_plans.sql", saved=PLANNER_VARIABLE).splitlines() if by_index else ["", "", "", ""]
    )
    return render(
        "plans_by_size.sql",
        statements=textwrap.indent(statements, "    "),
        rows=rows,
        offset=str(FEW_ROWS - 1),
        save=save,
        for_many=for_many,
        for_few=for_few,
        restore=restore,
    )
