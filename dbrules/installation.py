"""Installation status: is every trigger the rules compile to in the database,
and up to date? Which dbrules triggers are there that no rule compiles to?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from pgtrigger import core as pgcore
from django.db import connections

from dbrules.triggers import CompiledTrigger

INSTALLED, OUTDATED, MISSING, ORPHANED, IGNORED = (
    "installed",
    "outdated",
    "missing",
    "orphaned",
    "ignored",
)
_PGTRIGGER_STATUS = {
    pgcore.INSTALLED: INSTALLED,
    pgcore.OUTDATED: OUTDATED,
    pgcore.UNINSTALLED: MISSING,
    pgcore.UNALLOWED: IGNORED,
}


@dataclass(frozen=True)
class TriggerStatus:
    table: str
    pgid: str
    status: str
    enabled: Optional[bool]
    compiled: Optional[CompiledTrigger] = None


def status_of(item: CompiledTrigger, using: str) -> TriggerStatus:
    status, enabled = item.trigger.get_installation_status(item.model, database=using)
    return TriggerStatus(
        table=item.trigger.table_of(item.model),
        pgid=item.trigger.get_pgid(item.model),
        status=_PGTRIGGER_STATUS.get(status, str(status).lower()),
        enabled=enabled,
        compiled=item,
    )


def orphans(compiled: tuple[CompiledTrigger, ...], using: str) -> list[TriggerStatus]:
    """dbrules triggers in the database that no current rule compiles to."""
    known = {item.trigger.get_pgid(item.model) for item in compiled}
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT tgrelid::regclass::text, tgname, tgenabled <> 'D' FROM pg_trigger "
            "WHERE tgname LIKE 'pgtrigger\\_dbrules\\_%%' AND NOT tgisinternal ORDER BY 1, 2"
        )
        rows = cursor.fetchall()
    return [TriggerStatus(t, name, ORPHANED, enabled) for t, name, enabled in rows if name not in known]
