"""A database dumped with pg_dump and restored with pg_restore keeps every
rule: the restored triggers, functions, pending tables and commit-order
registry maintain the values on the ORM's write paths, another program's
SQL and a deferred commit, as on the original."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from django.db import connection, connections, transaction

import dbrules
from tests.bookstore.models import Author, Book, Loan, Publisher, Reader
from tests.conftest import assert_exact, outside_conninfo, scratch_name

RESTORED = scratch_name("dbrules_restored")
MODELS = (Publisher, Author, Book, Reader, Loan)


def client(name: str) -> str:
    """A PostgreSQL client program at least as new as the server, which
    pg_dump requires: the embedded server's own, else one on PATH."""
    server = connection.pg_version // 10000
    candidates = []
    try:
        from pgserver._commands import POSTGRES_BIN_PATH

        candidates.append(str(POSTGRES_BIN_PATH / name))
    except ImportError:
        pass
    candidates.append(shutil.which(name) or name)
    for program in candidates:
        try:
            version = subprocess.run([program, "--version"], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            continue
        if int(version.split()[-1].split(".")[0]) >= server:
            return program
    pytest.fail(f"no {name} of PostgreSQL {server} or newer: install the PostgreSQL {server} client programs")


def conninfo(**params: object) -> str:
    return " ".join(f"{key}={value}" for key, value in params.items() if value not in (None, ""))


@contextmanager
def restored_copy(tmp_path: Path) -> Iterator[str]:
    """The test database as it is now, dumped and restored into a database
    of its own, as the Django alias this yields."""
    info = outside_conninfo()
    dump = tmp_path / "bookstore.dump"
    subprocess.run([client("pg_dump"), "-Fc", "-f", str(dump), "-d", conninfo(**info)], check=True)
    with psycopg.connect(**{**info, "dbname": "postgres"}, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {RESTORED} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {RESTORED}")
    result = subprocess.run(
        [client("pg_restore"), "--exit-on-error", "-d", conninfo(**{**info, "dbname": RESTORED}), str(dump)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    # A connection Django's settings do not list: its test isolation lets
    # the test use it.
    default = connections["default"]
    wrapper = type(default)({**default.settings_dict, "NAME": RESTORED}, alias=RESTORED)
    setattr(connections._connections, RESTORED, wrapper)
    try:
        yield RESTORED
    finally:
        wrapper.close()
        delattr(connections._connections, RESTORED)
        with psycopg.connect(**{**info, "dbname": "postgres"}, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {RESTORED} WITH (FORCE)")


def test_a_restored_database_keeps_its_rules(transactional_db: None, tmp_path: Path) -> None:
    publisher = Publisher.objects.create(name="P", country="de")
    ann = Author.objects.create(name="Ann", publisher=publisher)
    bob = Author.objects.create(name="Bob")
    Book.objects.bulk_create([Book(author=ann, title=f"a{i}", published=i % 2 == 0) for i in range(6)])
    reader = Reader.objects.create(name="R")
    Loan.objects.create(reader=reader, book=Book.objects.first())

    with restored_copy(tmp_path) as db:
        write_to(db)
        assert Author.objects.using(db).get(pk=bob.pk).num_books == 7
        assert set(Book.objects.using(db).values_list("publisher_country", flat=True)) == {"fr"}
        assert_exact(*MODELS, using=db)
    # The original is untouched by all of it.
    assert Author.objects.get(pk=bob.pk).num_books == 0
    assert_exact(*MODELS)


def write_to(db: str) -> None:
    ann, bob = Author.objects.using(db).get(name="Ann"), Author.objects.using(db).get(name="Bob")
    publisher = Publisher.objects.using(db).get()
    # The ORM on the restored copy ...
    Book.objects.using(db).bulk_create([Book(author_id=bob.pk, title=f"b{i}", pages=i) for i in range(4)])
    Book.objects.using(db).filter(title__in=["a0", "a1"]).update(author_id=bob.pk)
    Book.objects.using(db).filter(title="a5").delete()
    Author.objects.using(db).filter(pk=ann.pk).update(name="Ann B")
    # ... another program's SQL ...
    with psycopg.connect(**{**outside_conninfo(), "dbname": db}, autocommit=True) as outside:
        outside.execute(f"UPDATE {Publisher._meta.db_table} SET country = 'fr'")
        outside.execute(f"UPDATE {Author._meta.db_table} SET publisher_id = %s WHERE id = %s", [publisher.pk, bob.pk])
        outside.execute(f"UPDATE {Loan._meta.db_table} SET returned = true")
    # ... and a deferred commit, which locks through the restored registry.
    with transaction.atomic(using=db), dbrules.deferred(using=db):
        Book.objects.using(db).create(author_id=ann.pk, title="late")
        Book.objects.using(db).create(author_id=bob.pk, title="later")

