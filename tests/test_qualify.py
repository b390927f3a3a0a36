"""dbrules.qualify: bodies rewritten to resolve every name in pg_catalog, or
refused (they keep the pinned search_path) when that cannot be done."""

from __future__ import annotations

import pytest

from dbrules.qualify import qualify

Q = "OPERATOR(pg_catalog.{})".format


@pytest.mark.parametrize(
    "body, expected",
    [
        ('WHERE t1."id" = NEW."a_id";', f'WHERE t1."id" {Q("=")} NEW."a_id";'),
        ("x := sum(r.s * r.v);", f"x := pg_catalog.sum(r.s {Q('*')} r.v);"),
        # The SET list's "=" assigns; the one in its WHERE compares.
        (
            'UPDATE "s"."t" AS p SET "a" = p."a" + d."a", "b" = 0 WHERE p."id" = d.k;',
            f'UPDATE "s"."t" AS p SET "a" = p."a" {Q("+")} d."a", "b" = 0 WHERE p."id" {Q("=")} d.k;',
        ),
        ("p.id IN (SELECT d.k FROM dbrules_new AS d)", f"p.id {Q('=')} ANY (SELECT d.k FROM dbrules_new AS d)"),
        ("p.id = ANY (ARRAY(SELECT d.k FROM dbrules_new AS d))",
         f"p.id {Q('=')} ANY (ARRAY(SELECT d.k FROM dbrules_new AS d))"),
        ("SELECT -1 AS s, o.* FROM dbrules_old AS o", "SELECT -1 AS s, o.* FROM dbrules_old AS o"),
        ("r.s = -1 AND count(*) > 0", f"r.s {Q('=')} -1 AND pg_catalog.count(*) {Q('>')} 0"),
        ("x = '2024-01-01'::date", f"x {Q('=')} '2024-01-01'::pg_catalog.date"),
        ("x::integer", "x::integer"),
        ("SELECT d.k FROM unnest(ARRAY(SELECT 1)) AS d", "SELECT d.k FROM pg_catalog.unnest(ARRAY(SELECT 1)) AS d"),
        ('ROW(1, 2)::"dbrules"."pending_x"', 'ROW(1, 2)::"dbrules"."pending_x"'),
        ("coalesce(a, 'b''c') || LOWER(b)", f"coalesce(a, 'b''c') {Q('||')} pg_catalog.LOWER(b)"),
        ("((a * 3) + 50)", f"((a {Q('*')} 3) {Q('+')} 50)"),
        ("a != b", f"a {Q('<>')} b"),
        ("CASE WHEN a >= 3 THEN 'x' ELSE 'y' END", f"CASE WHEN a {Q('>=')} 3 THEN 'x' ELSE 'y' END"),
        # A block label where a statement starts names nothing.
        (
            "x := 1;\n<<counts>>\nBEGIN\nIF x = 1 THEN\n    EXIT counts;\nEND IF;\nEND counts;",
            f"x := 1;\n<<counts>>\nBEGIN\nIF x {Q('=')} 1 THEN\n    EXIT counts;\nEND IF;\nEND counts;",
        ),
        # In its own statement a CTE's name is the CTE, not a table.
        (
            "WITH d AS (SELECT n.k FROM dbrules_new AS n), e AS (SELECT d.k FROM d) "
            'UPDATE "s"."t" AS p SET "a" = 1 FROM d JOIN e ON e.k = d.k WHERE p."id" = d.k;',
            "WITH d AS (SELECT n.k FROM dbrules_new AS n), e AS (SELECT d.k FROM d) "
            f'UPDATE "s"."t" AS p SET "a" = 1 FROM d JOIN e ON e.k {Q("=")} d.k WHERE p."id" {Q("=")} d.k;',
        ),
        # A recursive CTE's name, and PL/pgSQL's FOR ... IN query LOOP.
        (
            "FOR x IN WITH RECURSIVE b AS (SELECT 0 AS d UNION SELECT b.d + 1 FROM b WHERE b.d < 3) "
            "SELECT max(b.d) FROM b LOOP\n    EXECUTE x;\nEND LOOP;",
            f"FOR x IN WITH RECURSIVE b AS (SELECT 0 AS d UNION SELECT b.d {Q('+')} 1 FROM b WHERE b.d {Q('<')} 3) "
            "SELECT pg_catalog.max(b.d) FROM b LOOP\n    EXECUTE x;\nEND LOOP;",
        ),
        # EXECUTE's string is qualified before it is written (planned_each_call);
        # its USING passes values, where USING elsewhere names an operator.
        (
            "EXECUTE 'SELECT pg_catalog.unnest($1)' INTO a, b\n  USING dbrules_deltas;\nSELECT x = 1;",
            f"EXECUTE 'SELECT pg_catalog.unnest($1)' INTO a, b\n  USING dbrules_deltas;\nSELECT x {Q('=')} 1;",
        ),
    ],
)
def test_qualifies(body, expected):
    assert qualify(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        "a IS DISTINCT FROM b",  # an implicit = with no qualified spelling
        "a IS NOT DISTINCT FROM b",
        "a LIKE 'x%'",
        "a BETWEEN 1 AND 2",
        "a NOT IN (SELECT b FROM dbrules_new)",
        "a IN (1, 2)",
        "CASE a WHEN 1 THEN 2 END",
        "nullif(a, 0)",
        "a + ANY(b)",  # ANY after anything but a comparison
        "a COLLATE \"C\"",
        "x::regclass",
        'x::"pending_x"',  # a type left to the caller's path
        "a + b * c",  # OPERATOR() would regroup it as (a + b) * c
        "a = b + c",
        "a = b = c",
        "- a",  # a prefix operator on an expression
        "a ~ 'x'",  # an operator dbrules never writes
        "a <<b>> c",  # two shifts, not a label: no statement starts there
        "SELECT 1 FROM t",  # a table left to the caller's path
        "UPDATE t SET a = 1",
        "INSERT INTO t VALUES (1)",
        "WITH d AS (SELECT 1) SELECT 1 FROM d; SELECT 1 FROM d;",  # d is a table again
        "a = $1",
        "SELECT 1 FROM dbrules_new AS n JOIN dbrules_old AS o USING (k)",  # USING's implicit =
        "EXECUTE x; SELECT a FROM dbrules_new ORDER BY a USING <",  # a USING after the EXECUTE ended
        "(a",
        "a)",
    ],
)
def test_refuses(body):
    assert qualify(body) is None
