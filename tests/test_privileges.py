"""An outside program with least privilege keeps derived values right and
cannot change, redirect or disable dbrules' maintenance.

The role gets exactly the GRANTs listed in docs/outside-programs.md: rights
on the child table and its sequence, nothing on the parents, nothing on
dbrules' schema."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection, transaction
from psycopg import errors, sql

from tests.bookstore.models import Author, Book, Loan, Publisher, Reader
from tests.conftest import assert_exact, outside_conninfo, scratch_name

ROLE = scratch_name("dbrules_book_writer")
BOOK, AUTHOR, LOAN = Book._meta.db_table, Author._meta.db_table, Loan._meta.db_table
COLUMNS = "author_id, title, pages, published, author_name, title_key, label, size, weight_grams, num_tags"

GRANTS = [
    f"GRANT USAGE ON SCHEMA public TO {ROLE}",
    f"GRANT SELECT, INSERT, UPDATE, DELETE ON {BOOK} TO {ROLE}",
    f"GRANT USAGE ON SEQUENCE {BOOK}_id_seq TO {ROLE}",
]


@pytest.fixture
def admin(transactional_db):
    with psycopg.connect(**outside_conninfo(), autocommit=True) as conn:
        yield conn


def connect_as(admin: psycopg.Connection, role: str, grants: list[str]) -> psycopg.Connection:
    admin.execute(f"DROP OWNED BY {role}") if admin.execute(
        "SELECT 1 FROM pg_roles WHERE rolname = %s", [role]
    ).fetchone() else None
    admin.execute(f"DROP ROLE IF EXISTS {role}")
    admin.execute(f"CREATE ROLE {role} LOGIN")
    for grant in grants:
        admin.execute(grant)
    return psycopg.connect(**{**outside_conninfo(), "user": role, "password": ""}, autocommit=True)


@pytest.fixture
def writer(admin):
    """A connection as a role that may only write the book table."""
    conn = connect_as(admin, ROLE, GRANTS)
    try:
        yield conn
    finally:
        conn.close()
        admin.execute(f"DROP OWNED BY {ROLE}")
        admin.execute(f"DROP ROLE {ROLE}")


def function_of(admin: psycopg.Connection, trigger_name: str) -> str:
    """The (schema-qualified) function of the installed trigger ``trigger_name``."""
    [(name,)] = admin.execute(
        "SELECT p.oid::regproc::text FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
        "WHERE t.tgname LIKE %s",
        [f"pgtrigger_{trigger_name}_%"],
    ).fetchall()
    return name if "." in name else f"public.{name}"


def test_writer_keeps_parent_counts_right(writer):
    ann = Author.objects.create(name="Ann")
    writer.execute(
        f"INSERT INTO {BOOK} ({COLUMNS}) SELECT %s, 't' || g, g, g %% 2 = 0, '', '', '', '', 0, 0 "
        "FROM generate_series(1, 20) g",
        [ann.pk],
    )
    writer.execute(f"UPDATE {BOOK} SET published = NOT published WHERE pages <= 4")
    writer.execute(f"DELETE FROM {BOOK} WHERE pages > 15")
    with writer.cursor() as cursor:
        with cursor.copy(f"COPY {BOOK} ({COLUMNS}) FROM STDIN") as copy:
            copy.write(f"{ann.pk}\tcopied\t7\tt\t\t\t\t\t0\t0\n")
    a = Author.objects.get(pk=ann.pk)
    assert (a.num_books, a.num_published) == (16, 8)
    assert_exact(Author, Book, Publisher)


def test_writer_in_deferred_mode_keeps_counts_right(writer):
    """Deltas parked for commit go to dbrules' own tables, which the writer
    has no right on: the trigger functions write them as their owner."""
    ann, bob = Author.objects.create(name="Ann"), Author.objects.create(name="Bob")
    with writer.transaction():
        writer.execute("SELECT set_config('dbrules.deferred', 'on', true)")
        for author in (bob, ann, bob):
            writer.execute(f"INSERT INTO {BOOK} ({COLUMNS}) VALUES (%s, 'd', 1, true, '', '', '', '', 0, 0)", [author.pk])
        writer.execute(f"UPDATE {BOOK} SET author_id = %s WHERE author_id = %s", [ann.pk, bob.pk])
    assert Author.objects.get(pk=ann.pk).num_books == 3
    assert_exact(Author, Book)


def test_writer_cannot_write_derived_columns(writer):
    ann = Author.objects.create(name="Ann")
    with pytest.raises(errors.InsufficientPrivilege):
        writer.execute(f"UPDATE {AUTHOR} SET num_books = 999 WHERE id = %s", [ann.pk])
    writer.execute(
        f"INSERT INTO {BOOK} ({COLUMNS}) VALUES (%s, 'x', 1, true, 'forged', 'forged', '', '', 0, 42)",
        [ann.pk],
    )
    writer.execute(f"UPDATE {BOOK} SET author_name = 'forged again', num_tags = 7")
    book = Book.objects.get()
    assert (book.author_name, book.title_key, book.num_tags) == ("Ann", "x", 0)
    assert_exact(Author, Book)


def test_writer_cannot_forge_parked_deltas(writer, admin):
    [(pending,)] = admin.execute(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
        "WHERE schemaname = 'dbrules' AND tablename LIKE 'pending\\_author\\_%'"
    ).fetchall()
    ann = Author.objects.create(name="Ann")
    with pytest.raises(errors.InsufficientPrivilege):
        writer.execute(f"INSERT INTO {pending} (dbrules_txid, parent_key) VALUES (txid_current(), %s)", [ann.pk])
    with pytest.raises(errors.InsufficientPrivilege):
        writer.execute(f"TRUNCATE {BOOK}")
    with pytest.raises(errors.InsufficientPrivilege):
        writer.execute(
            "INSERT INTO dbrules.commit_order VALUES (%s, %s, 'id', %s)", [pending, AUTHOR, BOOK]
        )
    assert_exact(Author, Book)


def test_writer_cannot_make_the_commit_run_what_dbrules_parked_names(writer, admin):
    """The setting that lists the pending tables a transaction parked for
    is the writer's to set; the commit-time locks it selects come from
    dbrules.commit_order, which the writer cannot write. A forged entry
    selects nothing, and the commit still locks and applies what parked."""
    ann, bob = Author.objects.create(name="Ann"), Author.objects.create(name="Bob")
    reader = Reader.objects.create(name="R")
    admin.execute(f"GRANT INSERT ON {LOAN} TO {ROLE}")
    admin.execute(f"GRANT USAGE ON SEQUENCE {LOAN}_id_seq TO {ROLE}")
    book = Book.objects.create(author=ann, title="lent")
    forged = f"{AUTHOR}; DROP TABLE {BOOK};"
    with writer.transaction():
        writer.execute("SELECT set_config('dbrules.deferred', 'on', true)")
        writer.execute(f"INSERT INTO {BOOK} ({COLUMNS}) VALUES (%s, 'd', 1, true, '', '', '', '', 0, 0)", [bob.pk])
        writer.execute(
            f"INSERT INTO {LOAN} (reader_id, book_id, returned, book_title) VALUES (%s, %s, false, '')",
            [reader.pk, book.pk],
        )
        writer.execute(
            "SELECT set_config('dbrules.parked', current_setting('dbrules.parked') || %s, true)", [forged]
        )
    assert Author.objects.get(pk=bob.pk).num_books == 1
    assert Reader.objects.get(pk=reader.pk).num_loans == 1
    assert_exact(Author, Book, Reader, Loan)


def test_writer_cannot_disable_replace_or_skip_the_triggers(writer, admin):
    ann = Author.objects.create(name="Ann")
    with pytest.raises(errors.InsufficientPrivilege):
        writer.execute(f"ALTER TABLE {BOOK} DISABLE TRIGGER ALL")
    with pytest.raises(errors.InsufficientPrivilege):
        writer.execute("SET session_replication_role = replica")
    trigger = admin.execute(
        "SELECT tgname FROM pg_trigger WHERE tgname LIKE 'pgtrigger_dbrules_author_books_ins_%'"
    ).fetchone()[0]
    with pytest.raises(errors.InsufficientPrivilege):
        writer.execute(f"DROP TRIGGER {trigger} ON {BOOK}")
    function = function_of(admin, "dbrules_author_books_ins")
    with pytest.raises(errors.InsufficientPrivilege):
        writer.execute(f"ALTER FUNCTION {function}() SECURITY INVOKER")
    with pytest.raises(errors.InsufficientPrivilege):
        writer.execute(
            f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RETURN NULL; END $$"
        )
    # A table of the writer's own that inherits the child would hide rows
    # from the triggers but not from annotate().
    with pytest.raises(errors.InsufficientPrivilege):
        writer.execute(f"CREATE TEMP TABLE hidden () INHERITS ({BOOK})")
    # django-pgtrigger's escape hatch does not apply to dbrules' triggers.
    names = "{" + ",".join(
        r[0] for r in admin.execute("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'pgtrigger_dbrules_%'")
    ) + "}"
    writer.execute("SELECT set_config('pgtrigger.ignore', %s, false)", [names])
    writer.execute(f"INSERT INTO {BOOK} ({COLUMNS}) VALUES (%s, 'x', 1, true, '', '', '', '', 0, 0)", [ann.pk])
    assert Author.objects.get(pk=ann.pk).num_books == 1
    assert_exact(Author, Book)


def test_writer_cannot_redirect_the_functions(writer):
    """A temporary table named like the parent and a temporary function named
    like one the rules call, both first in the writer's search_path, are
    never what the trigger functions use."""
    ann = Author.objects.create(name="Ann")
    writer.execute(f"CREATE TEMP TABLE {AUTHOR} (id bigint, num_books int, num_published int)")
    writer.execute(f"INSERT INTO pg_temp.{AUTHOR} VALUES (%s, 0, 0)", [ann.pk])
    writer.execute(
        "CREATE FUNCTION pg_temp.lower(text) RETURNS text LANGUAGE sql AS $$ SELECT 'hijacked' $$"
    )
    writer.execute("SET search_path = pg_temp, public")
    writer.execute(f"INSERT INTO public.{BOOK} ({COLUMNS}) VALUES (%s, 'X', 1, true, '', '', '', '', 0, 0)", [ann.pk])
    assert writer.execute(f"SELECT num_books FROM pg_temp.{AUTHOR}").fetchone() == (0,)
    assert Author.objects.get(pk=ann.pk).num_books == 1
    assert Book.objects.get().title_key == "x"
    assert_exact(Author, Book)


@pytest.mark.parametrize(
    "trigger, event",
    [
        # The statement trigger that adds a child's deltas to its parent:
        # attached to the writer's own table, it adds whatever rows the
        # writer inserts there.
        ("dbrules_author_books_ins", "AFTER INSERT ON fake REFERENCING NEW TABLE AS dbrules_new FOR EACH STATEMENT"),
        # The TRUNCATE trigger resets every parent's aggregates.
        ("dbrules_author_books_trunc", "AFTER TRUNCATE ON fake FOR EACH STATEMENT"),
    ],
)
def test_writer_cannot_run_the_trigger_functions_on_its_own_table(writer, admin, trigger, event):
    """dbrules' functions are SECURITY DEFINER: whoever can attach one to a
    table of their own (every role may create temporary tables, and
    functions are executable by PUBLIC unless revoked) runs it as the
    function's owner, with rows of their choosing."""
    ann = Author.objects.create(name="Ann")
    Book.objects.bulk_create([Book(author=ann, title=str(i), published=True) for i in range(3)])
    function = function_of(admin, trigger)
    writer.execute(
        "CREATE TEMP TABLE fake (author_id bigint, published boolean, pages integer, "
        "published_on date, price numeric)"
    )
    try:
        writer.execute(sql.SQL(f"CREATE TRIGGER fake_{trigger[-3:]} {event} EXECUTE FUNCTION {function}()"))
    except errors.InsufficientPrivilege:
        pass  # what should happen
    else:
        writer.execute("INSERT INTO fake SELECT %s, true, 1, NULL, NULL FROM generate_series(1, 999)", [ann.pk])
        writer.execute("TRUNCATE fake")
    assert Author.objects.get(pk=ann.pk).num_books == 3
    assert_exact(Author, Book)


def test_column_grants_let_a_program_rename_parents_but_not_write_derived_columns(admin):
    """A program that edits authors' names gets UPDATE on that column only:
    copies follow the rename, derived columns stay out of reach even with
    the repair switch set."""
    role = scratch_name("dbrules_author_editor")
    conn = connect_as(
        admin,
        role,
        [
            f"GRANT USAGE ON SCHEMA public TO {role}",
            f"GRANT SELECT (id, name), UPDATE (name) ON {AUTHOR} TO {role}",
        ],
    )
    try:
        ann = Author.objects.create(name="Ann")
        Book.objects.create(author=ann, title="t")
        conn.execute(f"UPDATE {AUTHOR} SET name = 'Anne' WHERE id = %s", [ann.pk])
        conn.execute("SELECT set_config('dbrules.repairing', 'on', false)")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(f"UPDATE {AUTHOR} SET num_books = 999 WHERE id = %s", [ann.pk])
        assert Book.objects.get().author_name == "Anne"
        assert_exact(Author, Book)
    finally:
        conn.close()
        admin.execute(f"DROP OWNED BY {role}")
        admin.execute(f"DROP ROLE {role}")


def test_copy_trigger_without_pinned_search_path_cannot_be_redirected(admin):
    """Loan's copy trigger runs as its owner without a pinned search_path
    (the pin costs a configuration change per row). It names pg_catalog's
    ``=`` itself, so an operator of the writer's own, first in the writer's
    search_path, never runs with the owner's rights."""
    role, loan = scratch_name("dbrules_loan_writer"), Loan._meta.db_table
    [(database,)] = admin.execute("SELECT current_database()").fetchall()
    conn = connect_as(
        admin,
        role,
        [
            f"GRANT USAGE ON SCHEMA public TO {role}",
            f"GRANT SELECT, INSERT, UPDATE ON {loan} TO {role}",
            f"GRANT USAGE ON SEQUENCE {loan}_id_seq TO {role}",
            f'GRANT CREATE ON DATABASE "{database}" TO {role}',
        ],
    )
    try:
        book = Book.objects.create(author=Author.objects.create(name="Ann"), title="Dune")
        reader = Reader.objects.create(name="Rea")
        conn.execute("CREATE SCHEMA hostile")
        conn.execute(
            "CREATE FUNCTION hostile.eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql "
            "AS $$ BEGIN RAISE EXCEPTION 'redirected, running as %', current_user; END $$"
        )
        conn.execute("CREATE OPERATOR hostile.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = hostile.eq)")
        conn.execute("SET search_path = hostile, pg_catalog, public")
        with pytest.raises(errors.RaiseException):  # it does shadow pg_catalog's = here
            conn.execute("SELECT 1::bigint = 1::bigint")
        conn.execute(
            f"INSERT INTO public.{loan} (reader_id, book_id, returned, book_title) VALUES (%s, %s, false, 'forged')",
            [reader.pk, book.pk],
        )
        conn.execute(f"UPDATE public.{loan} SET book_title = 'forged again'")
        assert Loan.objects.get().book_title == "Dune"
        assert Reader.objects.get().num_loans == 1
        assert_exact(Reader, Loan)
    finally:
        conn.close()
        admin.execute(f'REVOKE CREATE ON DATABASE "{database}" FROM {role}')
        admin.execute(f"DROP OWNED BY {role}")
        admin.execute(f"DROP ROLE {role}")


# Types of the bookstore's columns, for the shadowing test below.
SHADOWED_TYPES = [
    "smallint", "integer", "bigint", "numeric", "boolean", "text", "character varying", "date",
]
SHADOWED_OPERATORS = ["=", "<>", "<", ">", "<=", ">=", "+", "-", "*", "/", "||"]


def shadow_pg_catalog(conn: psycopg.Connection) -> None:
    """A schema ``hostile`` whose operators and functions mirror pg_catalog's
    for the bookstore's types -- plus exact varchar matches, which win over
    pg_catalog's text ones even when pg_catalog comes first -- and raise."""
    conn.execute("CREATE SCHEMA hostile")
    conn.execute(
        "CREATE FUNCTION hostile.trap() RETURNS void LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'resolved through the caller''s search_path'; END $$"
    )
    pairs = conn.execute(
        "SELECT o.oprname, format_type(o.oprleft, NULL), format_type(o.oprright, NULL), "
        "       format_type(o.oprresult, NULL) "
        "  FROM pg_operator o "
        " WHERE o.oprnamespace = 'pg_catalog'::regnamespace AND o.oprname = ANY(%s) "
        "   AND format_type(o.oprleft, NULL) = ANY(%s) AND format_type(o.oprright, NULL) = ANY(%s)",
        [SHADOWED_OPERATORS, SHADOWED_TYPES, SHADOWED_TYPES],
    ).fetchall()
    varchar = "character varying"
    pairs += [(op, varchar, varchar, "boolean") for op in ["=", "<>", "<", ">", "<=", ">="]]
    pairs += [("||", varchar, varchar, "text")]
    for n, (name, left, right, result) in enumerate(pairs):
        conn.execute(
            f"CREATE FUNCTION hostile.op{n}({left}, {right}) RETURNS {result} LANGUAGE plpgsql "
            "AS $$ BEGIN PERFORM hostile.trap(); RETURN NULL; END $$"
        )
        conn.execute(f"CREATE OPERATOR hostile.{name} (LEFTARG = {left}, RIGHTARG = {right}, FUNCTION = hostile.op{n})")
    functions = [
        ("lower", "text", "text"), ("lower", varchar, "text"), ("upper", varchar, "text"),
        ("current_setting", "text, boolean", "text"), ("txid_current", "", "bigint"),
    ]
    for name, args, result in functions:
        conn.execute(
            f"CREATE FUNCTION hostile.{name}({args}) RETURNS {result} LANGUAGE plpgsql "
            "AS $$ BEGIN PERFORM hostile.trap(); RETURN NULL; END $$"
        )
    for kind in ["integer", "bigint", "numeric", "date"]:
        conn.execute(
            f"CREATE FUNCTION hostile.step(numeric, {kind}) RETURNS numeric LANGUAGE plpgsql "
            "AS $$ BEGIN PERFORM hostile.trap(); RETURN NULL; END $$"
        )
        for aggregate in ["sum", "min", "max", "count"]:
            conn.execute(f"CREATE AGGREGATE hostile.{aggregate}({kind}) (SFUNC = hostile.step, STYPE = numeric)")
    conn.execute(
        "CREATE FUNCTION hostile.step(numeric) RETURNS numeric LANGUAGE plpgsql "
        "AS $$ BEGIN PERFORM hostile.trap(); RETURN NULL; END $$"
    )
    conn.execute("CREATE AGGREGATE hostile.count(*) (SFUNC = hostile.step, STYPE = numeric)")


def test_functions_without_pinned_search_path_resolve_nothing_through_it(admin):
    """Bodies written with every operator and function in pg_catalog run
    without a pinned search_path (the pin costs a configuration change per
    call). With a schema shadowing pg_catalog first on the caller's path,
    every write path still runs only pg_catalog's objects: one lookup left
    unqualified would raise here, and as a less privileged caller would run
    the caller's code as the function's owner."""
    eq = "OPERATOR(pg_catalog.=)"
    book, author, publisher, loan = (m._meta.db_table for m in (Book, Author, Publisher, Loan))
    tags = Book.tags.through._meta.db_table
    pub = Publisher.objects.create(name="P")
    ann = Author.objects.create(name="Ann", publisher=pub)
    reader = Reader.objects.create(name="Rea")
    tag = Book.tags.field.related_model.objects.create(name="sf")
    try:
        shadow_pg_catalog(admin)
        admin.execute("SET search_path = hostile, pg_catalog, public")
        with pytest.raises(errors.RaiseException):  # the shadows do win for the caller
            admin.execute("SELECT 'a'::varchar = 'a'::varchar")
        [(bob,)] = admin.execute(
            f"INSERT INTO public.{author} (name, email, num_books, num_published, total_pages, standing) "
            "VALUES ('Bob', 'BOB@X', 5, 5, 5, 'forged') RETURNING id"
        ).fetchall()
        admin.execute(f"UPDATE public.{author} SET publisher_id = %s, num_books = 9 WHERE id {eq} %s", [pub.pk, bob])
        for pages, price in ((10, "9.50"), (300, "1.25"), (42, None)):
            admin.execute(
                f"INSERT INTO public.{book} ({COLUMNS}, published_on, price) "
                "VALUES (%s, 'Title', %s, true, '', '', '', '', 0, 0, date '2024-01-01', %s)",
                [ann.pk, pages, price],
            )
        ids = [r[0] for r in admin.execute(f"SELECT id FROM public.{book} ORDER BY id")]
        admin.execute(f"UPDATE public.{book} SET pages = 7, published = false WHERE id {eq} %s", [ids[0]])
        admin.execute(f"UPDATE public.{book} SET author_id = %s WHERE id {eq} %s", [bob, ids[1]])
        admin.execute(f"INSERT INTO public.{tags} (book_id, tag_id) VALUES (%s, %s), (%s, %s)", [ids[0], tag.pk, ids[2], tag.pk])
        admin.execute(f"DELETE FROM public.{tags} WHERE book_id {eq} %s", [ids[2]])
        admin.execute(f"INSERT INTO public.{loan} (reader_id, book_id, returned, book_title) VALUES (%s, %s, false, 'x')", [reader.pk, ids[0]])
        admin.execute(f"UPDATE public.{loan} SET returned = true")
        admin.execute(f"UPDATE public.{author} SET name = 'Anne' WHERE id {eq} %s", [ann.pk])
        with admin.transaction():  # deferred mode: parked deltas applied at commit
            admin.execute("SELECT pg_catalog.set_config('dbrules.deferred', 'on', true)")
            admin.execute(
                f"INSERT INTO public.{book} ({COLUMNS}) VALUES (%s, 'Later', 5, true, '', '', '', '', 0, 0)", [bob]
            )
            admin.execute(f"DELETE FROM public.{book} WHERE id {eq} %s", [ids[2]])
        admin.execute(f"DELETE FROM public.{publisher} WHERE id {eq} %s", [Publisher.objects.create(name="Q").pk])
    finally:
        admin.execute("RESET search_path")
        admin.execute("DROP SCHEMA IF EXISTS hostile CASCADE")
    assert Author.objects.get(pk=bob).num_books == 2
    assert Book.objects.get(pk=ids[0]).title_key == "title"
    assert_exact(Publisher, Author, Book, Reader, Loan, Book.tags.field.related_model)


def test_statement_and_commit_functions_run_without_jit(admin):
    """A session plans a statement trigger's queries once, for the first
    call's transition table; JIT would then compile a plan sized for a bulk
    statement again on every later small one. Statement-level functions turn
    it off: for the whole call, or, where a one-row branch comes first, after
    it (test_one_row_branch_keeps_the_sessions_jit). Row functions, called
    per row, pay no setting. Commit-time functions fire once per parked row
    and work in one firing: that firing sets jit and plan_cache_mode, and
    gives the session its own back."""
    rows = admin.execute(
        "SELECT t.tgname, (t.tgtype & 1) = 0, t.tgdeferrable, coalesce(p.proconfig, '{}'), p.prosrc "
        "FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid WHERE t.tgname LIKE 'pgtrigger_dbrules_%'"
    ).fetchall()
    assert any(deferrable for _, _, deferrable, _, _ in rows)
    in_body = [name for name, per_statement, _, config, _ in rows if per_statement and "jit=off" not in config]
    assert in_body and len(in_body) < sum(per_statement for _, per_statement, _, _, _ in rows)
    for name, per_statement, deferrable, config, source in rows:
        if not per_statement:
            assert "jit=off" not in config, (name, config)
        elif name in in_body:
            assert "set_config('jit', 'off', true)" in source, name
            assert "set_config('jit', dbrules_jit, true)" in source, name
        if deferrable:
            assert "set_config('jit', 'off', true)" in source, name
            assert "set_config('plan_cache_mode', 'force_custom_plan', true)" in source, name

    author = Author.objects.create(name="Ann")
    admin.execute("SET jit = on")
    admin.execute("SET plan_cache_mode = force_generic_plan")
    with admin.transaction():
        admin.execute("SELECT set_config('dbrules.deferred', 'on', true)")
        admin.execute(
            f"INSERT INTO {Book._meta.db_table} ({COLUMNS}) VALUES (%s, 'A', 5, true, '', '', '', '', 0, 0)",
            [author.pk],
        )
        admin.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the commit's work, in this transaction
        settings = admin.execute("SELECT current_setting('jit'), current_setting('plan_cache_mode')").fetchone()
        assert settings == ("on", "force_generic_plan")
    assert Author.objects.get(pk=author.pk).num_books == 1
    assert_exact(Author, Book)


def test_one_row_branch_keeps_the_sessions_jit(admin):
    """The statement trigger of a one-row write updates the parent under the
    session's own jit setting, with no configuration change; its statements
    over several rows, whichever of their two plans runs, under jit = off;
    the session's setting is its own again after either. Transfers, whose
    two relations lock their accounts together before the one-row branch,
    keep jit off for the whole call (SET on the function)."""
    author = Author.objects.create(name="Ann")
    seen = "public.dbrules_test_jit_seen"
    # Django's own connection, so that the annotate() oracle sees the rows
    # before the block rolls back with the spy.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {seen} (setting text)")
        # Named in full: it fires inside dbrules' functions, which may pin
        # the search_path.
        cursor.execute(
            f"CREATE FUNCTION {seen}_spy() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN INSERT INTO {seen} VALUES (current_setting('jit')); RETURN NULL; END $$"
        )
        cursor.execute(
            f"CREATE TRIGGER dbrules_test_jit_spy AFTER UPDATE ON {AUTHOR} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {seen}_spy()"
        )
        cursor.execute("SET LOCAL jit = on")

        def settings_during(rows: int) -> set[str]:
            cursor.execute(f"DELETE FROM {seen}")
            cursor.execute(
                f"INSERT INTO {BOOK} ({COLUMNS}) "
                f"SELECT %s, 'b' || g, g, true, '', '', '', '', 0, 0 FROM generate_series(1, %s) AS g",
                [author.pk, rows],
            )
            cursor.execute("SELECT current_setting('jit')")
            assert cursor.fetchone() == ("on",)
            cursor.execute(f"SELECT setting FROM {seen}")
            return {setting for (setting,) in cursor.fetchall()}

        assert settings_during(1) == {"on"}
        assert settings_during(3) == {"off"}  # fewer than 64 rows: the small plans
        assert settings_during(100) == {"off"}
        assert settings_during(1) == {"on"}
        assert Author.objects.get(pk=author.pk).num_books == 105
        assert_exact(Author, Book)
        transaction.set_rollback(True)
    sibling_configs = admin.execute(
        "SELECT coalesce(p.proconfig, '{}') FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid "
        "WHERE t.tgname LIKE 'pgtrigger_dbrules_account_%' AND (t.tgtype & 1) = 0 AND t.tgname NOT LIKE '%trunc%'"
    ).fetchall()
    assert sibling_configs and all("jit=off" in config for (config,) in sibling_configs)
