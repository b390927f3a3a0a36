"""``manage.py dbrules list|sql|check|repair``: see docs/commands/."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections, router

from dbrules import installation, maintenance, registry
from dbrules.analysis import Plan, tables_of
from dbrules.triggers import CompiledTrigger
from dbrules.core import describe_expression


class Command(BaseCommand):
    help = "Inspect, verify and repair dbrules' derived columns."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="{list,sql,check,repair}")
        for name, text in (
            ("list", "every rule, its triggers and their status in the database"),
            ("sql", "the SQL each rule installs"),
            ("check", "count rows whose stored value differs from the rule's expression"),
            ("repair", "recompute drifted values, in batches"),
        ):
            p = sub.add_parser(name, help=text, description=text)
            p.add_argument("labels", nargs="*", metavar="app_label[.Model[.field]]")
            p.add_argument("--database", default=DEFAULT_DB_ALIAS, help="database alias (default: default)")
            if name in {"list", "check", "repair"}:
                p.add_argument("--json", action="store_true", help="machine-readable output")
            if name == "check":
                p.add_argument("--sample", type=int, default=5, help="example primary keys per rule")
            if name == "repair":
                p.add_argument("--dry-run", action="store_true", help="count what would change")
                p.add_argument("--batch-size", type=int, default=10_000, help="parents per transaction")

    def handle(self, *args: Any, **options: Any) -> None:
        using = options["database"]
        if using not in connections:
            raise CommandError(f"dbrules: unknown database {using!r}; known: {', '.join(connections)}.")
        if options["action"] != "sql" and connections[using].vendor != "postgresql":
            raise CommandError(
                f"dbrules: database {using!r} is {connections[using].vendor}, not PostgreSQL; "
                "pass --database with a PostgreSQL alias."
            )
        plans = select_plans(options["labels"])
        if options["action"] in {"check", "repair"}:
            plans = self._routed_to(plans, using, options)
        getattr(self, "handle_" + options["action"])(plans, using, options)

    def _routed_to(self, plans: list[Plan], using: str, options: dict[str, Any]) -> list[Plan]:
        """The plans whose tables DATABASE_ROUTERS migrate on ``using``; the
        others are named, with the databases that hold them."""
        kept = [p for p in plans if all(router.allow_migrate_model(using, m) for m in tables_of(p))]
        elsewhere = [p for p in plans if p not in kept]
        if elsewhere and not options.get("json"):
            aliases = sorted(
                {a for p in elsewhere for a in connections if all(router.allow_migrate_model(a, m) for m in tables_of(p))}
            )
            where = f"--database {' / '.join(aliases)}" if aliases else "no database"
            self.stderr.write(
                f"dbrules: skipped {len(elsewhere)} rule(s) whose tables DATABASE_ROUTERS keep off "
                f"database {using!r} (e.g. {elsewhere[0].label}); run with {where}."
            )
        return kept

    # -- list ---------------------------------------------------------------

    def handle_list(self, plans: list[Plan], using: str, options: dict[str, Any]) -> None:
        compiled = registry.compiled()
        rows = []
        for plan in plans:
            triggers = [installation.status_of(c, using) for c in triggers_of(plan, compiled)]
            rows.append(
                {
                    "rule": plan.label,
                    "model": plan.parent._meta.label,
                    "field": plan.target.name,
                    "expression": describe_expression(plan.rule.expression),
                    "triggers": [
                        {"table": t.table, "trigger": t.pgid, "status": t.status, "enabled": t.enabled}
                        for t in triggers
                    ],
                }
            )
        generated = [
            {"model": f.model._meta.label, "field": f.name, "status": "generated column"}
            for f in registry.generated_fields()
            if not options["labels"] or _matches(options["labels"], f.model, f.name)
        ]
        orphans = [] if options["labels"] else installation.orphans(compiled, using)
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "rules": rows,
                        "generated_fields": generated,
                        "orphaned": [{"table": o.table, "trigger": o.pgid} for o in orphans],
                    },
                    indent=2,
                )
            )
            return
        for row in rows:
            self.stdout.write(row["rule"])
            for t in row["triggers"]:
                state = t["status"] if t["enabled"] is not False else f"{t['status']}, DISABLED"
                self.stdout.write(f"    {state:10} {t['table']}  {t['trigger']}")
        for g in generated:
            self.stdout.write(f"{g['model']}.{g['field']}  (GeneratedField: PostgreSQL keeps it exact)")
        for o in orphans:
            self.stdout.write(f"orphaned   {o.table}  {o.pgid}  (no rule compiles to it)")
        problems = sum(t["status"] in {"missing", "outdated"} for r in rows for t in r["triggers"])
        if problems or orphans:
            self.stdout.write(
                f"{problems} trigger(s) missing or outdated, {len(orphans)} orphaned: "
                f"run `manage.py migrate --database {using}` (and `makemigrations` first if the rules, "
                "or the Django version that compiles them, changed)."
            )

    # -- sql ----------------------------------------------------------------

    def handle_sql(self, plans: list[Plan], using: str, options: dict[str, Any]) -> None:
        compiled = registry.compiled()
        seen: set[str] = set()
        for plan in plans:
            for item in triggers_of(plan, compiled):
                pgid = item.trigger.get_pgid(item.model)
                if pgid in seen:
                    continue
                seen.add(pgid)
                self.stdout.write(f"-- {item.trigger.name} on {item.trigger.table_of(item.model)}")
                self.stdout.write(f"-- implements: {item.trigger.comment}")
                self.stdout.write(item.trigger.compile(item.model).install_sql.strip())
                self.stdout.write("")

    # -- check --------------------------------------------------------------

    def handle_check(self, plans: list[Plan], using: str, options: dict[str, Any]) -> None:
        self._require_installed(plans, using)
        results: list[dict[str, Any]] = []
        for plan in plans:
            [drift] = maintenance.find_drift(
                plan.parent, [plan.target.name], using=using, sample=options["sample"]
            )
            results.append({"rule": plan.label, "rows": drift.rows, "sample": drift.sample})
        drifted = [r for r in results if r["rows"]]
        if options["json"]:
            self.stdout.write(json.dumps({"database": using, "drift": results}, indent=2, default=str))
        else:
            for r in results:
                mark = "DRIFT" if r["rows"] else "ok   "
                sample = f"  e.g. pk {', '.join(map(str, r['sample']))}" if r["rows"] else ""
                self.stdout.write(f"{mark} {r['rows']:8} {r['rule']}{sample}")
            total = sum(r["rows"] for r in drifted)
            if drifted:
                self.stdout.write(f"{total} row(s) drifted in {len(drifted)} rule(s): run `manage.py dbrules repair`.")
            else:
                self.stdout.write(f"no drift in {len(results)} rule(s).")
        if drifted:
            sys.exit(1)

    # -- repair -------------------------------------------------------------

    def handle_repair(self, plans: list[Plan], using: str, options: dict[str, Any]) -> None:
        self._require_installed(plans, using)
        by_model: dict[Any, list[str]] = {}
        for plan in plans:
            by_model.setdefault(plan.parent, []).append(plan.target.name)
        show_progress = not options["json"] and self.stdout.isatty()
        summary = []
        for model, fields in by_model.items():
            def progress(done: int, total: int, label: str = model._meta.label) -> None:
                if show_progress:
                    filled = int(30 * done / total)
                    self.stdout.write(
                        f"\r{label:30} [{'#' * filled}{' ' * (30 - filled)}] {done}/{total} batches",
                        ending="",
                    )
                    self.stdout.flush()

            changed = maintenance.repair_in_batches(
                model,
                fields,
                using=using,
                batch_size=options["batch_size"],
                dry_run=options["dry_run"],
                progress=progress,
            )
            if show_progress:
                self.stdout.write("")
            summary.append({"model": model._meta.label, "fields": fields, "changed": changed})
        if options["json"]:
            self.stdout.write(json.dumps({"dry_run": options["dry_run"], "repaired": summary}, indent=2))
            return
        verb = "would change" if options["dry_run"] else "changed"
        for s in summary:
            self.stdout.write(f"{s['model']}: {verb} {s['changed']} value(s) in {', '.join(s['fields'])}")

    def _require_installed(self, plans: list[Plan], using: str) -> None:
        compiled = registry.compiled()
        bad = [
            status
            for plan in plans
            for status in (installation.status_of(c, using) for c in triggers_of(plan, compiled))
            if status.status in {installation.MISSING, installation.OUTDATED} or status.enabled is False
        ]
        if bad:
            first = bad[0]
            state = "disabled" if first.status == installation.INSTALLED else first.status
            raise CommandError(
                f"dbrules: {len(bad)} trigger(s) are missing, outdated or disabled in database "
                f"{using!r} (e.g. {first.pgid} on {first.table} is {state}); values written meanwhile "
                f"may be wrong. Run `manage.py migrate --database {using}` (after `makemigrations` if the "
                "rules, or the Django version that compiles them, changed), then `manage.py dbrules repair`."
            )


def triggers_of(plan: Plan, compiled: tuple[CompiledTrigger, ...]) -> list[CompiledTrigger]:
    return [item for item in compiled if plan in item.plans]


def _matches(labels: list[str], model: Any, field: str) -> bool:
    for label in labels:
        parts = label.split(".")
        if parts[0] != model._meta.app_label:
            continue
        if len(parts) > 1 and parts[1].lower() != model._meta.model_name:
            continue
        if len(parts) > 2 and parts[2] != field:
            continue
        return True
    return False


def select_plans(labels: list[str]) -> list[Plan]:
    """The project's valid plans, narrowed to ``app_label[.Model[.field]]`` labels."""
    from django.apps import apps
    from django.core.exceptions import FieldDoesNotExist

    for label in labels:
        parts = label.split(".")
        if len(parts) > 3:
            raise CommandError(f"dbrules: {label!r} is not app_label[.Model[.field]].")
        try:
            apps.get_app_config(parts[0])
            if len(parts) > 1:
                model = apps.get_model(parts[0], parts[1])
                if len(parts) > 2:
                    model._meta.get_field(parts[2])
        except (LookupError, FieldDoesNotExist):
            raise CommandError(
                f"dbrules: unknown label {label!r}; run `manage.py dbrules list` to see the rules."
            ) from None
    invalid = [e for m in registry.analyzed() for _, e in m.errors]
    if invalid:
        raise CommandError(
            f"dbrules: {len(invalid)} rule(s) do not pass the system checks; run `manage.py check`."
        )
    plans = [p for p in registry.plans() if not labels or _matches(labels, p.parent, p.target.name)]
    if labels and not plans:
        raise CommandError(f"dbrules: no rules match {' '.join(labels)}; run `manage.py dbrules list`.")
    return plans
