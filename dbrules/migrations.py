"""Installation: the migration operation that records rules and backfills.

Triggers reach migrations through django-pgtrigger (``AddTrigger`` /
``RemoveTrigger``). This module adds :class:`BackfillRules`, written by
``makemigrations`` whenever a model's ``Meta.rules`` change, which records the
rules in the migration state and recomputes the derived columns -- forwards
with the new rules, backwards with the old ones.
"""

from __future__ import annotations

from typing import Any, Sequence

from django.core.management.commands import makemigrations, migrate
from django.db import router
from django.db.migrations.operations.base import Operation

from dbrules.core import Derived


class BackfillRules(Operation):
    """Set ``Meta.rules`` of a model in the migration state and recompute its
    derived columns in the database."""

    reversible = True
    reduces_to_sql = False

    def __init__(self, model_name: str, rules: Sequence[Derived]) -> None:
        self.model_name = model_name
        self.rules = list(rules)

    @property
    def model_name_lower(self) -> str:
        return self.model_name.lower()

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        return (
            "dbrules.migrations.BackfillRules",
            [],
            {"model_name": self.model_name, "rules": self.rules},
        )

    def state_forwards(self, app_label: str, state: Any) -> None:
        model_state = state.models[app_label, self.model_name_lower]
        if self.rules:
            model_state.options["rules"] = list(self.rules)
        else:
            model_state.options.pop("rules", None)
        state.reload_model(app_label, self.model_name_lower, delay=True)

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        self._backfill(app_label, schema_editor, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        self._backfill(app_label, schema_editor, to_state)

    def _backfill(self, app_label: str, schema_editor: Any, state: Any) -> None:
        from dbrules.analysis import AggregatePlan, analyze
        from dbrules.maintenance import repair
        from dbrules.sqlrender import table

        connection = schema_editor.connection
        model = state.apps.get_model(app_label, self.model_name)
        if connection.vendor != "postgresql" or not router.allow_migrate_model(
            connection.alias, model
        ):
            return
        rules = state.models[app_label, self.model_name_lower].options.get("rules", [])
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

    def describe(self) -> str:
        return f"Backfill derived fields of {self.model_name}"

    @property
    def migration_name_fragment(self) -> str:
        return f"{self.model_name_lower}_rules"


class RulesAutodetectorMixin:
    """Writes a BackfillRules operation for every model whose rules changed."""

    def generate_added_constraints(self) -> None:  # runs after triggers were added
        super().generate_added_constraints()  # type: ignore[misc]
        for app_label, model_name in sorted(self.kept_model_keys):  # type: ignore[attr-defined]
            old_model_name = self.renamed_models.get((app_label, model_name), model_name)  # type: ignore[attr-defined]
            old_rules = self.from_state.models[app_label, old_model_name].options.get("rules", [])  # type: ignore[attr-defined]
            new_rules = self.to_state.models[app_label, model_name].options.get("rules", [])  # type: ignore[attr-defined]
            if list(old_rules) != list(new_rules):
                self.add_operation(  # type: ignore[attr-defined]
                    app_label, BackfillRules(model_name=model_name, rules=list(new_rules))
                )


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
