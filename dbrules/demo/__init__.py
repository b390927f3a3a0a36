"""``python -m dbrules demo``: derived values stay exact whoever writes.

Creates a small bookstore on the embedded PostgreSQL server (or the server
DATABASE_URL names), writes to it through every ORM bulk path and through
plain SQL from a second connection that knows nothing of Django, then prints
stored vs. live values and the drift count.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

DEMO_DATABASE = "dbrules_demo"


def _configure(url: str) -> dict[str, Any]:
    import django
    from django.conf import settings

    from dbrules.embedded import django_database_settings

    database = django_database_settings(url)
    admin = dict(database)
    database["NAME"] = DEMO_DATABASE
    settings.configure(
        DATABASES={"default": database, "admin": admin},
        INSTALLED_APPS=["pgtrigger", "dbrules", "dbrules.demo"],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
    )
    django.setup()
    return database


def _fresh_database() -> None:
    from django.db import connections

    admin = connections["admin"]
    admin.ensure_connection()
    admin.connection.autocommit = True
    with admin.connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{DEMO_DATABASE}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{DEMO_DATABASE}"')
    admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dbrules demo", description=__doc__)
    parser.add_argument("--authors", type=int, default=20)
    parser.add_argument("--books", type=int, default=20_000)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    from dbrules.embedded import database_url, server_description

    print(f"dbrules demo: {server_description()}", flush=True)
    _configure(database_url())
    _fresh_database()

    import psycopg
    from django.core.management import call_command
    from django.db import connection

    import dbrules
    from dbrules.demo.models import Author, Book

    call_command("migrate", verbosity=0)
    rng = random.Random(7)
    steps: list[tuple[str, float]] = []

    def step(name: str, action: Any) -> None:
        t0 = time.perf_counter()
        action()
        steps.append((name, time.perf_counter() - t0))

    step(
        "ORM bulk_create authors",
        lambda: Author.objects.bulk_create(Author(name=f"Author {i}") for i in range(args.authors)),
    )
    author_ids = list(Author.objects.values_list("pk", flat=True))
    step(
        f"ORM bulk_create {args.books:,} books",
        lambda: Book.objects.bulk_create(
            (
                Book(
                    author_id=rng.choice(author_ids),
                    title=f"Book {i}",
                    pages=rng.randint(50, 900),
                    published=rng.random() < 0.5,
                )
                for i in range(args.books)
            ),
            batch_size=5_000,
        ),
    )
    step(
        "ORM QuerySet.update moves a tenth",
        lambda: Book.objects.filter(pk__in=Book.objects.order_by("?")[: args.books // 10].values("pk"))
        .update(author_id=author_ids[0]),
    )

    def bulk_update() -> None:
        books = list(Book.objects.order_by("pk")[: args.books // 20])
        for book in books:
            book.published = not book.published
            book.pages += 1
        Book.objects.bulk_update(books, ["published", "pages"], batch_size=1_000)

    step("ORM bulk_update flips published", bulk_update)
    step("ORM QuerySet.delete", lambda: Book.objects.filter(pages__lt=100).delete())
    step("ORM rename an author", lambda: Author.objects.filter(pk=author_ids[1]).update(name="Renamed"))

    params = connection.get_connection_params()
    conninfo = {k: v for k, v in params.items() if k in {"dbname", "user", "password", "host", "port"}}
    book_table, author_table = Book._meta.db_table, Author._meta.db_table

    def outside() -> None:
        # A second program: plain psycopg, no Django, no signals.
        with psycopg.connect(**conninfo, autocommit=True) as other:
            other.execute(
                f"INSERT INTO {book_table} (author_id, title, pages, published, author_name, title_key) "
                "SELECT (%s::bigint[])[1 + (g %% %s)], 'Outside ' || g, 100 + g %% 500, g %% 3 = 0, '', '' "
                "FROM generate_series(1, %s) AS g",
                (author_ids, len(author_ids), args.books // 4),
            )
            other.execute(f"UPDATE {book_table} SET published = NOT published WHERE id % 7 = 0")
            other.execute(f"DELETE FROM {book_table} WHERE id % 11 = 0")
            other.execute(f"UPDATE {author_table} SET num_books = 999999 WHERE id = %s", (author_ids[2],))

    step("raw SQL from a second connection", outside)

    drift = dbrules.find_drift(Author) + dbrules.find_drift(Book)
    print()
    print(f"{'step':45} {'seconds':>8}")
    for name, seconds in steps:
        print(f"{name:45} {seconds:8.3f}")
    print()
    rows = dbrules.annotate_live(Author.objects.order_by("pk")[:8])
    print(f"{'author':12} {'num_books':>9} {'live':>6} {'published':>9} {'live':>6} {'pages':>9} {'live':>9}")
    for a in rows:
        print(
            f"{a.name:12} {a.num_books:9} {a.num_books_live:6} {a.num_published:9} "
            f"{a.num_published_live:6} {a.total_pages:9} {a.total_pages_live:9}"
        )
    guarded = Author.objects.get(pk=author_ids[2])
    print(
        f"\nthe second connection ran UPDATE ... SET num_books = 999999 on {guarded.name!r}: "
        f"stored value is {guarded.num_books} (the database owns derived columns)"
    )
    renamed = Book.objects.filter(author_id=author_ids[1]).values_list("author_name", flat=True).first()
    print(f"books of the renamed author now carry author_name={renamed!r}")
    total = sum(d.rows for d in drift)
    print(f"drift: {total} rows differ from annotate() across {len(drift)} rules")
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0 if total == 0 else 1
