--! When source rows of a copy are inserted, rows that reach them may be
--! there already: inserted first in this transaction (Django's ForeignKeys
--! are checked at commit) or with no constraint at all. Once per statement:
--! they are rare, and the probe finding none fires no trigger of theirs.
--! The probe is a scalar subquery per inserted row, which PostgreSQL runs as
--! an index probe and never turns into a join: a plan cached for a large
--! first statement cannot make later one-row inserts scan the table.
IF EXISTS (SELECT 1 FROM dbrules_new AS n WHERE ({{probe}})) THEN
    UPDATE {{model_table}} AS m
       SET {{target}} = {{lookup}}
     WHERE {{reaches_inserted}}
       AND m.{{target}} IS DISTINCT FROM {{lookup}};
END IF;
RETURN NULL;
