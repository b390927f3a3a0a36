"""GeneratedFields as the inputs of rules, in a throwaway project: a sum
and a filtered count over a child's generated column, and a copy of a
parent's, stay exact on every write path, since AFTER triggers and other
rows' lookups see the computed value. `dbrules list` names them beside the
rules. (A same-row rule cannot read one: PostgreSQL computes it after the
BEFORE trigger; that is a check error, in test_checks.py.)"""

from __future__ import annotations

import json

import pytest

from tests.conftest import (
    assert_project_exact,
    migrate_and_run,
    needs_generated_field,
    run_project,
    throwaway_project,
)

pytestmark = needs_generated_field

DATABASE = "dbrules_generated"

MODELS = '''
from django.db import models
from django.db.models import Count, F, Q, Sum
import dbrules

class Order(models.Model):
    discount = models.IntegerField(default=0)
    rate = models.GeneratedField(expression=100 - F("discount"), output_field=models.IntegerField(), db_persist=True)
    total = models.BigIntegerField(default=0)
    num_bulky = models.IntegerField(default=0)
    class Meta:
        rules = [
            dbrules.Derived("total", Sum("lines__amount")),
            dbrules.Derived("num_bulky", Count("lines", filter=Q(lines__amount__gte=100))),
        ]

class Line(models.Model):
    order = models.ForeignKey(Order, related_name="lines", on_delete=models.CASCADE)
    quantity = models.IntegerField(default=1)
    price = models.IntegerField(default=10)
    amount = models.GeneratedField(expression=F("quantity") * F("price"), output_field=models.IntegerField(), db_persist=True)
    order_rate = models.IntegerField(default=0)
    class Meta:
        rules = [dbrules.Derived("order_rate", F("order__rate"))]
'''

SCRIPT = '''
import django; django.setup()
from django.db import connection
from shop.models import Order, Line
a, b = Order.objects.create(), Order.objects.create(discount=5)
Line.objects.bulk_create([Line(order=a if i % 2 else b, quantity=i, price=20) for i in range(1, 9)])
Line.objects.filter(quantity__lte=2).update(price=60)  # amounts cross the filter's 100
Line.objects.filter(quantity=8).delete()
Order.objects.filter(pk=a.pk).update(discount=30)  # the copied rate changes
with connection.cursor() as cur:
    cur.execute("UPDATE shop_line SET quantity = quantity + 1 WHERE order_id = %s", [b.pk])
a.refresh_from_db(); b.refresh_from_db()
print(a.total, a.num_bulky, b.total, b.num_bulky)
print(sorted(set(Line.objects.values_list("order_rate", flat=True))))
'''


@pytest.fixture
def project(tmp_path, django_db_blocker):
    with django_db_blocker.unblock(), throwaway_project(tmp_path, DATABASE, MODELS):
        yield tmp_path


def test_generated_columns_feed_sums_filters_and_copies(project):
    # Order a: quantities 1, 3, 5, 7 (price 60 for 1, else 20): 60 + 60 +
    # 100 + 140; two of them reach 100. Order b: 2, 4, 6 (8 deleted), then
    # each one more: 3*60, 5*20, 7*20 = 180 + 100 + 140, all three bulky.
    assert migrate_and_run(project, SCRIPT) == ["360", "2", "420", "3", "[70,", "95]"]
    assert_project_exact(project, rules=3)
    listed = run_project(project, "-m", "django", "dbrules", "list", "--json")
    generated = json.loads(listed.stdout)["generated_fields"]
    assert {(g["model"], g["field"]) for g in generated} == {("shop.Order", "rate"), ("shop.Line", "amount")}
