"""Bad declarations are system-check errors naming model, field and rule."""

from __future__ import annotations

from typing import Any

import django
import pytest
from django.core import checks
from django.core.exceptions import FieldError
from django.db import models
from django.db.models import Avg, Count, F, Max, Q, Sum, Value, Window
from django.db.models.functions import Cast, Concat, Lower, Now, Random, RowNumber
from django.test.utils import isolate_apps, override_settings

import dbrules
from dbrules.analysis import dependency_cycles, analyze
from dbrules.checks import check_rules, cycle_messages, messages_for
from tests.conftest import needs_generated_field


def errors_of(model: Any) -> list[checks.CheckMessage]:
    return messages_for(model)


def only_error(model: Any) -> checks.CheckMessage:
    errors = errors_of(model)
    assert len(errors) == 1, errors
    return errors[0]


@pytest.fixture
def app():
    with isolate_apps("tests.bookstore") as apps_registry:
        yield apps_registry


def define(name: str, fields: dict[str, Any], rules: list[Any], **meta: Any) -> Any:
    attrs = {"__module__": "tests.bookstore.models", **fields}
    attrs["Meta"] = type("Meta", (), {"app_label": "bookstore", "rules": rules, **meta})
    return type(name, (models.Model,), attrs)


def shop(parent_fields: dict[str, Any], rules: list[Any], child_fields: dict[str, Any] | None = None):
    parent = define("Shelf", {"name": models.CharField(max_length=20), **parent_fields}, rules)
    child = define(
        "Item",
        {
            "shelf": models.ForeignKey("Shelf", related_name="items", on_delete=models.CASCADE),
            "size": models.IntegerField(default=0),
            "label": models.CharField(max_length=20, default=""),
            "ratio": models.FloatField(default=0),
            "hidden": models.BooleanField(default=False),
            **(child_fields or {}),
        },
        [],
    )
    return parent, child


def test_a_valid_project_has_no_errors():
    assert check_rules() == []


def test_unknown_target_field(app):
    parent, _ = shop({}, [dbrules.Derived("missing", Count("items"))])
    error = only_error(parent)
    assert error.id == "dbrules.E003"
    assert "bookstore.Shelf.missing = Count(items)" in error.msg
    assert "no field 'missing'" in error.msg and error.hint


def test_unknown_relation(app):
    parent, _ = shop({"n": models.IntegerField(default=0)}, [dbrules.Derived("n", Count("things"))])
    error = only_error(parent)
    assert error.id == "dbrules.E004" and "'things'" in error.msg


def test_count_into_a_text_field(app):
    parent, _ = shop({"n": models.CharField(max_length=5)}, [dbrules.Derived("n", Count("items"))])
    error = only_error(parent)
    assert error.id == "dbrules.E006" and "IntegerField" in error.hint


def test_sum_of_text(app):
    parent, _ = shop({"n": models.IntegerField(default=0)}, [dbrules.Derived("n", Sum("items__label"))])
    assert only_error(parent).id == "dbrules.E006"


def test_sum_of_float_is_refused_because_it_drifts(app):
    parent, _ = shop({"n": models.FloatField(default=0)}, [dbrules.Derived("n", Sum("items__ratio"))])
    error = only_error(parent)
    assert error.id == "dbrules.E006" and "FloatField" in error.msg


def test_max_into_a_non_nullable_field(app):
    parent, _ = shop({"n": models.IntegerField(default=0)}, [dbrules.Derived("n", Max("items__size"))])
    error = only_error(parent)
    assert error.id == "dbrules.E006" and "null=True" in error.hint


def test_avg_is_refused(app):
    parent, _ = shop({"n": models.FloatField(null=True)}, [dbrules.Derived("n", Avg("items__size"))])
    error = only_error(parent)
    assert error.id == "dbrules.E005" and "Supported" in error.hint


def test_distinct_count_is_refused(app):
    parent, _ = shop(
        {"n": models.IntegerField(default=0)}, [dbrules.Derived("n", Count("items", distinct=True))]
    )
    assert only_error(parent).id == "dbrules.E005"


def test_filter_joining_beyond_the_child_row(app):
    parent, _ = shop(
        {"n": models.IntegerField(default=0)},
        [dbrules.Derived("n", Count("items", filter=Q(name="x")))],
    )
    error = only_error(parent)
    assert error.id == "dbrules.E007" and "items__" in error.hint


def test_filter_on_a_related_row_of_the_child(app):
    parent, _ = shop(
        {"n": models.IntegerField(default=0)},
        [dbrules.Derived("n", Count("items", filter=Q(items__shelf__name="x")))],
    )
    assert only_error(parent).id == "dbrules.E007"


def test_aggregate_over_a_forward_foreign_key(app):
    _, child = shop({}, [])
    child._meta.rules = [dbrules.Derived("size", Count("shelf"))]
    error = only_error(child)
    assert error.id == "dbrules.E005" and "F('fk__field')" in error.hint


def test_two_hops_of_aggregation_hint_to_chain(app):
    define("Room", {"n": models.IntegerField(default=0)}, [dbrules.Derived("n", Count("shelves__items"))])
    shelf = define(
        "Shelf",
        {"room": models.ForeignKey("Room", related_name="shelves", on_delete=models.CASCADE)},
        [],
    )
    define("Item", {"shelf": models.ForeignKey(shelf, related_name="items", on_delete=models.CASCADE)}, [])
    room = app.get_model("bookstore", "Room")
    error = only_error(room)
    assert error.id == "dbrules.E005" and "Chain two rules" in error.hint


def test_window_and_random_are_refused(app):
    _, child = shop({}, [])
    child._meta.rules = [
        dbrules.Derived("size", Window(RowNumber())),
        dbrules.Derived("label", Random()),
    ]
    errors = errors_of(child)
    assert [e.id for e in errors] == ["dbrules.E005", "dbrules.E005"]


def test_now_in_a_copy_is_refused(app):
    _, child = shop({}, [], {"stamp": models.DateTimeField(null=True)})
    child._meta.rules = [dbrules.Derived("stamp", Now())]
    assert only_error(child).id == "dbrules.E005"


def test_copy_into_a_too_short_charfield(app):
    parent, child = shop({}, [], {"shelf_name": models.CharField(max_length=5, default="")})
    child._meta.rules = [dbrules.Derived("shelf_name", F("shelf__name"))]
    error = only_error(child)
    assert error.id == "dbrules.E006" and "max_length >= 20" in error.hint


def test_copy_of_a_nullable_source_into_a_non_nullable_field(app):
    parent, child = shop(
        {"note": models.CharField(max_length=20, null=True)},
        [],
        {"shelf_note": models.CharField(max_length=20, default="")},
    )
    child._meta.rules = [dbrules.Derived("shelf_note", F("shelf__note"))]
    assert only_error(child).id == "dbrules.E006"


def test_not_a_derived(app):
    parent, _ = shop({}, ["num_items"])
    assert only_error(parent).id == "dbrules.E002"


def test_two_rules_for_one_field(app):
    parent, _ = shop(
        {"n": models.IntegerField(default=0)},
        [dbrules.Derived("n", Count("items")), dbrules.Derived("n", Count("items"))],
    )
    assert only_error(parent).id == "dbrules.E008"


def test_a_cycle_of_rules_is_named(app):
    a = define(
        "Alpha",
        {"x": models.IntegerField(default=0), "y": models.IntegerField(default=0)},
        [dbrules.Derived("x", F("y") + 1), dbrules.Derived("y", F("x") + 1)],
    )
    plans = [analyze(a, rule) for rule in a._meta.rules]
    cycles = dependency_cycles(plans)
    assert cycles and set(cycles[0]) == {"bookstore.Alpha.x", "bookstore.Alpha.y"}
    [message] = cycle_messages(plans)
    assert message.id == "dbrules.E009" and "bookstore.Alpha.x" in message.msg


def test_normalising_a_column_from_itself_is_not_a_cycle(app):
    a = define("Person", {"email": models.CharField(max_length=50)}, [dbrules.Derived("email", Lower("email"))])
    assert dependency_cycles([analyze(a, r) for r in a._meta.rules]) == []


@override_settings(INSTALLED_APPS=["tests.bookstore"])
def test_missing_apps_are_reported():
    ids = [e.id for e in check_rules()]
    assert ids.count("dbrules.E001") == 2


def test_mixed_deferral_in_one_group(app):
    from dbrules.checks import deferral_messages

    parent, _ = shop(
        {"n": models.IntegerField(default=0), "m": models.IntegerField(default=0)},
        [
            dbrules.Derived("n", Count("items"), deferred=True),
            dbrules.Derived("m", Count("items")),
        ],
    )
    messages = deferral_messages([analyze(parent, r) for r in parent._meta.rules])
    assert [m.id for m in messages] == ["dbrules.E010"]



def subclass(name: str, base: Any, fields: dict[str, Any], rules: list[Any], **meta: Any) -> Any:
    """A child of ``base``: a proxy with ``proxy=True``, else multi-table inheritance."""
    attrs = {"__module__": "tests.bookstore.models", **fields}
    attrs["Meta"] = type("Meta", (), {"app_label": "bookstore", "rules": rules, **meta})
    return type(name, (base,), attrs)


def test_rules_on_a_proxy_model_are_refused(app):
    parent, _ = shop({}, [])
    proxy = subclass("Showcase", parent, {}, [dbrules.Derived("name", Lower("name"))], proxy=True)
    error = only_error(proxy)
    assert error.id == "dbrules.E011" and "bookstore.Shelf's Meta.rules" in error.hint
    assert "bookstore.Showcase.name = Lower(F(name))" in error.msg


def test_columns_of_a_multi_table_parent_are_named(app):
    """A child model's triggers see its own table only: a rule that writes or
    computes from a column its parent's table stores is refused, with the
    copy that makes it work as the hint."""
    _, item = shop({}, [])
    writes = subclass("Gadget", item, {}, [dbrules.Derived("label", Lower("label"))])
    error = only_error(writes)
    assert error.id == "dbrules.E012" and "bookstore.Item's Meta.rules" in error.hint
    assert "the rule writes bookstore.Gadget.label" in error.msg

    computes = subclass(
        "Widget",
        item,
        {"key": models.CharField(max_length=20, default="")},
        [dbrules.Derived("key", Lower("label"))],
    )
    error = only_error(computes)
    assert error.id == "dbrules.E012" and 'F("label")' in error.hint

    counter = models.IntegerField
    bin_model = define(
        "Bin",
        {"total": counter(default=0), "n": counter(default=0), "m": counter(default=0)},
        [
            dbrules.Derived("total", Sum("parts__size")),
            dbrules.Derived("n", Count("parts", filter=Q(parts__hidden=True))),
            # The child's own column: fine.
            dbrules.Derived("m", Count("parts", filter=Q(parts__serial__gt=2))),
        ],
    )
    fk = models.ForeignKey("Bin", related_name="parts", on_delete=models.CASCADE)
    subclass("Part", item, {"bin": fk, "serial": counter(default=0)}, [])
    errors = errors_of(bin_model)
    assert [e.id for e in errors] == ["dbrules.E012", "dbrules.E012"]
    assert "aggregate reads bookstore.Part.size" in errors[0].msg and 'F("size")' in errors[0].hint
    assert "filter reads bookstore.Part.hidden" in errors[1].msg


def test_copies_follow_the_parent_links_of_inherited_columns(app):
    from dbrules.analysis import CopyPlan

    _, item = shop({}, [])
    text = models.CharField
    gadget = subclass(
        "Gadget",
        item,
        {"shelf_name": text(max_length=20, default=""), "label_copy": text(max_length=20, default="")},
        [dbrules.Derived("shelf_name", F("shelf__name")), dbrules.Derived("label_copy", F("label"))],
    )
    assert errors_of(gadget) == []
    shelf_name, label_copy = (analyze(gadget, r) for r in gadget._meta.rules)
    assert isinstance(label_copy, CopyPlan)
    assert [f.name for f in shelf_name.path] == ["item_ptr", "shelf"]
    assert [f.name for f in label_copy.path] == ["item_ptr"] and label_copy.source.name == "label"


def test_relations_inherited_from_a_multi_table_parent_are_named(app):
    """A relation whose ForeignKey points at the parent's table counts the
    parent's rows, which need not be the child's."""
    _, item = shop({}, [])
    define("Note", {"item": models.ForeignKey("Item", related_name="notes", on_delete=models.CASCADE)}, [])
    counter = models.IntegerField
    gadget = subclass("Gadget", item, {"n": counter(default=0)}, [dbrules.Derived("n", Count("notes"))])
    error = only_error(gadget)
    assert error.id == "dbrules.E012" and "bookstore.Note.item points at the table of bookstore.Item" in error.msg
    assert "Declare the rule on bookstore.Item" in error.hint


@needs_generated_field
def test_a_same_row_rule_over_a_generated_column_is_refused(app):
    generated = models.GeneratedField(
        expression=F("size") * 2, output_field=models.IntegerField(), db_persist=True
    )
    _, item = shop({}, [], {"double": generated, "plus_one": models.IntegerField(default=0)})
    item._meta.rules = [dbrules.Derived("plus_one", F("double") + 1)]
    error = only_error(item)
    assert error.id == "dbrules.E005" and "bookstore.Item.double is a GeneratedField" in error.msg
    assert "GeneratedField too" in error.hint


def test_decimals_that_would_be_rounded_are_refused(app):
    """A stored value with fewer decimal places than its source is rounded on
    every write, so it never equals annotate()'s: the check says so."""
    price = models.DecimalField(max_digits=8, decimal_places=2, default=0)
    money = models.DecimalField
    parent, _ = shop(
        {
            "total": money(max_digits=12, decimal_places=1, default=0),
            "whole": models.BigIntegerField(default=0),
            "top": money(max_digits=5, decimal_places=2, null=True),
            "fine": money(max_digits=14, decimal_places=2, default=0),
        },
        [
            dbrules.Derived("total", Sum("items__price")),
            dbrules.Derived("whole", Sum("items__price")),
            dbrules.Derived("top", Max("items__price")),
            dbrules.Derived("fine", Sum("items__price")),
        ],
        {"price": price},
    )
    errors = errors_of(parent)
    assert [e.id for e in errors] == ["dbrules.E006"] * 3, errors
    total, whole, top = errors
    assert "decimal_places=1, fewer than bookstore.Item.price's 2" in total.msg
    assert "decimal_places >= 2" in total.hint
    assert "BigIntegerField cannot hold the decimals" in whole.msg
    assert "3 digit(s) before the point, fewer than bookstore.Item.price's 6" in top.msg
    assert "max_digits >= 8" in top.hint


def test_a_decimal_copy_must_hold_its_source(app):
    parent, item = shop({"rate": models.DecimalField(max_digits=6, decimal_places=3, default=0)}, [])
    item.add_to_class("rate", models.DecimalField(max_digits=6, decimal_places=2, default=0))
    item._meta.rules = [dbrules.Derived("rate", F("shelf__rate"))]
    error = only_error(item)
    assert error.id == "dbrules.E006" and "a copy of bookstore.Shelf.rate" in error.msg


def test_rules_that_need_triggers_on_an_unmanaged_table_are_refused(app):
    """Migrations install the triggers and skip unmanaged models: refused on
    the parent, on a counted child and on a copy's source alike."""
    parent, child = shop({"n": models.IntegerField(default=0)}, [dbrules.Derived("n", Count("items"))])
    child._meta.managed = False
    error = only_error(parent)
    assert error.id == "dbrules.E013" and "bookstore.Item is unmanaged" in error.msg
    assert "--fake-initial" in error.hint
    child._meta.rules = [dbrules.Derived("label", F("shelf__name"))]
    child._meta.managed, parent._meta.managed = True, False
    assert only_error(child).id == "dbrules.E013"


@pytest.mark.skipif(django.VERSION < (5, 2), reason="CompositePrimaryKey arrived in Django 5.2")
def test_copies_and_same_row_rules_need_a_single_column_key(app):
    """Counts over rows with a composite primary key compile; copies and
    same-row rules on them, which find rows by one key column, are refused."""
    fields = {
        "pk": models.CompositePrimaryKey("shelf_id", "position"),
        "position": models.IntegerField(),
        "label_key": models.CharField(max_length=20, default=""),
    }
    parent, child = shop({"n": models.IntegerField(default=0)}, [dbrules.Derived("n", Count("items"))], fields)
    assert errors_of(parent) == []
    child._meta.rules = [dbrules.Derived("label", F("shelf__name")), dbrules.Derived("label_key", Lower("label"))]
    errors = errors_of(child)
    assert [e.id for e in errors] == ["dbrules.E014"] * 2, errors
    assert "bookstore.Item has a composite primary key (shelf, position)" in errors[0].msg
    assert "UniqueConstraint" in errors[0].hint


def test_an_expression_django_cannot_compile_is_refused(app):
    """A Concat of text and a number compiles in the trigger but not in
    annotate(): every drift check would fail. Refused, with what to set."""
    parent, item = shop({}, [])
    mixed = Concat(Lower("label"), Value("/"), "size")
    try:
        str(item._default_manager.annotate(mixed=mixed).query)
    except FieldError:
        pass
    else:
        pytest.skip("this Django casts every part of a Concat to text: annotate() compiles it")
    item._meta.rules = [dbrules.Derived("label", mixed)]
    error = only_error(item)
    assert error.id == "dbrules.E006" and "mixed types: CharField, IntegerField" in error.msg
    assert "output_field" in error.hint
    item._meta.rules = [dbrules.Derived("label", Concat(Lower("label"), Value("/"), Cast("size", models.CharField())))]
    assert errors_of(item) == []


def test_rules_on_a_schema_per_tenant_app_are_refused():
    """django-tenants creates a TENANT_APPS app's tables in every tenant's
    schema; dbrules' triggers name one schema."""
    assert not [e for e in check_rules() if e.id == "dbrules.E015"]
    with override_settings(TENANT_APPS=["tests.bookstore"], SHARED_APPS=["django.contrib.contenttypes"]):
        errors = [e for e in check_rules() if e.id == "dbrules.E015"]
    assert errors and all("is in TENANT_APPS" in e.msg for e in errors), errors
    assert "DBRULES_SCHEMA = 'public'" in errors[0].msg and "shared apps" in errors[0].hint


def test_a_foreign_key_the_triggers_look_rows_up_by_wants_an_index(app):
    """Without an index every lookup by the key reads the whole table: a
    warning names the key, its column and the rules, once per key."""
    from dbrules.checks import index_messages

    unindexed = {"shelf": models.ForeignKey("Shelf", related_name="items", on_delete=models.CASCADE, db_index=False)}
    parent, child = shop(
        {"n": models.IntegerField(default=0), "top": models.IntegerField(null=True)},
        [dbrules.Derived("n", Count("items")), dbrules.Derived("top", Max("items__size"))],
        child_fields={**unindexed, "shelf_name": models.CharField(max_length=20, default="")},
    )
    copy = dbrules.Derived("shelf_name", F("shelf__name"))
    plans = [analyze(parent, r) for r in parent._meta.rules] + [analyze(child, copy)]
    [warning] = index_messages(plans)
    assert warning.id == "dbrules.W001" and warning.level == checks.WARNING and warning.obj is child
    assert "bookstore.Item.shelf (column shelf_id) has no index" in warning.msg
    for rule in ("bookstore.Shelf.n = Count(items)", "bookstore.Shelf.top = Max(items__size)",
                 "bookstore.Item.shelf_name = F(shelf__name)"):
        assert rule in warning.msg
    assert "add an index that starts with shelf_id" in warning.hint


def test_an_index_that_starts_with_the_key_serves_it(app):
    from dbrules.checks import index_messages

    unindexed = {"shelf": models.ForeignKey("Shelf", related_name="items", on_delete=models.CASCADE, db_index=False)}
    indexes = [models.Index(fields=["shelf", "size"], name="item_shelf_size")]
    parent = define("Shelf", {"name": models.CharField(max_length=20), "n": models.IntegerField(default=0)},
                    [dbrules.Derived("n", Count("items"))])
    define("Item", {**unindexed, "size": models.IntegerField(default=0)}, [], indexes=indexes)
    assert index_messages([analyze(parent, r) for r in parent._meta.rules]) == []
