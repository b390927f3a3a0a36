"""Parents keyed by text, by uuid and through a ForeignKey's to_field, in a
throwaway project: counts, sums and copies over each, including a key that
changes while its children follow it in the same transaction, moves by
text, uuid and to_field keys whose copies the UPDATE reads, and copies two
hops away, through a nullable second hop and from a row written before
its first hop."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from tests.conftest import assert_project_exact, migrate_and_run, throwaway_project

DATABASE = "dbrules_key_types"

MODELS = '''
import uuid
from django.db import models
from django.db.models import Count, F, Sum
import dbrules

class Shelf(models.Model):
    code = models.CharField(max_length=10, primary_key=True)
    num_items = models.IntegerField(default=0)
    class Meta:
        rules = [dbrules.Derived("num_items", Count("items"))]

class Crate(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    label = models.CharField(max_length=20, default="")
    total_weight = models.BigIntegerField(default=0)
    class Meta:
        rules = [dbrules.Derived("total_weight", Sum("items__weight"))]

class Brand(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=20)
    num_items = models.IntegerField(default=0)
    class Meta:
        rules = [dbrules.Derived("num_items", Count("items"))]

class Item(models.Model):
    shelf = models.ForeignKey(Shelf, related_name="items", on_delete=models.CASCADE)
    crate = models.ForeignKey(Crate, related_name="items", null=True, on_delete=models.SET_NULL)
    brand = models.ForeignKey(Brand, to_field="slug", related_name="items", on_delete=models.CASCADE)
    weight = models.IntegerField(default=1)
    crate_label = models.CharField(max_length=20, default="")
    brand_name = models.CharField(max_length=20, default="")
    class Meta:
        rules = [
            dbrules.Derived("crate_label", F("crate__label")),
            dbrules.Derived("brand_name", F("brand__name")),
        ]

class Tag(models.Model):
    # Copies two hops away only: the first lookup along "item" is a path.
    item = models.ForeignKey(Item, related_name="tags", on_delete=models.CASCADE)
    crate_label = models.CharField(max_length=20, default="")
    brand_slug = models.CharField(max_length=50, default="")
    class Meta:
        rules = [
            dbrules.Derived("crate_label", F("item__crate__label")),
            dbrules.Derived("brand_slug", F("item__brand__slug")),
        ]
'''

SCRIPT = '''
import django; django.setup()
from django.db import connection, transaction
from django.db.models import F
from shop.models import Shelf, Crate, Brand, Item, Tag
a, b = Shelf.objects.create(code="A-1"), Shelf.objects.create(code="B-2")
c1, c2 = Crate.objects.create(label="one"), Crate.objects.create(label="two")
acme, zeta = Brand.objects.create(slug="acme", name="Acme"), Brand.objects.create(slug="zeta", name="Zeta")
Item.objects.bulk_create([
    Item(shelf=a if i % 2 else b, crate=c1 if i % 3 else c2, brand=acme if i % 4 else zeta, weight=i)
    for i in range(12)
])
Item.objects.filter(weight__lt=4).update(shelf=b, crate=None, brand=zeta)
kilo, c3 = Brand.objects.create(slug="kilo", name="Kilo"), Crate.objects.create(label="three")
Item.objects.filter(weight=8).update(brand_id="kilo")  # a to_field key: the UPDATE reads the name
Item.objects.filter(weight=9).update(crate_id=c3.pk)  # a uuid key
Item.objects.filter(weight=10).update(brand_id=F("brand_id"))  # arithmetic that moves nothing
Crate.objects.filter(pk=c2.pk).update(label="deux")
Brand.objects.filter(pk=zeta.pk).update(name="Zed")
Item.objects.filter(weight=11).delete()
with transaction.atomic(), connection.cursor() as cur:  # keys change, children follow
    cur.execute("UPDATE shop_shelf SET code = 'A-9' WHERE code = 'A-1'")
    cur.execute("UPDATE shop_item SET shelf_id = 'A-9' WHERE shelf_id = 'A-1'")
    cur.execute("UPDATE shop_item SET brand_id = 'acme-2' WHERE brand_id = 'acme'")
    cur.execute("UPDATE shop_brand SET slug = 'acme-2' WHERE slug = 'acme'")
Tag.objects.bulk_create([Tag(item=i) for i in Item.objects.all()])  # some items have no crate
Tag.objects.filter(item__weight=6).update(item_id=Item.objects.get(weight=9).pk)  # two hops, by key
with transaction.atomic(), connection.cursor() as cur:  # a tag before its item
    cur.execute("INSERT INTO shop_tag (item_id, crate_label, brand_slug) VALUES (5000, 'x', 'x')")
    cur.execute("INSERT INTO shop_item (id, shelf_id, crate_id, brand_id, weight, crate_label, brand_name) "
                "VALUES (5000, 'B-2', %s, 'zeta', 1, '', '')", [c1.pk])
print(Shelf.objects.get(code="A-9").num_items, Brand.objects.get(slug="acme-2").num_items,
      Crate.objects.get(pk=c1.pk).total_weight)
'''


@pytest.fixture
def project(tmp_path, django_db_blocker):
    with django_db_blocker.unblock(), throwaway_project(tmp_path, DATABASE, MODELS):
        yield tmp_path


def test_text_uuid_and_to_field_keys_stay_exact(project):
    # A-9 (was A-1): the odd weights less the moved 1 and 3 and the deleted
    # 11. acme-2: the weights not divisible by 4, less 1..3 and 11. Crate one:
    # the weights not divisible by 3, less 1, 2 and 11, plus item 5000's 1.
    assert migrate_and_run(project, SCRIPT) == ["3", "5", "35"]
    assert_project_exact(project, rules=7)


LOCK_MODELS = '''
from django.db import models
from django.db.models import Count
import dbrules

class Brand(models.Model):
    slug = models.SlugField(unique=True)
    num_items = models.IntegerField(default=0)
    num_sales = models.IntegerField(default=0)
    class Meta:
        rules = [
            dbrules.Derived("num_items", Count("items"), deferred=True),
            dbrules.Derived("num_sales", Count("sales"), deferred=True),
        ]

class Item(models.Model):
    brand = models.ForeignKey(Brand, to_field="slug", related_name="items", on_delete=models.CASCADE)

class Sale(models.Model):
    brand = models.ForeignKey(Brand, related_name="sales", on_delete=models.CASCADE)
'''


@pytest.fixture
def lock_project(tmp_path, django_db_blocker):
    with django_db_blocker.unblock(), throwaway_project(tmp_path, "dbrules_key_locks", LOCK_MODELS) as info:
        yield tmp_path, info


def test_a_parent_reached_by_its_key_and_a_to_field_is_locked_in_one_order(lock_project):
    """Two deferred transactions each park an item (by slug) for one brand
    and a sale (by id) for the other. At commit both lock the two brands;
    locked per key column, one run after the other, each took one brand in
    its first run and waited for the other's in its second. A third
    connection holds both brands so that the two commits run together."""
    root, info = lock_project
    migrate_and_run(root, "import django; django.setup()")
    with psycopg.connect(**info, autocommit=True) as setup:
        x, y = (setup.execute("INSERT INTO shop_brand (slug, num_items, num_sales) VALUES (%s, 0, 0) RETURNING id",
                              [slug]).fetchone()[0] for slug in ("x", "y"))
    holder = psycopg.connect(**info)
    holder.execute("SELECT 1 FROM shop_brand FOR UPDATE")
    writers = []
    for item_slug, sale_brand in (("x", y), ("y", x)):
        writer = psycopg.connect(**info)
        writer.execute("INSERT INTO shop_item (brand_id) VALUES (%s)", [item_slug])
        writer.execute("INSERT INTO shop_sale (brand_id) VALUES (%s)", [sale_brand])
        writers.append(writer)
    failures: list[BaseException] = []

    def commit(writer: psycopg.Connection) -> None:
        try:
            writer.commit()
        except psycopg.Error as error:
            failures.append(error)

    threads = [threading.Thread(target=commit, args=(w,)) for w in writers]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # both commits wait for the holder
    holder.commit()
    for thread in threads:
        thread.join()
    for conn in (holder, *writers):
        conn.close()
    assert not failures, failures
    with psycopg.connect(**info) as check:
        assert check.execute("SELECT slug, num_items, num_sales FROM shop_brand ORDER BY slug").fetchall() == [
            ("x", 1, 1), ("y", 1, 1)
        ]
    assert_project_exact(root, rules=2)
