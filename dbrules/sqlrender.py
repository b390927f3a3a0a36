"""SQL text helpers: identifier quoting, literals, filter predicates, templates.

Templates are ``.sql`` files in ``migrations_templates/`` with ``{{ name }}``
placeholders. They are plain SQL so a DBA can review them as they are.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connections
from django.db.models import CharField, Func, Model, Q, TextField, Value
from django.db.models.functions import Cast, Coalesce, ConcatPair
from django.db.models.sql.query import Query
from psycopg import sql as pgsql

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def templates_dir() -> Path:
    """Inside the wheel the templates ship as ``dbrules/migrations_templates``;
    in a source checkout they sit beside the package."""
    here = Path(__file__).resolve().parent
    packaged = here / "migrations_templates"
    return packaged if packaged.is_dir() else here.parent / "migrations_templates"


@functools.lru_cache(maxsize=None)
def load_template(name: str) -> str:
    return (templates_dir() / name).read_text()


def render(name: str, **values: Any) -> str:
    """Fill a template; every placeholder must be given (a typo fails loudly)."""
    template = load_template(name)
    missing = {m for m in _PLACEHOLDER.findall(template) if m not in values}
    if missing:
        raise KeyError(f"template {name} needs {sorted(missing)}")
    # Template header comments (lines starting with '--' before the first
    # statement) document the template, not the generated SQL.
    body = "\n".join(
        line for line in template.splitlines() if not line.startswith("--!")
    ).strip()
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), body)


def without_blank_lines(text: str) -> str:
    """``text`` less the lines an empty placeholder left blank."""
    return "\n".join(line for line in text.splitlines() if line.strip())


def quote(name: str) -> str:
    """Quote an identifier; a ``"schema"."table"`` db_table stays as written."""
    if name.startswith('"') and name.endswith('"'):
        return name
    return pgsql.Identifier(name).as_string(None)


def schema() -> str:
    """The schema of tables whose ``db_table`` names none (``DBRULES_SCHEMA``).

    Trigger functions run with ``search_path = pg_catalog, pg_temp``, so every
    table they touch is written schema-qualified.
    """
    from django.conf import settings

    return getattr(settings, "DBRULES_SCHEMA", "public")


def table(model: type[Model]) -> str:
    """The model's table, always schema-qualified."""
    name = model._meta.db_table
    if name.startswith('"'):
        return name  # '"schema"."table"' written by the user
    return f"{quote(schema())}.{quote(name)}"


def column_type(field: Any) -> str:
    """``field``'s column type as Django's PostgreSQL backend writes it
    (``varchar(100)``, ``bigint``); every database dbrules compiles for is
    PostgreSQL, so the default connection's spelling is everyone's."""
    return field.db_type(connections["default"])


def literal(value: Any) -> str:
    return pgsql.Literal(value).as_string(None)


def render_condition(model: type[Model], condition: Q, alias: str) -> str:
    """Compile a Q on ``model``'s own columns to SQL that reads ``alias.column``."""
    query = Query(model, alias_cols=True)
    where = query.build_where(condition)
    connection = connections["default"]
    compiler = query.get_compiler(connection=connection)
    try:
        text, params = where.as_sql(compiler, connection)
    except EmptyResultSet:
        return "FALSE"
    except FullResultSet:
        return "TRUE"
    if not text:
        return "TRUE"
    # Django writes columns as "table"."column"; point them at the alias.
    text = text.replace(f"{quote(model._meta.db_table)}.", f"{alias}.")
    return text % tuple(literal(p) for p in params)


class _PipesConcatPair(ConcatPair):
    """``ConcatPair`` as Django 5.0 and later write it for PostgreSQL: ``||``
    over COALESCE, text casts only for other types. Django 4.2 wrote
    ``CONCAT(a::text, b::text)``, the same value. One spelling on every
    supported Django keeps a rule's trigger the same across a Django
    upgrade: no migration that reinstalls it, and no trigger that
    ``dbrules check`` reports outdated meanwhile."""

    def as_postgresql(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        pair = self.copy()
        pair.set_source_expressions(
            [
                Coalesce(part if _is_text(part) else Cast(part, TextField()), Value(""))
                for part in self.get_source_expressions()
            ]
        )
        return Func.as_sql(pair, compiler, connection, template="(%(expressions)s)", arg_joiner=" || ", **extra_context)


def _is_text(part: Any) -> bool:
    """Whether a part of a concatenation is text already. A nested pair is:
    Django 5 gives it the Concat's output_field, while Django 4.2 resolves
    it from its own parts, which fails for mixed types."""
    if isinstance(part, ConcatPair):
        return True
    return isinstance(part.output_field, (CharField, TextField))


def _same_on_every_django(expression: Any) -> Any:
    """``expression`` with every ConcatPair compiled as ``_PipesConcatPair``
    (nodes copied only where something below them changed)."""
    sources = expression.get_source_expressions() if hasattr(expression, "get_source_expressions") else []
    stable = [part if part is None else _same_on_every_django(part) for part in sources]
    changed = any(new is not old for new, old in zip(stable, sources))
    if not changed and type(expression) is not ConcatPair:
        return expression
    result = copy.copy(expression)
    if type(expression) is ConcatPair:
        result.__class__ = _PipesConcatPair
    if changed:
        result.set_source_expressions(stable)
    return result


def render_expression(model: type[Model], expression: Any, alias: str) -> str:
    """Compile an expression over ``model``'s own row to SQL reading ``alias.column``."""
    query = Query(model, alias_cols=True)
    resolved = _same_on_every_django(expression.resolve_expression(query, allow_joins=False, reuse=None))
    connection = connections["default"]
    compiler = query.get_compiler(connection=connection)
    text, params = compiler.compile(resolved)
    text = text.replace(f"{quote(model._meta.db_table)}.", f"{alias}.")
    return text % tuple(literal(p) for p in params)
