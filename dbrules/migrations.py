"""Installation: the migration operation that records rules and backfills.

Triggers reach migrations through django-pgtrigger (``AddTrigger`` /
``RemoveTrigger``). This module adds :class:`BackfillRules`, written by
``makemigrations`` whenever a model's ``Meta.rules`` change, which records the
rules in the migration state and recomputes the derived columns -- forwards
with the new rules, backwards with the old ones (at the end of the reversal,
by :class:`ReverseBackfill`, once renamed fields have their old names).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from django.core.management.commands import makemigrations, migrate
from django.db import router
from django.db.migrations.operations.base import Operation

import django

from dbrules.triggers import ThroughTrigger
from dbrules.core import THROUGH_TRIGGERS, Derived


class BackfillRules(Operation):
    """Set ``Meta.rules`` of a model in the migration state and recompute its
    derived columns in the database."""

    reversible = True
    reduces_to_sql = False

    def __init__(self, model_name: str, rules: Sequence[Derived], backfill_backwards: bool = True) -> None:
        self.model_name = model_name
        self.rules = list(rules)
        # False when the migration starts with a ReverseBackfill, which
        # recomputes with the old rules once the rest is reversed.
        self.backfill_backwards = backfill_backwards

    @property
    def model_name_lower(self) -> str:
        return self.model_name.lower()

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        kwargs: dict[str, Any] = {"model_name": self.model_name, "rules": self.rules}
        if not self.backfill_backwards:
            kwargs["backfill_backwards"] = False
        return (self.__class__.__name__, [], kwargs)

    def state_forwards(self, app_label: str, state: Any) -> None:
        model_state = state.models[app_label, self.model_name_lower]
        if self.rules:
            model_state.options["rules"] = list(self.rules)
        else:
            model_state.options.pop("rules", None)
        state.reload_model(app_label, self.model_name_lower, delay=True)

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        _backfill(app_label, self.model_name, schema_editor, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if self.backfill_backwards:
            _backfill(app_label, self.model_name, schema_editor, to_state)

    def describe(self) -> str:
        return f"Backfill derived fields of {self.model_name}"

    @property
    def migration_name_fragment(self) -> str:
        return f"{self.model_name_lower}_rules"


class ReverseBackfill(Operation):
    """First in a migration that changes a model's rules: reversing it,
    recompute the derived columns with the old rules once everything after
    it is undone -- fields renamed back, old triggers reinstalled. (Reversed
    where BackfillRules stands, last, the old rules would be read against the
    migration's renamed fields.) Forwards it does nothing."""

    reversible = True
    reduces_to_sql = False

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return (self.__class__.__name__, [], {"model_name": self.model_name})

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        pass

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        _backfill(app_label, self.model_name, schema_editor, to_state)

    def describe(self) -> str:
        return f"Recompute derived fields of {self.model_name} when reversed"

    @property
    def migration_name_fragment(self) -> str:
        return f"reverse_{self.model_name.lower()}_rules"


def _backfill(app_label: str, model_name: str, schema_editor: Any, state: Any) -> None:
    """Recompute ``model_name``'s derived columns with its rules in ``state``."""
    from dbrules.analysis import AggregatePlan, analyze
    from dbrules.maintenance import repair
    from dbrules.sqlrender import table

    connection = schema_editor.connection
    model = state.apps.get_model(app_label, model_name)
    if connection.vendor != "postgresql" or not router.allow_migrate_model(connection.alias, model):
        return
    rules = state.models[app_label, model_name.lower()].options.get("rules", [])
    if not rules:
        return
    # Writers of the source tables wait until this migration commits, so
    # no change can fall between the recompute and the triggers, whichever
    # order the migration installs them in. CREATE TRIGGER takes this same
    # lock anyway.
    sources = sorted(
        {table(plan.child) for plan in (analyze(model, r) for r in rules) if isinstance(plan, AggregatePlan)}
    )
    with connection.cursor() as cursor:
        for source in sources:
            cursor.execute(f"LOCK TABLE {source} IN SHARE ROW EXCLUSIVE MODE")
    repair(model, using=connection.alias)


class _ThroughTriggerOperation(Operation):
    """Shared state handling of the two operations below."""

    reduces_to_sql = False
    reversible = True
    model_name: str

    @property
    def model_name_lower(self) -> str:
        return self.model_name.lower()

    def _entries(self, state: Any, app_label: str) -> list[ThroughTrigger]:
        return list(state.models[app_label, self.model_name_lower].options.get(THROUGH_TRIGGERS, []))

    def _set_entries(self, state: Any, app_label: str, entries: list[ThroughTrigger]) -> None:
        options = state.models[app_label, self.model_name_lower].options
        if entries:
            options[THROUGH_TRIGGERS] = entries
        else:
            options.pop(THROUGH_TRIGGERS, None)
        state.reload_model(app_label, self.model_name_lower, delay=True)

    def _execute(self, schema_editor: Any, state: Any, app_label: str, sql: str) -> None:
        model = state.apps.get_model(app_label, self.model_name)
        connection = schema_editor.connection
        if connection.vendor == "postgresql" and router.allow_migrate_model(connection.alias, model):
            schema_editor.execute(sql, params=None)


class AddThroughTrigger(_ThroughTriggerOperation):
    """Install a dbrules trigger on the auto-created table of a ManyToManyField."""

    def __init__(self, model_name: str, entry: ThroughTrigger) -> None:
        self.model_name = model_name
        self.entry = entry

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return (
            self.__class__.__name__,
            [],
            {"model_name": self.model_name, "entry": self.entry},
        )

    def state_forwards(self, app_label: str, state: Any) -> None:
        self._set_entries(state, app_label, self._entries(state, app_label) + [self.entry])

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        self._execute(schema_editor, to_state, app_label, self.entry.trigger.install_sql)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        self._execute(schema_editor, from_state, app_label, self.entry.trigger.uninstall_sql)

    def describe(self) -> str:
        return f"Create trigger {self.entry.name} on the table of {self.model_name}.{self.entry.field}"

    @property
    def migration_name_fragment(self) -> str:
        return f"{self.model_name_lower}_{self.entry.name}"


class RemoveThroughTrigger(_ThroughTriggerOperation):
    """Drop a dbrules trigger from the auto-created table of a ManyToManyField."""

    def __init__(self, model_name: str, name: str) -> None:
        self.model_name = model_name
        self.name = name

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return (
            self.__class__.__name__,
            [],
            {"model_name": self.model_name, "name": self.name},
        )

    def _find(self, state: Any, app_label: str) -> ThroughTrigger:
        return next(e for e in self._entries(state, app_label) if e.name == self.name)

    def state_forwards(self, app_label: str, state: Any) -> None:
        entries = [e for e in self._entries(state, app_label) if e.name != self.name]
        self._set_entries(state, app_label, entries)

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        entry = self._find(from_state, app_label)
        self._execute(schema_editor, from_state, app_label, entry.trigger.uninstall_sql)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        entry = self._find(to_state, app_label)
        self._execute(schema_editor, to_state, app_label, entry.trigger.install_sql)

    def describe(self) -> str:
        return f"Remove trigger {self.name} from the table of a ManyToManyField of {self.model_name}"

    @property
    def migration_name_fragment(self) -> str:
        return f"remove_{self.model_name_lower}_{self.name}"


class RulesAutodetectorMixin:
    """Writes dbrules' operations: BackfillRules for every model whose rules
    changed, and Add/RemoveThroughTrigger for auto-created M2M tables."""

    def generate_created_models(self) -> None:
        super().generate_created_models()  # type: ignore[misc]
        added = sorted(self.new_model_keys - self.old_model_keys)  # type: ignore[attr-defined]
        for app_label, model_name in added:
            model_state = self.to_state.models[app_label, model_name]  # type: ignore[attr-defined]
            for entry in model_state.options.pop(THROUGH_TRIGGERS, []):
                self._add_through_trigger(app_label, model_name, entry)

    def _add_through_trigger(self, app_label: str, model_name: str, entry: ThroughTrigger) -> None:
        self.add_operation(  # type: ignore[attr-defined]
            app_label,
            AddThroughTrigger(model_name=model_name, entry=entry),
            dependencies=[_field_created(app_label, model_name, entry.field)],
        )

    def generate_added_constraints(self) -> None:  # runs after triggers were added
        super().generate_added_constraints()  # type: ignore[misc]
        for app_label, model_name in sorted(self.kept_model_keys):  # type: ignore[attr-defined]
            old_model_name = self.renamed_models.get((app_label, model_name), model_name)  # type: ignore[attr-defined]
            old_options = self.from_state.models[app_label, old_model_name].options  # type: ignore[attr-defined]
            new_options = self.to_state.models[app_label, model_name].options  # type: ignore[attr-defined]
            old_entries = list(old_options.get(THROUGH_TRIGGERS, []))
            new_entries = list(new_options.get(THROUGH_TRIGGERS, []))
            for entry in old_entries:
                if entry not in new_entries:
                    self.add_operation(  # type: ignore[attr-defined]
                        app_label, RemoveThroughTrigger(model_name=model_name, name=entry.name)
                    )
            for entry in new_entries:
                if entry not in old_entries:
                    self._add_through_trigger(app_label, model_name, entry)
            old_rules = list(old_options.get("rules", []))
            new_rules = list(new_options.get("rules", []))
            if old_rules != new_rules:
                if old_rules:
                    self.add_operation(  # type: ignore[attr-defined]
                        app_label, ReverseBackfill(model_name=old_model_name)
                    )
                self.add_operation(  # type: ignore[attr-defined]
                    app_label,
                    BackfillRules(model_name=model_name, rules=new_rules, backfill_backwards=not old_rules),
                )

    def _sort_migrations(self) -> None:
        """dbrules' triggers read columns that other operations of the same
        migration may add or drop, and nothing depends on them: drop old
        triggers first, create new ones after every schema change, and
        backfill last (and, reversed, first of all: ReverseBackfill)."""
        super()._sort_migrations()  # type: ignore[misc]
        renamed = self.renamed_models  # type: ignore[attr-defined]
        for app_label, operations in self.generated_operations.items():  # type: ignore[attr-defined]
            buckets: dict[int, list[Operation]] = {-1: [], 0: [], 1: [], 2: [], 3: []}
            for op in operations:
                phase = _phase(op)
                if phase == 0:
                    op = _before_rename(op, renamed.get((app_label, op.model_name_lower)))
                buckets[phase].append(op)
            self.generated_operations[app_label] = [  # type: ignore[attr-defined]
                op for phase in sorted(buckets) for op in buckets[phase]
            ]


def _before_rename(op: Operation, old_name: Optional[str]) -> Operation:
    """A removal of a renamed model's trigger, moved ahead of the
    RenameModel: it must name the model as it is called there. (The
    autodetector names the new model, and puts the removal after the
    rename, where the trigger's SQL names a table that no longer exists.)"""
    from pgtrigger.migrations import RemoveTrigger

    if old_name is None or not isinstance(op, (RemoveTrigger, RemoveThroughTrigger)):
        return op
    moved = type(op)(model_name=old_name, name=op.name)
    moved._auto_deps = getattr(op, "_auto_deps", [])  # what add_operation() recorded
    return moved


def _phase(op: Operation) -> int:
    from pgtrigger.migrations import AddTrigger, RemoveTrigger

    if isinstance(op, RemoveThroughTrigger) or (
        isinstance(op, RemoveTrigger) and op.name.startswith("dbrules_")
    ):
        return 0
    if isinstance(op, AddThroughTrigger) or (
        isinstance(op, AddTrigger) and (op.trigger.name or "").startswith("dbrules_")
    ):
        return 2
    if isinstance(op, BackfillRules):
        return 3
    if isinstance(op, ReverseBackfill):
        return -1
    return 1


def _field_created(app_label: str, model_name: str, field: str) -> Any:
    if django.VERSION >= (5, 1):
        from django.db.migrations.autodetector import OperationDependency

        return OperationDependency(
            app_label, model_name, field, OperationDependency.Type.CREATE
        )
    return (app_label, model_name, field, True)


def keep_trigger_comments() -> None:
    """Altering the type of a column a trigger's ``WHEN`` or ``UPDATE OF``
    names (``max_length`` 100 -> 200) makes django-pgtrigger drop the trigger
    and recreate it from ``pg_get_triggerdef``, which carries no comment. The
    comment holds the hash pgtrigger, ``dbrules list`` and ``dbrules check``
    tell an installed trigger by: without it the trigger reads as outdated
    forever, and no migration brings it back. Put it back with the trigger."""
    import contextlib

    from pgtrigger.migrations import DatabaseSchemaEditorMixin

    original = DatabaseSchemaEditorMixin.temporarily_drop_trigger
    if getattr(original, "keeps_comment", False):
        return

    @contextlib.contextmanager
    def temporarily_drop_trigger(self: Any, trigger: str, table: str) -> Any:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT obj_description(oid, 'pg_trigger') FROM pg_trigger "
                "WHERE tgname = %s AND tgrelid = %s::regclass",
                [trigger, table],
            )
            row = cursor.fetchone()
        with original(self, trigger, table):
            yield
        if row and row[0] is not None:
            from dbrules.sqlrender import quote

            with self.connection.cursor() as cursor:
                cursor.execute(f"COMMENT ON TRIGGER {quote(trigger)} ON {quote(table)} IS %s", [row[0]])

    temporarily_drop_trigger.keeps_comment = True  # type: ignore[attr-defined]
    DatabaseSchemaEditorMixin.temporarily_drop_trigger = temporarily_drop_trigger  # type: ignore[method-assign]


def patch_autodetector() -> None:
    """Mix BackfillRules detection into the autodetector, the way pgtrigger
    mixes in its triggers. Django 5.2 insists both commands use one class."""
    current = makemigrations.MigrationAutodetector
    if not issubclass(current, RulesAutodetectorMixin):
        current = type("MigrationAutodetector", (RulesAutodetectorMixin, current), {})
    makemigrations.MigrationAutodetector = current
    migrate.MigrationAutodetector = current
    if hasattr(makemigrations.Command, "autodetector"):  # Django >= 5.2
        makemigrations.Command.autodetector = current
        migrate.Command.autodetector = current
