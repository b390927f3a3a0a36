"""The generated migration applies, reverses and re-applies; nothing is left
to generate."""

from __future__ import annotations

import shutil
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from tests.bookstore.models import Author, Book
from tests.conftest import assert_exact, assert_project_exact, run_project, throwaway_project


def dbrules_objects() -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'pgtrigger_dbrules_%'")
        triggers = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE 'pgtrigger_dbrules_%'")
        functions = cursor.fetchone()[0]
    return triggers, functions


@pytest.mark.django_db
def test_makemigrations_has_nothing_to_add():
    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_migration_reverses_and_reapplies():
    installed = dbrules_objects()
    assert installed[0] > 0 and installed[0] == installed[1]
    call_command("migrate", "bookstore", "zero", verbosity=0)
    assert dbrules_objects() == (0, 0)  # triggers and their functions are gone
    call_command("migrate", "bookstore", verbosity=0)
    assert dbrules_objects() == installed
    ann = Author.objects.create(name="Ann")
    Book.objects.bulk_create([Book(author=ann, title=str(i), published=True) for i in range(5)])
    assert Author.objects.get(pk=ann.pk).num_published == 5
    assert_exact(Author, Book)


@pytest.mark.django_db(transaction=True)
def test_every_trigger_and_function_names_its_rule():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT obj_description(t.oid, 'pg_trigger'), obj_description(p.oid, 'pg_proc') "
            "FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
            "WHERE t.tgname LIKE 'pgtrigger_dbrules_%'"
        )
        comments = cursor.fetchall()
    assert comments
    for trigger_comment, function_comment in comments:
        assert trigger_comment.startswith("dbrules: bookstore.")
        assert function_comment.startswith("dbrules: bookstore.")
    assert any("bookstore.Author.num_books = Count(books)" in c for c, _ in comments)


SYNCDB_MODELS = '''
from django.db import models
from django.db.models import Count, F
import dbrules

class Person(models.Model):
    name = models.CharField(max_length=50)
    following = models.ManyToManyField("self", symmetrical=False, related_name="followers", blank=True)
    num_following = models.IntegerField(default=0)
    num_followers = models.IntegerField(default=0)
    class Meta:
        rules = [
            dbrules.Derived("num_following", Count("following")),
            dbrules.Derived("num_followers", Count("followers")),
        ]

class Post(models.Model):
    author = models.ForeignKey(Person, related_name="posts", on_delete=models.CASCADE)
    author_name = models.CharField(max_length=50, default="")
    class Meta:
        rules = [dbrules.Derived("author_name", F("author__name"))]
'''


def test_tables_built_without_migrations_get_the_triggers_from_pgtrigger(tmp_path, django_db_blocker):
    """Tests that skip migrations build tables with ``migrate --run-syncdb``;
    with PGTRIGGER_INSTALL_ON_MIGRATE, django-pgtrigger then installs every
    trigger, those on auto-created ManyToMany tables included (docs:
    quickstart, in your tests)."""
    with django_db_blocker.unblock(), throwaway_project(tmp_path, "dbrules_syncdb", SYNCDB_MODELS):
        shutil.rmtree(tmp_path / "shop" / "migrations")
        settings = tmp_path / "throwaway_settings.py"
        settings.write_text(settings.read_text() + "\nPGTRIGGER_INSTALL_ON_MIGRATE = True\n")
        built = run_project(tmp_path, "-m", "django", "migrate", "--run-syncdb")
        assert built.returncode == 0, built.stderr
        script = (
            "import django; django.setup()\n"
            "from shop.models import Person, Post\n"
            "a, b, c = Person.objects.bulk_create([Person(name=n) for n in 'abc'])\n"
            "a.following.add(b, c); c.following.add(a)\n"
            "Post.objects.create(author=b)\n"
            "Person.objects.filter(pk=b.pk).update(name='B')\n"
            "print(*Person.objects.order_by('pk').values_list('num_following', 'num_followers'))\n"
            "print(Post.objects.get().author_name)\n"
        )
        ran = run_project(tmp_path, "-c", script)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.split() == ["(2,", "1)", "(0,", "1)", "(1,", "1)", "B"]
        assert_project_exact(tmp_path, rules=3)
