"""Declaration: ``Derived`` and the ``Meta.rules`` model option."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.migrations import state
from django.db.models import options
from django.db.models.expressions import BaseExpression, Combinable
from django.utils.deconstruct import deconstructible

# ``Meta.rules`` must be accepted before any model class is built, so this
# runs when ``dbrules`` is imported (models import it to declare rules).
# Historical models carry their rules, so a migration can backfill with the
# expression that was current at that point of the history; and the triggers
# on their auto-created ManyToMany tables, which Django's migration state has
# no model for.
THROUGH_TRIGGERS = "dbrules_through_triggers"
for _name in ("rules", THROUGH_TRIGGERS):
    if _name not in options.DEFAULT_NAMES:
        options.DEFAULT_NAMES = (*options.DEFAULT_NAMES, _name)
    if _name not in state.DEFAULT_NAMES:
        state.DEFAULT_NAMES = (*state.DEFAULT_NAMES, _name)


@deconstructible(path="dbrules.Derived")
class Derived:
    """Declare that the stored column ``field`` always equals ``expression``.

    ``expression`` is an ordinary Django expression, exactly what you would
    pass to ``QuerySet.annotate()``::

        dbrules.Derived("num_books", Count("books"))
        dbrules.Derived("author_name", F("author__name"))
    """

    def __init__(self, field: str, expression: Any, *, deferred: bool = False) -> None:
        self.field = field
        self.expression = expression
        self.deferred = deferred

    if TYPE_CHECKING:
        # Added by @deconstructible: how migrations write the rule.
        def deconstruct(self) -> tuple[str, tuple[Any, ...], dict[str, Any]]: ...

    def __repr__(self) -> str:
        return f"Derived({self.field!r}, {describe_expression(self.expression)})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Derived) and self.deconstruct() == other.deconstruct()

    def __hash__(self) -> int:
        return hash((self.field, repr(self.expression), self.deferred))

    def label(self, model: Any) -> str:
        """``app.Model.field = Expression``: how the rule is named in errors, SQL and docs."""
        return f"{model._meta.label}.{self.field} = {describe_expression(self.expression)}"


def rules_of(model: Any) -> list[Derived]:
    """The rules a model declares in ``Meta.rules`` (empty when none)."""
    return list(getattr(model._meta, "rules", None) or [])


def describe_expression(expression: Any) -> str:
    """A compact, stable text for an expression: ``Count(books, filter=Q(published=True))``."""
    from django.db.models import F, Q, Value
    from django.db.models.aggregates import Aggregate

    if isinstance(expression, F):
        return f"F({expression.name})"
    if isinstance(expression, Q):
        parts = [
            describe_expression(child) if isinstance(child, Q) else f"{child[0]}={child[1]!r}"
            for child in expression.children
        ]
        text = f" {expression.connector} ".join(parts)
        return f"~Q({text})" if expression.negated else f"Q({text})"
    if isinstance(expression, Value):
        return repr(expression.value)
    if isinstance(expression, Aggregate):
        args = [
            e.name if isinstance(e, F) else describe_expression(e)
            for e in expression.get_source_expressions()[:1]
        ]
        if expression.distinct:
            args.append("distinct=True")
        if expression.filter is not None:
            args.append(f"filter={describe_expression(expression.filter)}")
        return f"{expression.__class__.__name__}({', '.join(args)})"
    if isinstance(expression, (BaseExpression, Combinable)) and hasattr(
        expression, "get_source_expressions"
    ):
        inner = ", ".join(describe_expression(e) for e in expression.get_source_expressions())
        return f"{expression.__class__.__name__}({inner})"
    return repr(expression)
