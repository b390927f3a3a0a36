"""Adding, changing and removing a rule on tables that already hold rows:
each step is one makemigrations + migrate, backfills, reverses, and leaves
makemigrations --check clean. Runs a throwaway project through manage.py."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.conftest import run_project, throwaway_project

DATABASE = "dbrules_lifecycle"

MODELS = """
from django.db import models
from django.db.models import Count, Q
import dbrules

class Shelf(models.Model):
    name = models.CharField(max_length=50)
    num_items = models.IntegerField(default=0)
{meta}

class Item(models.Model):
    shelf = models.ForeignKey(Shelf, related_name="items", on_delete=models.CASCADE)
    heavy = models.BooleanField(default=False)
"""
NO_RULE = ""
COUNT_ALL = """
    class Meta:
        rules = [dbrules.Derived("num_items", Count("items"))]
"""
COUNT_HEAVY = """
    class Meta:
        rules = [dbrules.Derived("num_items", Count("items", filter=Q(items__heavy=True)))]
"""


def with_copy(meta: str) -> str:
    """MODELS, its Item (last in it) given a copy of its shelf's name."""
    return MODELS.format(meta=meta).replace("import Count, Q", "import Count, F, Q") + """
    shelf_name = models.CharField(max_length=50, default="")
    class Meta:
        rules = [dbrules.Derived("shelf_name", F("shelf__name"))]
"""


@pytest.fixture
def project(tmp_path, django_db_blocker):
    with django_db_blocker.unblock(), throwaway_project(tmp_path, DATABASE) as info:
        yield tmp_path, info


def manage(root: Path, *args: str, answers: str | None = None) -> str:
    result = run_project(root, "-m", "django", *args, answers=answers)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def step(root: Path, meta: str, name: str) -> None:
    (root / "shop" / "models.py").write_text(MODELS.format(meta=meta))
    manage(root, "makemigrations", "shop", "--name", name)
    manage(root, "migrate", "shop")
    assert "No changes detected" in manage(root, "makemigrations", "--check", "--dry-run")


def counts(info: dict, sql: str = "SELECT name, num_items FROM shop_shelf ORDER BY name") -> list:
    with psycopg.connect(**info) as conn:
        return conn.execute(sql).fetchall()


def triggers(info: dict) -> int:
    return counts(info, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgtrigger_dbrules_%'")[0][0]


def test_add_change_remove_a_rule_forwards_and_backwards(project):
    root, info = project
    step(root, NO_RULE, "initial")
    with psycopg.connect(**info) as conn:
        conn.execute("INSERT INTO shop_shelf (id, name, num_items) VALUES (1, 'a', 0), (2, 'b', 0)")
        conn.execute(
            "INSERT INTO shop_item (shelf_id, heavy) "
            "SELECT 1 + g % 2, g % 3 = 0 FROM generate_series(1, 30) g"
        )
    assert triggers(info) == 0

    step(root, COUNT_ALL, "count_all")  # adds triggers and backfills existing rows
    assert counts(info) == [("a", 15), ("b", 15)]
    assert triggers(info) > 0

    step(root, COUNT_HEAVY, "count_heavy")  # changed expression: new triggers, new backfill
    assert counts(info) == [("a", 5), ("b", 5)]
    with psycopg.connect(**info) as conn:
        conn.execute("INSERT INTO shop_item (shelf_id, heavy) VALUES (1, true), (1, false)")
    assert counts(info) == [("a", 6), ("b", 5)]

    step(root, NO_RULE, "no_rule")  # removing the rule removes its triggers
    assert triggers(info) == 0
    with psycopg.connect(**info) as conn:
        conn.execute("INSERT INTO shop_item (shelf_id, heavy) VALUES (2, true)")
    assert counts(info) == [("a", 6), ("b", 5)]  # no longer maintained

    manage(root, "migrate", "shop", "0003")  # back to the filtered count: recomputed
    assert counts(info) == [("a", 6), ("b", 6)]
    manage(root, "migrate", "shop", "0002")  # back to the plain count
    assert counts(info) == [("a", 17), ("b", 16)]
    manage(root, "migrate", "shop", "0001")
    assert triggers(info) == 0
    manage(root, "migrate", "shop")  # and forwards again
    assert triggers(info) == 0
    manage(root, "migrate", "shop", "0003")
    assert counts(info) == [("a", 6), ("b", 6)]


def test_renaming_the_fields_a_rule_reads_migrates_both_ways(project):
    """makemigrations drops the triggers, renames, installs the new ones and
    backfills; reversed, the old rules are recomputed only once the fields
    have their old names again (ReverseBackfill, first in the migration)."""
    root, info = project
    step(root, COUNT_HEAVY, "initial")
    with psycopg.connect(**info) as conn:
        conn.execute("INSERT INTO shop_shelf (id, name, num_items) VALUES (1, 'a', 0), (2, 'b', 0)")
        conn.execute("INSERT INTO shop_item (shelf_id, heavy) SELECT 1 + g % 2, g % 3 = 0 FROM generate_series(1, 30) g")
    assert counts(info) == [("a", 5), ("b", 5)]

    renamed = MODELS.format(meta=COUNT_HEAVY).replace("heavy", "bulky")
    (root / "shop" / "models.py").write_text(renamed)
    out = manage(root, "makemigrations", "shop", "--name", "renamed", answers="y\n")
    assert "Rename field heavy on item to bulky" in out
    manage(root, "migrate", "shop")
    assert "No changes detected" in manage(root, "makemigrations", "--check", "--dry-run")
    with psycopg.connect(**info) as conn:
        conn.execute("INSERT INTO shop_item (shelf_id, bulky) VALUES (1, true), (2, false)")
    assert counts(info) == [("a", 6), ("b", 5)]

    manage(root, "migrate", "shop", "0001")  # the old column name, the old triggers
    assert counts(info) == [("a", 6), ("b", 5)]
    with psycopg.connect(**info) as conn:
        conn.execute("INSERT INTO shop_item (shelf_id, heavy) VALUES (2, true)")
    assert counts(info) == [("a", 6), ("b", 6)]
    manage(root, "migrate", "shop")
    assert counts(info) == [("a", 6), ("b", 6)]


def test_altering_the_type_of_a_column_a_trigger_names_keeps_it_installed(project):
    """A longer name: django-pgtrigger drops and recreates each trigger whose
    WHEN or UPDATE OF names the column around the ALTER COLUMN TYPE. The
    recreated triggers keep the comment that tells them installed, so
    ``dbrules check`` still passes (it exits 1 on an outdated trigger)."""
    root, info = project
    source = with_copy(COUNT_ALL)
    (root / "shop" / "models.py").write_text(source)
    manage(root, "makemigrations", "shop", "--name", "initial")
    manage(root, "migrate", "shop")
    longer = source.replace("max_length=50", "max_length=120")
    (root / "shop" / "models.py").write_text(longer)
    manage(root, "makemigrations", "shop", "--name", "longer")
    manage(root, "migrate", "shop")
    with psycopg.connect(**info) as conn:
        conn.execute("INSERT INTO shop_shelf (id, name, num_items) VALUES (1, %s, 0)", ["x" * 100])
        conn.execute("INSERT INTO shop_item (shelf_id, heavy, shelf_name) VALUES (1, false, '')")
        assert conn.execute("SELECT shelf_name FROM shop_item").fetchone() == ("x" * 100,)
    assert "no drift in 2 rule(s)" in manage(root, "dbrules", "check")


def test_renaming_a_model_with_rules_migrates_both_ways(project):
    """Trigger names carry the model's name, so a RenameModel comes with
    every trigger removed and added again. The autodetector names the new
    model in the removals, which dbrules moves ahead of the rename: they
    name the old model there, and drop the old triggers from the old
    table (named after it, they failed with a KeyError; after it, they
    would miss the renamed table and leave its old triggers counting)."""
    root, info = project
    source = with_copy(COUNT_HEAVY)
    (root / "shop" / "models.py").write_text(source)
    manage(root, "makemigrations", "shop", "--name", "initial")
    manage(root, "migrate", "shop")
    installed = triggers(info)
    with psycopg.connect(**info) as conn:
        conn.execute("INSERT INTO shop_shelf (id, name, num_items) VALUES (1, 'a', 0), (2, 'b', 0)")
        conn.execute("INSERT INTO shop_item (shelf_id, heavy) SELECT 1 + g % 2, g % 3 = 0 FROM generate_series(1, 30) g")

    child_renamed = source.replace("class Item(", "class Thing(")
    both_renamed = child_renamed.replace("class Shelf(", "class Rack(").replace("ForeignKey(Shelf,", "ForeignKey(Rack,")
    for name, models_source, child, parent in (
        ("thing", child_renamed, "shop_thing", "shop_shelf"),
        ("rack", both_renamed, "shop_thing", "shop_rack"),
    ):
        (root / "shop" / "models.py").write_text(models_source)
        assert "Rename model" in manage(root, "makemigrations", "shop", "--name", name, answers="y\n")
        manage(root, "migrate", "shop")
        assert "No changes detected" in manage(root, "makemigrations", "--check", "--dry-run")
        assert triggers(info) == installed  # the old ones gone, the new ones there
        with psycopg.connect(**info) as conn:
            conn.execute(f"INSERT INTO {child} (shelf_id, heavy, shelf_name) VALUES (1, true, 'x')")
            conn.execute(f"UPDATE {parent} SET name = name || '!' WHERE id = 2")
        assert "no drift in 2 rule(s)" in manage(root, "dbrules", "check")
    assert counts(info, "SELECT name, num_items FROM shop_rack ORDER BY name") == [("a", 7), ("b!!", 5)]

    manage(root, "migrate", "shop", "0001")  # both renames reversed
    assert triggers(info) == installed
    with psycopg.connect(**info) as conn:
        conn.execute("INSERT INTO shop_item (shelf_id, heavy, shelf_name) VALUES (2, true, 'x')")
        assert conn.execute(
            "SELECT count(*) FROM shop_item AS i JOIN shop_shelf AS s ON s.id = i.shelf_id "
            "WHERE i.shelf_name <> s.name"
        ).fetchone() == (0,)
    assert counts(info) == [("a", 7), ("b!!", 6)]
    manage(root, "migrate", "shop")
    assert triggers(info) == installed


def test_squashed_migrations_install_the_rules_of_the_last_one(project):
    """squashmigrations keeps every trigger operation of the migrations it
    replaces, backfills included; a new database migrated from the squashed
    migration alone ends with the triggers of the last one, exact."""
    root, info = project
    step(root, NO_RULE, "initial")
    step(root, COUNT_ALL, "count_all")
    (root / "shop" / "models.py").write_text(with_copy(COUNT_HEAVY))
    manage(root, "makemigrations", "shop", "--name", "count_heavy_copy")
    manage(root, "migrate", "shop")
    installed = triggers(info)
    manage(root, "squashmigrations", "shop", "0003", "--noinput")
    manage(root, "migrate", "shop", "zero")
    assert triggers(info) == 0
    for replaced in (root / "shop" / "migrations").glob("000[123]_[!s]*.py"):
        replaced.unlink()  # what Django says to do once every database has moved on
    assert "0001_squashed_0003" in manage(root, "showmigrations", "shop")
    manage(root, "migrate", "shop")
    assert "No changes detected" in manage(root, "makemigrations", "--check", "--dry-run")
    assert triggers(info) == installed
    with psycopg.connect(**info) as conn:
        conn.execute("INSERT INTO shop_shelf (id, name, num_items) VALUES (1, 'a', 0), (2, 'b', 0)")
        conn.execute("INSERT INTO shop_item (shelf_id, heavy) SELECT 1 + g % 2, g % 3 = 0 FROM generate_series(1, 30) g")
        conn.execute("UPDATE shop_shelf SET name = 'c' WHERE id = 2")
        assert conn.execute("SELECT DISTINCT shelf_name FROM shop_item ORDER BY 1").fetchall() == [("a",), ("c",)]
    assert counts(info) == [("a", 5), ("c", 5)]
    assert "no drift in 2 rule(s)" in manage(root, "dbrules", "check")
