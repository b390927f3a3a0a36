"""Awkward identifiers and self-referential rules, in a throwaway project:
reserved words, mixed case, spaces, a non-public schema, names near the
63-byte limit, a tree counting its own children, a one-to-one pair, and a
model name long enough that its trigger names are shortened -- PostgreSQL
fires a table's BEFORE triggers in name order, and a same-row rule over a
count must run after the count's triggers."""

from __future__ import annotations

import pytest

from tests.conftest import assert_project_exact, migrate_and_run, throwaway_project

DATABASE = "dbrules_identifiers"
LONG = "t" * 60

MODELS = f'''
from django.db import models
from django.db.models import Case, Count, F, Sum, Value, When
import dbrules

class Group(models.Model):
    name = models.CharField(max_length=50)
    num_users = models.IntegerField(default=0, db_column="Num Users")
    class Meta:
        db_table = "group"
        rules = [dbrules.Derived("num_users", Count("members"))]

class User(models.Model):
    group = models.ForeignKey(Group, related_name="members", on_delete=models.CASCADE, db_column="Group Id")
    group_name = models.CharField(max_length=50, default="", db_column="order")
    class Meta:
        db_table = '"Odd Schema"."User Table"'
        rules = [dbrules.Derived("group_name", F("group__name"))]

class Category(models.Model):
    parent = models.ForeignKey("self", null=True, related_name="children", on_delete=models.CASCADE)
    weight = models.IntegerField(default=1)
    num_children = models.IntegerField(default=0)
    children_weight = models.BigIntegerField(default=0)
    class Meta:
        db_table = "{LONG}"
        rules = [
            dbrules.Derived("num_children", Count("children")),
            dbrules.Derived("children_weight", Sum("children__weight")),
        ]

class Profile(models.Model):
    user = models.OneToOneField(User, related_name="profile", on_delete=models.CASCADE)
    group_name = models.CharField(max_length=50, default="")
    class Meta:
        rules = [dbrules.Derived("group_name", F("user__group_name"))]

class InternationalStandardBookAuthorRecord(models.Model):
    num_titles = models.IntegerField(default=0)
    standing = models.CharField(max_length=20, default="")
    class Meta:
        rules = [
            dbrules.Derived("num_titles", Count("titles")),
            dbrules.Derived(
                "standing", Case(When(num_titles__gte=2, then=Value("established")), default=Value("new"))
            ),
        ]

class Title(models.Model):
    record = models.ForeignKey(InternationalStandardBookAuthorRecord, related_name="titles", on_delete=models.CASCADE)
'''

SCRIPT = '''
import django; django.setup()
from django.db import connection
from shop.models import Group, User, Category, Profile, InternationalStandardBookAuthorRecord, Title
g1, g2 = Group.objects.create(name="select"), Group.objects.create(name="from")
users = User.objects.bulk_create([User(group=g1 if i % 2 else g2) for i in range(10)])
Profile.objects.bulk_create([Profile(user=u) for u in users])
User.objects.filter(pk__in=[u.pk for u in users[:3]]).update(group=g1)
Group.objects.filter(pk=g1.pk).update(name="where")
root = Category.objects.create()
level = [root]
for depth in range(6):  # a tree six levels deep
    level = Category.objects.bulk_create([Category(parent=p, weight=depth) for p in level for _ in range(2)])
Category.objects.filter(pk=level[0].pk).update(parent=root)
Category.objects.filter(pk=level[1].pk).delete()
with connection.cursor() as c:
    c.execute(\'UPDATE "group" SET "Num Users" = 99\')
    # Titles before their record (the count is computed on insert, then the
    # standing from it), and a forged count (put back, then the standing).
    c.execute("BEGIN")
    c.execute("INSERT INTO shop_title (record_id) VALUES (77), (77)")
    c.execute("INSERT INTO shop_internationalstandardbookauthorrecord (id, num_titles, standing) VALUES (77, 0, '')")
    c.execute("COMMIT")
    record = InternationalStandardBookAuthorRecord.objects.create()
    Title.objects.create(record=record)
    c.execute("UPDATE shop_internationalstandardbookauthorrecord SET num_titles = 5 WHERE id <> 77")
print(Group.objects.get(pk=g1.pk).num_users, Profile.objects.filter(group_name="where").count())
'''


@pytest.fixture
def project(tmp_path, django_db_blocker):
    with django_db_blocker.unblock(), throwaway_project(
        tmp_path, DATABASE, MODELS, setup_sql='CREATE SCHEMA "Odd Schema"'
    ):
        yield tmp_path


def test_awkward_identifiers_and_trees_compile_run_and_stay_exact(project):
    assert migrate_and_run(project, SCRIPT) == ["7", "7"]  # 5 + 2 moved; profiles copy through two hops
    assert_project_exact(project, rules=7)
