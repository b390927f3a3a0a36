"""manage.py dbrules list | sql | check | repair: output and exit codes."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from tests.bookstore.models import Author, Book
from tests.conftest import assert_exact

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[int, str]:
    out = StringIO()
    try:
        call_command("dbrules", *args, stdout=out)
    except SystemExit as exit:
        return int(exit.code), out.getvalue()
    return 0, out.getvalue()


def pgid(name: str, model=Book) -> str:
    from dbrules import registry

    [item] = [c for c in registry.compiled() if c.trigger.name == name]
    return item.trigger.get_pgid(item.model)


@pytest.fixture
def shop():
    ann = Author.objects.create(name="Ann")
    Book.objects.bulk_create([Book(author=ann, title=str(i), published=i % 2 == 0) for i in range(6)])
    return ann


def write_around_the_trigger(ann: Author) -> None:
    """Drift: disable the insert trigger, write, enable it again."""
    name = pgid("dbrules_author_books_ins")
    with connection.cursor() as cursor:
        # ALTER TABLE waits for no queued FK checks: run them now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE {Book._meta.db_table} DISABLE TRIGGER {name}")
        Book.objects.bulk_create([Book(author=ann, title="unseen")] * 4)
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE {Book._meta.db_table} ENABLE TRIGGER {name}")


def test_list_shows_rules_triggers_and_status():
    code, out = run("list", "bookstore.Author.num_books")
    assert code == 0
    assert out.startswith("bookstore.Author.num_books = Count(books)")
    assert "installed" in out and "bookstore_book" in out and "missing" not in out


def test_list_json_and_generated_fields():
    code, out = run("list", "--json")
    data = json.loads(out)
    rules = {r["rule"] for r in data["rules"]}
    assert "bookstore.Tag.num_books = Count(books)" in rules
    assert all(t["status"] == "installed" for r in data["rules"] for t in r["triggers"])
    assert data["orphaned"] == []


def test_sql_prints_what_each_rule_installs():
    code, out = run("sql", "bookstore.Book.author_name")
    assert code == 0
    assert "CREATE TRIGGER" in out and "SET search_path = pg_catalog, pg_temp" in out
    assert "-- implements: bookstore.Book.author_name = F(author__name)" in out
    # Every trigger printed serves the rule: its own, and the count over the
    # same ForeignKey whose statement trigger carries the copy's check.
    implements = [line for line in out.splitlines() if line.startswith("-- implements")]
    assert implements and all("bookstore.Book.author_name" in line for line in implements)
    assert "dbrules_author_guard" not in out


def test_check_is_clean_then_finds_drift_then_repair_fixes_it(shop):
    assert run("check")[0] == 0
    write_around_the_trigger(shop)
    code, out = run("check", "bookstore.Author")
    assert code == 1
    assert f"DRIFT        1 bookstore.Author.num_books = Count(books)  e.g. pk {shop.pk}" in out
    assert "run `manage.py dbrules repair`" in out
    code, out = run("check", "--json", "bookstore.Author.num_books")
    assert code == 1 and json.loads(out)["drift"][0]["sample"] == [shop.pk]

    code, out = run("repair", "--dry-run", "bookstore.Author")
    assert "would change 1 value(s)" in out
    assert Author.objects.get(pk=shop.pk).num_books == 6  # dry run wrote nothing

    code, out = run("repair", "bookstore.Author", "--batch-size", "1")
    assert code == 0 and "changed 1 value(s)" in out
    assert Author.objects.get(pk=shop.pk).num_books == 10
    assert run("check")[0] == 0
    assert run("repair", "--json")[1].count('"changed": 0') >= 5  # idempotent
    assert_exact(Author, Book)


def test_repair_batches_cover_every_parent():
    authors = Author.objects.bulk_create([Author(name=str(i)) for i in range(25)])
    Book.objects.bulk_create([Book(author=a, title="t") for a in authors])
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('dbrules.repairing', 'on', true)")
        cursor.execute(f"UPDATE {Author._meta.db_table} SET num_books = 7")
        cursor.execute("SELECT set_config('dbrules.repairing', 'off', true)")
    code, out = run("repair", "bookstore.Author.num_books", "--batch-size", "4")
    assert "changed 25 value(s)" in out
    assert_exact(Author)


def test_missing_trigger_is_an_error_that_says_what_to_run(shop):
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"DROP TRIGGER {pgid('dbrules_author_books_del')} ON {Book._meta.db_table}")
    code, out = run("list", "bookstore.Author")
    assert "missing" in out and "run `manage.py migrate --database default`" in out
    with pytest.raises(CommandError, match="manage.py migrate") as error:
        run("check", "bookstore.Author")
    assert "`makemigrations` if the rules, or the Django version that compiles them, changed" in str(error.value)


def test_disabled_trigger_is_reported(shop):
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE {Book._meta.db_table} DISABLE TRIGGER {pgid('dbrules_author_books_del')}")
    with pytest.raises(CommandError, match="disabled"):
        run("repair", "bookstore.Author")


def test_orphaned_triggers_are_listed():
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION pgtrigger_dbrules_old_rule_abcde() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RETURN NULL; END $$"
        )
        cursor.execute(
            f"CREATE TRIGGER pgtrigger_dbrules_old_rule_abcde AFTER INSERT ON {Book._meta.db_table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION pgtrigger_dbrules_old_rule_abcde()"
        )
    code, out = run("list")
    assert "orphaned" in out and "pgtrigger_dbrules_old_rule_abcde" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (("check", "nope"), "unknown label 'nope'"),
        (("check", "bookstore.Nope"), "unknown label"),
        (("sql", "bookstore.Author.nope"), "unknown label"),
        (("check", "--database", "elsewhere"), "unknown database 'elsewhere'"),
    ],
)
def test_bad_input_is_a_one_line_error(args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)


def test_benchmark_refuses_a_section_it_does_not_have(capsys):
    """A misspelt section used to run nothing, silently, and exit 0."""
    from bench.run import parse

    with pytest.raises(SystemExit) as refused:
        parse(["--sections", "reads,bulks"])
    assert refused.value.code == 2
    assert "no section 'bulks'; choose among bulk, single" in capsys.readouterr().err
    assert parse(["--sections", "reads, repair"]).sections == "reads, repair"
