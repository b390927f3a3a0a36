"""Analysis: resolve a rule's expression against the model graph.

A rule is turned into a *plan*: plain data naming the tables, columns, join
and filter that the SQL compiler needs. Anything the compiler cannot keep
exact raises :class:`RuleError`, which the system checks report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

from django.core.exceptions import FieldDoesNotExist, FieldError
from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.models import F, Q, Value
from django.db.models.aggregates import Aggregate

from dbrules.core import Derived, describe_expression

LOOKUP_SEP = "__"

SUPPORTED_FORMS = (
    "Count/Sum/Min/Max over a reverse ForeignKey or a ManyToMany relation (optionally with "
    "filter=Q(...) on the child's own columns); F('fk__field') copied along ForeignKeys; "
    "deterministic expressions over the same row (Lower, Concat, arithmetic, Case/When)"
)

# Functions whose value changes between calls: a stored copy of them could
# never equal a later annotate().
NONDETERMINISTIC = {"Random", "Now", "UUID4", "Uuid4", "RawSQL"}

INTEGER_FIELDS = (models.IntegerField, models.BigIntegerField, models.SmallIntegerField)


class RuleError(Exception):
    """A rule the compiler refuses, with the system-check id and a hint."""

    def __init__(self, id: str, msg: str, hint: str = "") -> None:
        super().__init__(msg)
        self.id = id
        self.msg = msg
        self.hint = hint


@dataclass(frozen=True)
class AggregatePlan:
    """``parent.target = AGG(child.value) over child.fk = parent.key [filter]``."""

    rule: Derived
    parent: type[models.Model]
    target: models.Field
    child: type[models.Model]
    fk: models.ForeignKey
    function: str  # "count" | "sum" | "min" | "max"
    value: Optional[models.Field]  # None: count(*)
    condition: Optional[Q]  # relative to the child row
    relation: str  # the relation name used in the expression ("books")

    @property
    def parent_key(self) -> models.Field:
        return self.fk.target_field

    @property
    def label(self) -> str:
        return self.rule.label(self.parent)

    @property
    def empty_value(self) -> Any:
        """What the stored column holds when no child row matches.

        ``Count`` of nothing is 0. ``Sum`` of nothing is SQL NULL; a NOT NULL
        target stores 0 instead (and the read-time fallback coalesces to 0).
        """
        if self.function == "count":
            return 0
        if self.function == "sum" and not self.target.null:
            return 0
        return None


@dataclass(frozen=True)
class CopyPlan:
    """``model.target = F("fk__...__field")``: a value copied along ForeignKeys.

    ``path`` is the chain of forward ForeignKeys from ``model``; ``source`` the
    copied field on the last related model.
    """

    rule: Derived
    parent: type[models.Model]  # the model that holds the copy
    target: models.Field
    path: tuple[models.ForeignKey, ...]
    source: models.Field

    @property
    def label(self) -> str:
        return self.rule.label(self.parent)

    @property
    def relation(self) -> str:
        return self.rule.expression.name

    @property
    def empty_value(self) -> Any:
        """What the copy holds when a ForeignKey on the path is NULL: the
        field's default, a literal ``db_default`` (Django 5.0) included."""
        if self.target.null:
            return None
        db_default = getattr(self.target, "db_default", models.NOT_PROVIDED)
        if db_default is models.NOT_PROVIDED:
            return self.target.get_default()
        if isinstance(db_default, Value):
            return db_default.value
        if not hasattr(db_default, "resolve_expression"):
            return db_default  # Django keeps a literal as given
        # A default the database computes (Now()) is no value to store for
        # "no source": as with no default at all.
        return "" if self.target.empty_strings_allowed else None


@dataclass(frozen=True)
class RowPlan:
    """``model.target = <expression over the same row>`` (Lower, Concat, Case...)."""

    rule: Derived
    parent: type[models.Model]
    target: models.Field
    columns: tuple[models.Field, ...]  # the row's fields the expression reads

    @property
    def label(self) -> str:
        return self.rule.label(self.parent)

    relation = ""


Plan = Union[AggregatePlan, CopyPlan, RowPlan]


def tables_of(plan: Plan) -> list[type[models.Model]]:
    """The models whose tables the plan's triggers go on."""
    if isinstance(plan, AggregatePlan):
        return [plan.parent, plan.child]
    if isinstance(plan, CopyPlan):
        return [plan.parent, *(fk.related_model for fk in plan.path)]
    return [plan.parent]


@dataclass
class ModelRules:
    """All valid plans of one model, and the errors of its invalid rules."""

    model: type[models.Model]
    plans: list[Plan] = field(default_factory=list)
    errors: list[tuple[Derived, RuleError]] = field(default_factory=list)


def analyze(model: type[models.Model], rule: Any) -> Plan:
    """Resolve ``rule`` (declared on ``model``) into a plan, or raise RuleError."""
    if not isinstance(rule, Derived):
        raise RuleError(
            "dbrules.E002",
            f"{model._meta.label}: Meta.rules contains {rule!r}, which is not a dbrules.Derived.",
            'Declare rules as dbrules.Derived("field", expression).',
        )
    if model._meta.proxy:
        concrete = model._meta.concrete_model._meta.label
        raise RuleError(
            "dbrules.E011",
            f"{rule.label(model)}: {model._meta.label} is a proxy of {concrete}; its triggers "
            f"would maintain every row of {concrete}'s table, not only the proxy's.",
            f"Declare the rule in {concrete}'s Meta.rules.",
        )
    target = _target_field(model, rule)
    expression = rule.expression
    plan: Plan
    if isinstance(expression, Aggregate):
        plan = _analyze_aggregate(model, rule, target, expression)
    elif isinstance(expression, F):
        if LOOKUP_SEP in expression.name or _is_inherited_column(model, expression.name):
            plan = _analyze_copy(model, rule, target, expression)
        else:
            plan = _analyze_row(model, rule, target, expression)
    elif hasattr(expression, "resolve_expression") and not isinstance(expression, Q):
        plan = _analyze_row(model, rule, target, expression)
    else:
        raise RuleError(
            "dbrules.E005",
            f"{rule.label(model)}: {type(expression).__name__} expressions are not supported.",
            f"Supported: {SUPPORTED_FORMS}.",
        )
    _check_managed(model, rule, plan)
    _check_row_key(model, rule, plan)
    return plan


def _check_row_key(model: type[models.Model], rule: Derived, plan: Plan) -> None:
    """Copies and same-row rules name the rows they note, check and repair by
    the model's primary key column: a composite key (Django 5.2's
    CompositePrimaryKey) has none. Aggregates over such a model's rows do
    not need one."""
    if isinstance(plan, AggregatePlan) or model._meta.pk.column is not None:
        return
    columns = ", ".join(f.name for f in getattr(model._meta.pk, "fields", ()))
    raise RuleError(
        "dbrules.E014",
        f"{rule.label(model)}: {model._meta.label} has a composite primary key ({columns}); "
        "the triggers and repair of copies and same-row rules find rows by a single-column key.",
        f"Give {model._meta.label} a single-column primary key and keep ({columns}) unique with "
        "a UniqueConstraint, or annotate() the expression at read time. Counts, sums, minimums "
        f"and maximums over {model._meta.label}'s rows work with a composite key.",
    )


def _check_managed(model: type[models.Model], rule: Derived, plan: Plan) -> None:
    """Every table the rule's triggers go on must be one Django migrates:
    they are installed by migrations, which skip unmanaged models."""
    for table_model in tables_of(plan):
        if not table_model._meta.managed:
            raise RuleError(
                "dbrules.E013",
                f"{rule.label(model)}: {table_model._meta.label} is unmanaged (Meta.managed = False); "
                "the rule's triggers go on its table, and Django's migrations, which install "
                "them, never touch an unmanaged table.",
                f"Make {table_model._meta.label} managed (for a table that exists already, "
                "`migrate --fake-initial` records its CreateModel), or drop the rule and "
                "annotate() its expression at read time.",
            )


def analyze_model(model: type[models.Model]) -> ModelRules:
    from dbrules.core import rules_of

    result = ModelRules(model)
    seen: dict[str, Derived] = {}
    for rule in rules_of(model):
        try:
            plan = analyze(model, rule)
        except RuleError as error:
            result.errors.append((rule, error))
            continue
        if rule.field in seen:
            result.errors.append(
                (
                    rule,
                    RuleError(
                        "dbrules.E008",
                        f"{rule.label(model)}: {model._meta.label}.{rule.field} already has a "
                        f"rule ({seen[rule.field]!r}).",
                        "Declare one rule per derived field.",
                    ),
                )
            )
            continue
        seen[rule.field] = rule
        result.plans.append(plan)
    return result


def _stored_by(model: type[models.Model], field: Any) -> type[models.Model]:
    """The model whose table stores ``field``: ``model`` itself, or the
    multi-table parent it inherits ``field`` from."""
    return field.model._meta.concrete_model


def _inherits(model: type[models.Model], field: Any) -> bool:
    """``field`` is a column of a multi-table parent's table, not ``model``'s."""
    return _stored_by(model, field) is not model._meta.concrete_model


def _is_inherited_column(model: type[models.Model], name: str) -> bool:
    try:
        field = model._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return getattr(field, "concrete", False) and _inherits(model, field)


def _inherited_column_error(
    model: type[models.Model],
    rule: Derived,
    holder: type[models.Model],
    field: Any,
    reads: str,
    hint: str,
) -> RuleError:
    """E012: ``holder`` inherits ``field`` from a multi-table parent, whose
    table, not ``holder``'s, has the column."""
    return RuleError(
        "dbrules.E012",
        f"{rule.label(model)}: {reads} {holder._meta.label}.{field.name}, which is stored in the "
        f"table of its parent {_stored_by(holder, field)._meta.label} (multi-table inheritance); "
        f"a trigger on {holder._meta.label}'s table cannot see it.",
        hint,
    )


def _target_field(model: type[models.Model], rule: Derived) -> models.Field:
    try:
        target = model._meta.get_field(rule.field)
    except FieldDoesNotExist:
        raise RuleError(
            "dbrules.E003",
            f"{rule.label(model)}: {model._meta.label} has no field {rule.field!r}.",
            "Add the field to the model, or name an existing concrete field.",
        ) from None
    if not getattr(target, "concrete", False) or target.many_to_many or target.primary_key:
        raise RuleError(
            "dbrules.E003",
            f"{rule.label(model)}: {model._meta.label}.{rule.field} is not a stored column "
            "dbrules can maintain.",
            "The target must be a concrete, non-primary-key field with a column.",
        )
    if getattr(target, "generated", False):
        raise RuleError(
            "dbrules.E003",
            f"{rule.label(model)}: {model._meta.label}.{rule.field} is a GeneratedField; "
            "PostgreSQL already keeps it exact.",
            "Remove the rule; dbrules lists generated fields with the rules anyway.",
        )
    if _inherits(model, target):
        raise _inherited_column_error(
            model,
            rule,
            model,
            target,
            "the rule writes",
            f"Declare the rule in {_stored_by(model, target)._meta.label}'s Meta.rules.",
        )
    return target


def _analyze_aggregate(
    model: type[models.Model], rule: Derived, target: models.Field, aggregate: Aggregate
) -> AggregatePlan:
    function = aggregate.__class__.__name__.lower()
    if function not in {"count", "sum", "min", "max"}:
        raise RuleError(
            "dbrules.E005",
            f"{rule.label(model)}: {aggregate.__class__.__name__} cannot be kept exact by "
            "incremental maintenance.",
            f"Supported: {SUPPORTED_FORMS}.",
        )
    if aggregate.distinct:
        raise RuleError(
            "dbrules.E005",
            f"{rule.label(model)}: distinct=True cannot be kept exact by deltas.",
            "Drop distinct=True (a reverse ForeignKey never repeats a child), or keep a "
            "separate model of the distinct values and count that.",
        )
    sources = aggregate.get_source_expressions()
    source = sources[0] if sources else None
    if not isinstance(source, F):
        raise RuleError(
            "dbrules.E005",
            f"{rule.label(model)}: the aggregate must name a relation or a relation's field "
            f"(got {describe_expression(source)}).",
            'Write Count("books") or Sum("books__pages").',
        )
    relation_name, _, rest = source.name.partition(LOOKUP_SEP)
    try:
        relation = model._meta.get_field(relation_name)
    except FieldDoesNotExist:
        raise RuleError(
            "dbrules.E004",
            f"{rule.label(model)}: {model._meta.label} has no relation {relation_name!r}.",
            "Name a reverse ForeignKey (its related_name) of this model.",
        ) from None
    if relation.many_to_many:
        child, fk = _m2m_through(model, rule, relation)
        _check_relation_table(model, rule, relation_name, fk)
        if rest and rest != "pk" and rest != relation.related_model._meta.pk.name:
            raise RuleError(
                "dbrules.E005",
                f"{rule.label(model)}: {source.name!r} reads a column across a ManyToMany "
                "relation; only counting the related rows is supported.",
                f'Count the relation (Count("{relation_name}")), or aggregate a column of an '
                "explicit through model through its reverse ForeignKey.",
            )
        if function != "count":
            raise RuleError(
                "dbrules.E005",
                f"{rule.label(model)}: {aggregate.__class__.__name__} over a ManyToMany relation "
                "is not supported.",
                f'Count("{relation_name}") is; for sums, aggregate over an explicit through model.',
            )
        if aggregate.filter is not None:
            raise RuleError(
                "dbrules.E007",
                f"{rule.label(model)}: a filter on a ManyToMany count joins beyond the through row.",
                "Use an explicit through model and count its rows with a filter on its own "
                "columns (a reverse ForeignKey).",
            )
        _check_target_type(model, rule, target, function, None)
        return AggregatePlan(rule, model, target, child, fk, function, None, None, relation_name)
    if not (relation.one_to_many and relation.auto_created):
        kind = "a forward ForeignKey" if relation.many_to_one else type(relation).__name__
        raise RuleError(
            "dbrules.E005",
            f"{rule.label(model)}: {relation_name!r} is {kind}; aggregates run over a "
            "reverse ForeignKey or a ManyToMany relation.",
            "For a value of a related row use F('fk__field'); aggregates need "
            "the many side (a related_name).",
        )
    child = relation.related_model
    fk = relation.field
    _check_relation_table(model, rule, relation_name, fk)
    value: Optional[models.Field] = None
    if rest:
        rest_field = child._meta._forward_fields_map.get(rest) or next(
            (f for f in child._meta.get_fields() if f.name == rest), None
        )
        if LOOKUP_SEP in rest or (
            rest_field is not None and (rest_field.one_to_many or rest_field.many_to_many)
        ):
            raise RuleError(
                "dbrules.E005",
                f"{rule.label(model)}: {source.name!r} aggregates across two relations.",
                "Chain two rules: derive the value on the intermediate model first, "
                "then aggregate that derived column.",
            )
        try:
            value = child._meta.get_field(rest)
        except FieldDoesNotExist:
            raise RuleError(
                "dbrules.E004",
                f"{rule.label(model)}: {child._meta.label} has no field {rest!r}.",
                f"Name a column of {child._meta.label}.",
            ) from None
        if not value.concrete or value.many_to_many:
            raise RuleError(
                "dbrules.E005",
                f"{rule.label(model)}: {child._meta.label}.{rest} is not a column.",
                f"Aggregate a concrete field of {child._meta.label}.",
            )
        if _inherits(child, value):
            raise _inherited_column_error(
                model,
                rule,
                child,
                value,
                "the aggregate reads",
                f"Copy it onto {child._meta.label} with a rule of its own "
                f'(Derived("{rest}_copy", F("{rest}"))) and aggregate the copy.',
            )
        if value.primary_key and function == "count":
            value = None  # count(pk) == count(*)
    if function in {"sum"} and value is None:
        raise RuleError(
            "dbrules.E005",
            f"{rule.label(model)}: Sum needs a field to add up.",
            f'Write Sum("{relation_name}__<field>").',
        )
    _check_target_type(model, rule, target, function, value)
    condition = _relative_condition(model, rule, relation_name, aggregate.filter, child)
    return AggregatePlan(rule, model, target, child, fk, function, value, condition, relation_name)


def _stored_type(field: models.Field) -> models.Field:
    """The field whose type a column holds: a GeneratedField's output_field."""
    return field.output_field if getattr(field, "generated", False) else field


def _check_decimal_fits(
    model: type[models.Model],
    rule: Derived,
    target: models.Field,
    source: models.Field,
    what: str,
    integer_digits: bool,
) -> None:
    """A stored number must hold every value of ``source`` exactly: a
    DecimalField with fewer decimal places rounds (and an integer or float
    column rounds any decimal), so the stored value would never equal
    annotate()'s. ``integer_digits``: it must also hold as many digits before
    the point (a copy or an extreme; a sum's width is the user's to size, and
    a sum that outgrows it fails its statement rather than drift)."""
    if not isinstance(source, models.DecimalField):
        return
    label = f"{source.model._meta.label}.{source.name}"
    places = source.decimal_places
    if not isinstance(target, models.DecimalField):
        problem = f"{type(target).__name__} cannot hold the decimals of {label} (decimal_places={places})"
        hint = f"Store it in a DecimalField with decimal_places >= {places}."
    elif target.decimal_places < places:
        problem = (
            f"{model._meta.label}.{rule.field} has decimal_places={target.decimal_places}, fewer than "
            f"{label}'s {places}: stored values would be rounded"
        )
        hint = f"Give {rule.field} decimal_places >= {places}."
    elif integer_digits and target.max_digits - target.decimal_places < source.max_digits - places:
        digits = source.max_digits - places
        problem = (
            f"{model._meta.label}.{rule.field} holds {target.max_digits - target.decimal_places} digit(s) "
            f"before the point, fewer than {label}'s {digits}: writes of large values would fail"
        )
        hint = f"Give {rule.field} max_digits >= {target.decimal_places + digits}."
    else:
        return
    raise RuleError("dbrules.E006", f"{rule.label(model)}: {what} {label}: {problem}.", hint)


def _check_relation_table(
    model: type[models.Model], rule: Derived, relation_name: str, fk: models.ForeignKey
) -> None:
    """The relation's ForeignKey must point at ``model``'s own table: one
    inherited from a multi-table parent points at the parent's, whose rows
    need not be ``model``'s."""
    if not _inherits(model, fk.target_field):
        return
    owner = _stored_by(model, fk.target_field)
    raise RuleError(
        "dbrules.E012",
        f"{rule.label(model)}: {relation_name!r} is inherited from {owner._meta.label}: "
        f"{fk.model._meta.label}.{fk.name} points at the table of {owner._meta.label} "
        f"(multi-table inheritance), not at {model._meta.label}'s.",
        f"Declare the rule on {owner._meta.label}: {model._meta.label} inherits the derived "
        "field with the others.",
    )


def _check_target_type(
    model: type[models.Model],
    rule: Derived,
    target: models.Field,
    function: str,
    value: Optional[models.Field],
) -> None:
    numeric = (*INTEGER_FIELDS, models.DecimalField, models.FloatField)
    value = _stored_type(value) if value is not None else None
    if function == "count" and not isinstance(target, INTEGER_FIELDS):
        raise RuleError(
            "dbrules.E006",
            f"{rule.label(model)}: a count is stored in {type(target).__name__}.",
            "Store counts in an IntegerField or BigIntegerField.",
        )
    if function == "sum":
        if not isinstance(value, numeric):
            raise RuleError(
                "dbrules.E006",
                f"{rule.label(model)}: Sum of {type(value).__name__} is not a number.",
                "Sum a numeric field (IntegerField, DecimalField, FloatField...).",
            )
        if not isinstance(target, numeric):
            raise RuleError(
                "dbrules.E006",
                f"{rule.label(model)}: a sum is stored in {type(target).__name__}.",
                "Store sums in a numeric field at least as wide as the summed one.",
            )
        if isinstance(value, models.FloatField):
            raise RuleError(
                "dbrules.E006",
                f"{rule.label(model)}: a running Sum of a FloatField drifts from a fresh sum "
                "(floating-point addition is not associative).",
                "Sum an IntegerField or DecimalField.",
            )
        _check_decimal_fits(model, rule, target, value, "a sum of", integer_digits=False)
    if function in {"min", "max"} and value is not None:
        if target.get_internal_type() != value.get_internal_type() and not (
            isinstance(target, numeric) and isinstance(value, numeric)
        ):
            raise RuleError(
                "dbrules.E006",
                f"{rule.label(model)}: {function.capitalize()} of {type(value).__name__} is stored "
                f"in {type(target).__name__}.",
                "Store the extreme in a field of the same type as the aggregated field.",
            )
    if function in {"min", "max"} and value is not None and isinstance(target, numeric):
        _check_decimal_fits(model, rule, target, value, f"the {function} of", integer_digits=True)
    if function in {"min", "max"} and value is None:
        raise RuleError(
            "dbrules.E005",
            f"{rule.label(model)}: {function.capitalize()} needs a field.",
            f'Write {function.capitalize()}("<relation>__<field>").',
        )
    if function in {"min", "max"} and not target.null:
        raise RuleError(
            "dbrules.E006",
            f"{rule.label(model)}: {function.capitalize()} of no rows is NULL, but "
            f"{model._meta.label}.{rule.field} is not nullable.",
            "Declare the field with null=True.",
        )


def _relative_condition(
    model: type[models.Model],
    rule: Derived,
    relation_name: str,
    condition: Optional[Q],
    child: type[models.Model],
) -> Optional[Q]:
    """Rewrite ``Q(books__published=True)`` (parent-relative) to ``Q(published=True)``."""
    if condition is None:
        return None
    prefix = relation_name + LOOKUP_SEP

    def strip(name: str) -> str:
        if not name.startswith(prefix):
            raise RuleError(
                "dbrules.E007",
                f"{rule.label(model)}: the filter refers to {name!r}, which is not a column of "
                f"{child._meta.label} reached through {relation_name!r}.",
                f"Filter on the child's own columns: Q({prefix}<field>=...).",
            )
        relative = name[len(prefix) :]
        column = relative.split(LOOKUP_SEP)[0]
        if _is_inherited_column(child, column):
            raise _inherited_column_error(
                model,
                rule,
                child,
                child._meta.get_field(column),
                "the filter reads",
                f"Copy it onto {child._meta.label} with a rule of its own "
                f'(Derived("{column}_copy", F("{column}"))) and filter on the copy.',
            )
        return relative

    def rewrite(node: Any) -> Any:
        if isinstance(node, Q):
            clone = Q()
            clone.connector = node.connector
            clone.negated = node.negated
            clone.children = [rewrite(child_node) for child_node in node.children]
            return clone
        lookup, value = node
        if isinstance(value, F):
            value = F(strip(value.name))
        elif hasattr(value, "resolve_expression"):
            raise RuleError(
                "dbrules.E007",
                f"{rule.label(model)}: the filter compares with an expression "
                f"({describe_expression(value)}).",
                "Compare child columns with constants or F('<relation>__<field>').",
            )
        return (strip(lookup), value)

    relative = rewrite(condition)
    # Compile once now so an uncompilable filter is a check error, not a
    # migration failure.
    from dbrules.sqlrender import render_condition

    try:
        render_condition(child, relative, "r")
    except (FieldError, FieldDoesNotExist, ValueError, TypeError) as error:
        raise RuleError(
            "dbrules.E007",
            f"{rule.label(model)}: the filter cannot be compiled to SQL on "
            f"{child._meta.label}: {error}",
            "Filter on the child's own columns with plain lookups (exact, in, gt, isnull...).",
        ) from None
    return relative


def _m2m_through(
    model: type[models.Model], rule: Derived, relation: Any
) -> tuple[type[models.Model], models.ForeignKey]:
    """The through model of an M2M relation and its ForeignKey to ``model``."""
    if isinstance(relation, models.ManyToManyField):
        through = relation.remote_field.through
        fk_name = relation.m2m_field_name()
        symmetrical = relation.remote_field.symmetrical and relation.related_model == model
    else:  # ManyToManyRel: the reverse side
        through = relation.through
        fk_name = relation.field.m2m_reverse_field_name()
        symmetrical = False
    if symmetrical:
        raise RuleError(
            "dbrules.E005",
            f"{rule.label(model)}: a symmetrical ManyToMany to the same model stores each "
            "link twice; its count cannot be kept by deltas on one side.",
            "Declare the field with symmetrical=False.",
        )
    return through, through._meta.get_field(fk_name)


def _analyze_copy(
    model: type[models.Model], rule: Derived, target: models.Field, expression: F
) -> CopyPlan:
    names = expression.name.split(LOOKUP_SEP)
    path: list[models.ForeignKey] = []
    current = model
    for name in names[:-1]:
        try:
            field = current._meta.get_field(name)
        except FieldDoesNotExist:
            raise RuleError(
                "dbrules.E004",
                f"{rule.label(model)}: {current._meta.label} has no relation {name!r}.",
                "Name a ForeignKey (or OneToOneField) of the model.",
            ) from None
        if not (field.many_to_one or (field.one_to_one and field.concrete)):
            raise RuleError(
                "dbrules.E005",
                f"{rule.label(model)}: {name!r} on {current._meta.label} is not a forward "
                "ForeignKey; a copy must follow single-valued relations.",
                "To derive from the many side, aggregate it: Count/Sum/Min/Max.",
            )
        current = _through_parent_links(current, field, path)
        path.append(field)
        current = field.related_model
    try:
        source = current._meta.get_field(names[-1])
    except FieldDoesNotExist:
        raise RuleError(
            "dbrules.E004",
            f"{rule.label(model)}: {current._meta.label} has no field {names[-1]!r}.",
            f"Name a column of {current._meta.label}.",
        ) from None
    if not getattr(source, "concrete", False) or source.many_to_many or source.one_to_many:
        raise RuleError(
            "dbrules.E005",
            f"{rule.label(model)}: {current._meta.label}.{names[-1]} is not a column.",
            f"Copy a concrete field of {current._meta.label}.",
        )
    _through_parent_links(current, source, path)
    _check_copy_type(model, rule, target, source)
    plan = CopyPlan(rule=rule, parent=model, target=target, path=tuple(path), source=source)
    if not target.null and plan.empty_value is None and any(fk.null for fk in path):
        raise RuleError(
            "dbrules.E006",
            f"{rule.label(model)}: a NULL ForeignKey on the path gives NULL, but "
            f"{model._meta.label}.{rule.field} is not nullable and has no default.",
            "Declare the field with null=True, or give it a default.",
        )
    if not target.null and source.null:
        raise RuleError(
            "dbrules.E006",
            f"{rule.label(model)}: {source.model._meta.label}.{source.name} may be NULL, but "
            f"{model._meta.label}.{rule.field} is not nullable.",
            "Declare the copy with null=True.",
        )
    return plan


def _through_parent_links(
    current: type[models.Model], field: Any, path: list[models.ForeignKey]
) -> type[models.Model]:
    """Extend ``path`` with the parent links from ``current`` to the
    multi-table parent whose table stores ``field``, and return that parent.

    The ORM joins those tables silently (``F("author__name")`` on a child of
    the model that declares ``author``); the triggers follow the same links
    as hops of the copy, so a change of the parent's row reaches the copy.
    """
    owner = _stored_by(current, field)
    current = current._meta.concrete_model
    while current is not owner:
        link = current._meta.get_ancestor_link(owner)
        path.append(link)
        current = link.related_model
    return current


def _check_copy_type(
    model: type[models.Model], rule: Derived, target: models.Field, source: models.Field
) -> None:
    source_type = _stored_type(source.target_field if source.is_relation else source)
    if target.get_internal_type() != source_type.get_internal_type() and not (
        isinstance(target, INTEGER_FIELDS + (models.AutoField,))
        and isinstance(source_type, INTEGER_FIELDS + (models.AutoField,))
        or isinstance(target, (models.CharField, models.TextField))
        and isinstance(source_type, (models.CharField, models.TextField))
    ):
        raise RuleError(
            "dbrules.E006",
            f"{rule.label(model)}: copies {type(source_type).__name__} into "
            f"{type(target).__name__}.",
            "Copy into a field of the same type as the source.",
        )
    _check_decimal_fits(model, rule, target, source_type, "a copy of", integer_digits=True)
    source_length = getattr(source_type, "max_length", None)
    target_length = getattr(target, "max_length", None)
    if isinstance(target, models.CharField) and target_length is not None and (
        source_length is None or source_length > target_length
    ):
        raise RuleError(
            "dbrules.E006",
            f"{rule.label(model)}: {model._meta.label}.{rule.field} has max_length="
            f"{target_length}, shorter than its source "
            f"({'unbounded' if source_length is None else f'max_length={source_length}'}); "
            "copies would be cut or fail.",
            f"Give {rule.field} max_length >= {source_length or 'the source length'} "
            "(or make it a TextField).",
        )


def _analyze_row(
    model: type[models.Model], rule: Derived, target: models.Field, expression: Any
) -> RowPlan:
    from django.db.models.sql.query import Query

    def walk(node: Any) -> None:
        name = type(node).__name__
        if name in NONDETERMINISTIC or getattr(node, "contains_over_clause", False) is True:
            raise RuleError(
                "dbrules.E005",
                f"{rule.label(model)}: {name} is not deterministic over the row (or is a "
                "window function), so no stored value can equal a later annotate().",
                "Use deterministic functions of the row's own columns.",
            )
        if getattr(node, "contains_aggregate", False) is True or isinstance(node, Aggregate):
            raise RuleError(
                "dbrules.E005",
                f"{rule.label(model)}: aggregates cannot be nested in a row expression.",
                "Derive the aggregate in a rule of its own, then combine the stored columns.",
            )
        if isinstance(node, F) and _is_inherited_column(model, node.name):
            raise _inherited_column_error(
                model,
                rule,
                model,
                model._meta.get_field(node.name),
                "the expression reads",
                f"Copy it onto {model._meta.label} first "
                f'(Derived("{node.name}_copy", F("{node.name}"))) and derive from the copy, '
                f"or declare the rule on {_stored_by(model, model._meta.get_field(node.name))._meta.label}.",
            )
        if name in {"Subquery", "Exists", "OuterRef", "ResolvedOuterRef"}:
            raise RuleError(
                "dbrules.E005",
                f"{rule.label(model)}: subqueries are not supported in rules.",
                f"Supported: {SUPPORTED_FORMS}.",
            )
        for child in getattr(node, "get_source_expressions", lambda: [])():
            if child is not None:
                walk(child)

    walk(expression)
    query = Query(model, alias_cols=True)
    try:
        resolved = expression.resolve_expression(query, allow_joins=False, reuse=None)
    except (FieldError, FieldDoesNotExist) as error:
        raise RuleError(
            "dbrules.E004",
            f"{rule.label(model)}: the expression does not resolve on {model._meta.label} "
            f"without joins: {error}",
            "Refer to the row's own columns; copy related values with F('fk__field').",
        ) from None
    if getattr(resolved, "contains_over_clause", False):
        raise RuleError(
            "dbrules.E005",
            f"{rule.label(model)}: window functions are not supported.",
            f"Supported: {SUPPORTED_FORMS}.",
        )
    try:
        # As annotate() compiles it, type included: the read-time value every
        # check compares with.
        resolved.output_field  # noqa: B018
        query.get_compiler(connection=connections[DEFAULT_DB_ALIAS]).compile(resolved)
    except FieldError as error:
        raise RuleError(
            "dbrules.E006",
            f"{rule.label(model)}: Django cannot compile the expression: {error}",
            "Give the expression (or the part that mixes types) an output_field, or Cast() "
            "the column that differs.",
        ) from None
    columns = tuple(
        dict.fromkeys(col.target for col in _columns_of(resolved) if col.target.model is model)
    )
    generated = [column.name for column in columns if getattr(column, "generated", False)]
    if generated:
        raise RuleError(
            "dbrules.E005",
            f"{rule.label(model)}: {model._meta.label}.{generated[0]} is a GeneratedField, which "
            "PostgreSQL computes after the BEFORE trigger that computes this rule has run.",
            f"Derive {rule.field} from the columns {generated[0]} is computed from, or declare "
            f"{rule.field} as a GeneratedField too.",
        )
    return RowPlan(rule=rule, parent=model, target=target, columns=columns)


def condition_columns(model: type[models.Model], condition: Q) -> set[str]:
    """The columns of ``model`` that a filter on its own rows reads."""
    from django.db.models.sql.query import Query

    return {col.target.column for col in _columns_of(Query(model).build_where(condition))}


def _columns_of(expression: Any) -> list[Any]:
    from django.db.models.expressions import Col

    if isinstance(expression, Col):
        return [expression]
    found = []
    for child in expression.get_source_expressions():
        if child is not None:
            found.extend(_columns_of(child))
    return found


def dependency_cycles(plans: list[Plan]) -> list[list[str]]:
    """Cycles among rules: a derived column that (through other rules) feeds itself."""
    reads: dict[str, set[str]] = {}
    for plan in plans:
        key = f"{plan.parent._meta.label}.{plan.target.name}"
        sources: set[str] = set()
        if isinstance(plan, AggregatePlan):
            for f in (plan.value, plan.fk):
                if f is not None:
                    sources.add(f"{plan.child._meta.label}.{f.name}")
        elif isinstance(plan, CopyPlan):
            sources.add(f"{plan.source.model._meta.label}.{plan.source.name}")
            sources.update(f"{fk.model._meta.label}.{fk.name}" for fk in plan.path)
        else:
            sources.update(f"{c.model._meta.label}.{c.name}" for c in plan.columns)
            sources.discard(key)  # normalising a column from itself is fine
        reads[key] = sources
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(reads.get(node, ())):
            if nxt not in reads:
                continue
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                if sorted(cycle[:-1]) not in [sorted(c[:-1]) for c in cycles]:
                    cycles.append(cycle)
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(reads):
        if node not in state:
            visit(node)
    return cycles
