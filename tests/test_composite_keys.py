"""Rows with a composite primary key (Django 5.2's CompositePrimaryKey),
counted, summed and maximised on their parent, in a throwaway project: the
aggregates' triggers group by the ForeignKey and never name the child's own
key, so every write path stays exact. (Copies and same-row rules on such a
model are refused by dbrules.E014, tests/test_checks.py.)"""

from __future__ import annotations

import django
import pytest

from tests.conftest import assert_project_exact, migrate_and_run, throwaway_project

pytestmark = pytest.mark.skipif(django.VERSION < (5, 2), reason="CompositePrimaryKey arrived in Django 5.2")

DATABASE = "dbrules_composite_keys"

MODELS = '''
from django.db import models
from django.db.models import Count, Max, Sum
import dbrules

class Order(models.Model):
    customer = models.CharField(max_length=50)
    num_lines = models.IntegerField(default=0)
    total = models.IntegerField(default=0)
    biggest = models.IntegerField(null=True)
    class Meta:
        rules = [
            dbrules.Derived("num_lines", Count("lines")),
            dbrules.Derived("total", Sum("lines__amount")),
            dbrules.Derived("biggest", Max("lines__amount")),
        ]

class Line(models.Model):
    pk = models.CompositePrimaryKey("order_id", "line_no")
    order = models.ForeignKey(Order, related_name="lines", on_delete=models.CASCADE)
    line_no = models.IntegerField()
    amount = models.IntegerField(default=0)
'''

SCRIPT = '''
import django; django.setup()
from tests.project_script import exact as check
from django.db import connection, transaction
import dbrules
from shop.models import Line, Order

def exact(step):
    check(step, Order)

orders = Order.objects.bulk_create([Order(customer=f"c{i}") for i in range(10)])
Line.objects.bulk_create([Line(order=orders[i % 10], line_no=i, amount=i) for i in range(200)])
exact("bulk_create")
Line.objects.create(order=orders[0], line_no=1000, amount=5000)
line = Line.objects.get(pk=(orders[0].pk, 1000))
line.amount = 1
line.save()
exact("create, save() through the composite key")
Line.objects.filter(amount__lt=50).update(amount=7)
Line.objects.bulk_update([Line(order_id=orders[1].pk, line_no=1, amount=999)], ["amount"])
exact("update(), bulk_update()")
with connection.cursor() as cursor:
    cursor.execute("UPDATE shop_line SET order_id = %s WHERE line_no >= 150", [orders[9].pk])
exact("lines moved to another order")
with dbrules.deferred():
    Line.objects.filter(amount=999).delete()
    Line.objects.filter(line_no__gte=190).update(amount=0)
exact("deferred block")
Line.objects.filter(order=orders[9]).delete()
orders[2].delete()
exact("deletes")
print(Order.objects.get(pk=orders[9].pk).num_lines, Order.objects.get(pk=orders[0].pk).biggest)
'''


@pytest.fixture
def project(tmp_path, django_db_blocker):
    with django_db_blocker.unblock(), throwaway_project(tmp_path, DATABASE, MODELS):
        yield tmp_path


def test_aggregates_over_rows_with_a_composite_key_stay_exact(project):
    # Order 9 lost every line; order 0's lines from 150 on moved to it, so
    # its largest amount left is line 140's.
    assert migrate_and_run(project, SCRIPT) == ["0", "140"]
    assert_project_exact(project, rules=3)
