"""A tree in one table (a ForeignKey to "self"), in a throwaway project:
counts of children and copies of the parent's and grandparent's names,
where every maintenance write lands on the table whose triggers are
running. Bulk inserts, renames that cascade two levels down, moves between
parents and to the root, raw SQL, deletes, and a new root adopting the old
ones in one transaction."""

from __future__ import annotations

import pytest

from tests.conftest import assert_project_exact, migrate_and_run, throwaway_project

DATABASE = "dbrules_self_reference"

MODELS = '''
from django.db import models
from django.db.models import Count, F, Q
import dbrules

class Category(models.Model):
    name = models.CharField(max_length=100)
    parent = models.ForeignKey("self", null=True, related_name="children", on_delete=models.CASCADE)
    visible = models.BooleanField(default=True)
    num_children = models.IntegerField(default=0)
    num_visible = models.IntegerField(default=0)
    parent_name = models.CharField(max_length=100, null=True)
    grandparent_name = models.CharField(max_length=100, null=True)
    class Meta:
        rules = [
            dbrules.Derived("num_children", Count("children")),
            dbrules.Derived("num_visible", Count("children", filter=Q(children__visible=True))),
            dbrules.Derived("parent_name", F("parent__name")),
            dbrules.Derived("grandparent_name", F("parent__parent__name")),
        ]
'''

SCRIPT = '''
import django; django.setup()
from django.db import connection, transaction
from django.db.models import Value
from django.db.models.functions import Concat
from shop.models import Category
root = Category.objects.create(name="root")
kids = Category.objects.bulk_create([Category(name=f"k{i}", parent=root, visible=i % 2 == 0) for i in range(4)])
Category.objects.bulk_create([Category(name=f"g{i}", parent=kids[i % 4]) for i in range(8)])
Category.objects.filter(pk=root.pk).update(name="ROOT")  # two levels of copies follow
Category.objects.filter(name__startswith="k").update(name=Concat("name", Value("x")))
Category.objects.filter(name="g1").update(parent=kids[0])
Category.objects.filter(name__in=["g2", "g3"]).update(parent=None)
Category.objects.filter(name="k0x").update(visible=False, parent=None)
with connection.cursor() as cur:
    cur.execute("UPDATE shop_category SET parent_id = (SELECT id FROM shop_category WHERE name = 'k1x') "
                "WHERE name LIKE 'g%%'")
    cur.execute("INSERT INTO shop_category (name, parent_id, visible, num_children, num_visible) "
                "SELECT 'new' || i, id, true, 0, 0 FROM shop_category, generate_series(1, 3) AS i "
                "WHERE name LIKE 'g%%'")
Category.objects.filter(name="k3x").delete()
with transaction.atomic():
    r2 = Category.objects.create(name="r2")
    Category.objects.filter(parent=None).exclude(pk=r2.pk).update(parent=r2)

def show(name):
    c = Category.objects.get(name=name)
    return f"{c.num_children}/{c.num_visible}/{c.parent_name}/{c.grandparent_name}"

print(Category.objects.count(), show("ROOT"), show("k1x"), show("r2"), show("g5"))
print(*Category.objects.filter(name="new1").values_list("grandparent_name", flat=True).distinct())
'''


@pytest.fixture
def project(tmp_path, django_db_blocker):
    with django_db_blocker.unblock(), throwaway_project(tmp_path, DATABASE, MODELS):
        yield tmp_path


def test_a_tree_in_one_table_stays_exact(project):
    # 1 root, 4 kids (k0, k2 visible), 8 grandchildren, 24 great-grand-
    # children, less k3x, plus r2. ROOT keeps k1x and k2x (k0x left for the
    # root, k3x deleted) under r2; k1x took every g; r2 adopted ROOT and k0x.
    assert migrate_and_run(project, SCRIPT) == [
        "37",
        "2/1/r2/None",
        "8/8/ROOT/r2",
        "2/1/None/None",
        "3/3/k1x/ROOT",
        "k1x",
    ]
    assert_project_exact(project, rules=4)


ONE_STATEMENT = '''
import django; django.setup()
from tests.project_script import exact as check, sql
from django.db import connection, transaction
import dbrules
from shop.models import Category

def exact(step):
    check(step, Category)

# Children before their parent, in one INSERT: what a COPY of a dumped tree
# (pg_dump --data-only) or a bulk_create of rows with their keys may do.
with transaction.atomic():
    Category.objects.bulk_create([
        Category(id=101, parent_id=100, name="a"), Category(id=102, parent_id=100, name="b", visible=False),
        Category(id=100, name="top"), Category(id=103, parent_id=100, name="c"),
        Category(id=104, parent_id=103, name="c1"), Category(id=105, parent_id=103, name="c2"),
    ])
exact("children before their parent in one INSERT")
with dbrules.deferred():
    Category.objects.bulk_create([
        Category(id=201, parent_id=200, name="d"), Category(id=200, name="top2"),
        Category(id=202, parent_id=200, name="e"),
    ])
exact("the same, deferred")
sql("INSERT INTO shop_category (id, name, parent_id, visible, num_children, num_visible) "
    "VALUES (301, 'f', 300, true, 0, 0), (300, 'top3', NULL, true, 0, 0), (302, 'g', 301, true, 0, 0)")
exact("plain SQL, three levels")
# A whole tree renumbered in one UPDATE: each parent's new key is counted
# when its row is written, with the children written before it.
with transaction.atomic():
    sql("UPDATE shop_category SET id = id + 1000, parent_id = parent_id + 1000")
exact("renumbered in one UPDATE")
with dbrules.deferred():
    sql("UPDATE shop_category SET id = id + 1000, parent_id = parent_id + 1000")
exact("renumbered in one UPDATE, deferred")
sql("UPDATE shop_category SET name = name || '!'")  # no key moves: nothing recounted
exact("renamed")
top = Category.objects.get(pk=2100)
print(top.num_children, top.num_visible, Category.objects.get(pk=2103).num_children)
'''


def test_a_tree_written_parents_after_children_in_one_statement(project):
    """A parent inserted, or renumbered, by the statement that writes its
    children computed its values from the children written before it; the
    statement's deltas counted those again (4 where 2 were). The statement
    now recomputes such parents from all their children instead."""
    assert migrate_and_run(project, ONE_STATEMENT) == ["3", "2", "2"]
    assert_project_exact(project, rules=4)


SHIFT = '''
import django; django.setup()
from tests.project_script import exact as check, sql
from django.db import transaction
from shop.models import Category

with transaction.atomic():
    Category.objects.bulk_create([
        Category(id=10, name="a"), Category(id=11, parent_id=10, name="b"),
        Category(id=12, parent_id=11, name="c"), Category(id=13, parent_id=12, name="d"),
        Category(id=20, parent_id=10, name="e"), Category(id=21, parent_id=12, name="f", visible=False),
    ])
# Rows laid out by descending key, and read in that order, so that one UPDATE
# can move every key to the next row: each new key but one is another row's
# old key, and a delta by key would land on the wrong row.
sql("CREATE INDEX category_by_key_descending ON shop_category (id DESC)")
sql("CLUSTER shop_category USING category_by_key_descending")
with transaction.atomic():
    sql("SET LOCAL enable_indexscan = off")
    sql("SET LOCAL enable_bitmapscan = off")
    sql("UPDATE shop_category SET id = id + 1, parent_id = parent_id + 1")
check("every key moved to the next row in one UPDATE", Category)
print(*Category.objects.order_by("id").values_list("num_children", flat=True))
'''


def test_a_tree_whose_keys_all_move_to_the_next_row_in_one_update(project):
    """New keys that other rows held before the statement: every parent the
    statement wrote with children of its own is recounted, not just those
    whose new key is new (before: 4 children where 2 were, and 0 where 1)."""
    assert migrate_and_run(project, SHIFT) == "2 1 2 0 0 0".split()
    assert_project_exact(project, rules=4)
