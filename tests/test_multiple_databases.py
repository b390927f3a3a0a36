"""A project whose DATABASE_ROUTERS keep the app with rules on a second
database, in a throwaway project: ``migrate --database`` installs the
triggers there, the writes routed there stay exact, ``repair(using=...)``
and ``deferred(using=...)`` work on that connection, and ``dbrules
check`` / ``repair`` on the default database skip those rules and say which
``--database`` holds them. (``repair(using=...)`` compiled its locking query
for the default database and failed outside a transaction; ``check`` read
tables the default database does not have.)"""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import run_project, scratch_name, throwaway_project

DATABASE = "dbrules_routed_default"
OTHER = scratch_name("dbrules_routed_other")

MODELS = '''
from django.db import models
from django.db.models import Count, F, Q
import dbrules

class Shelf(models.Model):
    name = models.CharField(max_length=50)
    num_heavy = models.IntegerField(default=0)
    class Meta:
        rules = [dbrules.Derived("num_heavy", Count("items", filter=Q(items__heavy=True)))]

class Item(models.Model):
    shelf = models.ForeignKey(Shelf, related_name="items", on_delete=models.CASCADE)
    heavy = models.BooleanField(default=False)
    shelf_name = models.CharField(max_length=50, default="")
    class Meta:
        rules = [dbrules.Derived("shelf_name", F("shelf__name"))]
'''

ROUTING = f'''
DATABASES["other"] = {{**DATABASES["default"], "NAME": {OTHER!r}}}

class Router:
    def db_for_read(self, model, **hints):
        return "other" if model._meta.app_label == "shop" else None
    db_for_write = db_for_read
    def allow_migrate(self, db, app_label, **hints):
        return db == "other" if app_label == "shop" else None

DATABASE_ROUTERS = ["throwaway_settings.Router"]
'''

SCRIPT = '''
import django; django.setup()
from django.db import connections
import dbrules
from shop.models import Item, Shelf

shelf = Shelf.objects.create(name="a")
Item.objects.bulk_create([Item(shelf=shelf, heavy=i % 2 == 0) for i in range(9)])
with dbrules.deferred(using="other"):
    Item.objects.create(shelf=shelf, heavy=True)
    Item.objects.filter(heavy=False).update(heavy=True)
with connections["other"].cursor() as cursor:
    cursor.execute("ALTER TABLE shop_shelf DISABLE TRIGGER USER")
    cursor.execute("UPDATE shop_shelf SET num_heavy = 0, name = 'b'")
    cursor.execute("ALTER TABLE shop_shelf ENABLE TRIGGER USER")
print(sum(d.rows for m in (Shelf, Item) for d in dbrules.find_drift(m, using="other")))
print(dbrules.repair(Shelf, using="other"), dbrules.repair(Item, using="other"))
shelf.refresh_from_db()
print(shelf.num_heavy, sorted(set(Item.objects.values_list("shelf_name", flat=True))))
'''


@pytest.fixture
def project(tmp_path, django_db_blocker):
    with django_db_blocker.unblock(), throwaway_project(tmp_path, DATABASE, MODELS) as info:
        with psycopg.connect(**info, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {OTHER} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {OTHER}")
        settings = tmp_path / "throwaway_settings.py"
        settings.write_text(settings.read_text() + ROUTING)
        try:
            yield tmp_path
        finally:
            with psycopg.connect(**{**info, "dbname": "postgres"}, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {OTHER} WITH (FORCE)")


def manage(root, *args: str):
    return run_project(root, "-m", "django", *args)


def test_rules_on_a_routed_database(project):
    for args in (("makemigrations", "shop"), ("migrate",), ("migrate", "--database", "other")):
        result = manage(project, *args)
        assert result.returncode == 0, result.stdout + result.stderr
    result = run_project(project, "-c", SCRIPT)
    assert result.returncode == 0, result.stderr
    # The shelf's count and its name on its ten items, written around the
    # disabled triggers; repaired: one count and ten copies.
    assert result.stdout.split() == ["11", "1", "10", "10", "['b']"]

    check = manage(project, "dbrules", "check", "--database", "other")
    assert check.returncode == 0 and "no drift in 2 rule(s)" in check.stdout, check.stdout + check.stderr
    for action in ("check", "repair"):
        result = manage(project, "dbrules", action)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "skipped 2 rule(s)" in result.stderr and "run with --database other" in result.stderr
