"""Runtime: read-time values of derived fields (the ``annotate()`` fallback)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator, Optional

from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.db.models import Expression, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

from dbrules.analysis import AggregatePlan, CopyPlan, Plan, RowPlan, analyze
from dbrules.core import rules_of

LIVE_SUFFIX = "_live"


def plans_of(model: type[models.Model], fields: Iterable[str] = ()) -> list[Plan]:
    """The plans of ``model``'s rules (restricted to ``fields``). A proxy
    model's are its concrete model's: they share one table."""
    model = model._meta.concrete_model if model._meta.proxy else model
    wanted = set(fields)
    rules = [r for r in rules_of(model) if not wanted or r.field in wanted]
    unknown = wanted - {r.field for r in rules}
    if unknown:
        raise ValueError(
            f"{model._meta.label} has no rule for {', '.join(sorted(unknown))}; "
            f"derived fields: {', '.join(r.field for r in rules_of(model)) or 'none'}."
        )
    return [analyze(model, rule) for rule in rules]


def child_aggregate(plan: AggregatePlan) -> Expression:
    """The rule's aggregate written from the child's side (``Count("pk",
    filter=Q(published=True))`` for ``Count("books", filter=Q(books__published=True))``),
    for queries grouped by the child's ForeignKey."""
    return plan.rule.expression.__class__(plan.value.name if plan.value else "pk", filter=plan.condition)


def live_expression(plan: Plan, *, standalone: bool = False) -> Expression:
    """The ORM expression whose value the stored column must equal.

    It is the rule's expression, with the empty case made explicit where the
    stored column cannot hold NULL. ``standalone`` gives a correlated subquery
    instead, which can be combined with aggregates over other relations
    without multiplying joined rows.
    """
    if isinstance(plan, AggregatePlan):
        if standalone:
            # Every child row, as the join of annotate(Count("books")) and the
            # triggers count them: not what a custom default manager shows.
            child = models.QuerySet(plan.child).filter(
                **{plan.fk.name: OuterRef(plan.parent_key.attname)}
            )
            expression: Expression = Subquery(
                child.order_by().values(plan.fk.name).annotate(v=child_aggregate(plan)).values("v"),
                output_field=plan.target,
            )
        else:
            expression = plan.rule.expression
        if plan.empty_value is not None:
            expression = Coalesce(expression, Value(plan.empty_value), output_field=plan.target)
        return expression
    if isinstance(plan, CopyPlan):
        if plan.empty_value is not None:
            return Coalesce(plan.rule.expression, Value(plan.empty_value), output_field=plan.target)
        return plan.rule.expression
    if isinstance(plan, RowPlan):
        return plan.rule.expression
    raise TypeError(plan)  # pragma: no cover


def annotate_live(
    queryset: models.QuerySet, *fields: str, suffix: str = LIVE_SUFFIX
) -> models.QuerySet:
    """Annotate ``queryset`` with the live value of its model's derived fields.

    ``annotate_live(Author.objects.all())`` adds ``num_books_live`` (and one
    ``<field>_live`` per rule), computed at read time from each rule's own
    expression: the fallback before triggers are installed, and the oracle the
    stored values are checked against. Pass field names to restrict it.
    """
    plans = plans_of(queryset.model, fields)
    relations = {plan.relation for plan in plans if isinstance(plan, AggregatePlan)}
    standalone = len(relations) > 1  # joins of two to-many relations multiply rows
    return queryset.annotate(
        **{plan.rule.field + suffix: live_expression(plan, standalone=standalone) for plan in plans}
    )


@contextmanager
def deferred(using: Optional[str] = None) -> Iterator[None]:
    """Defer dbrules' maintenance of aggregates to COMMIT for this block.

    Opens (or joins) a transaction. Statements inside it park their deltas;
    they are applied once, in primary-key order, when the transaction
    commits. Use it for transactions of several statements that touch the
    same hot parents, which can otherwise deadlock with each other. The
    trade-off: until commit, the stored aggregates inside this transaction do
    not include its own writes (use annotate_live() to read them).
    """
    alias = using or DEFAULT_DB_ALIAS
    with transaction.atomic(using=alias):
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT set_config('dbrules.deferred', 'on', true)")
        try:
            yield
        finally:
            if not connections[alias].needs_rollback:
                with connections[alias].cursor() as cursor:
                    cursor.execute("SELECT set_config('dbrules.deferred', 'off', true)")
