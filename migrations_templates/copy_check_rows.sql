--! copy_check.sql for a statement that wrote several rows (for an UPDATE,
--! the rows it moved): lock their sources, find the stale copies, rewrite.
{{locks}}
-- An aggregate, not EXISTS: planned for a first row, EXISTS joined the
-- parents by nested loop (2 s for a 50,000-row move); this hash-joins once.
SELECT array_agg(x.dbrules_pk) AS keys INTO stale FROM ({{compare}}) AS x WHERE {{stale}};
IF stale.keys IS NOT NULL THEN
    UPDATE {{child_table}} AS c
       SET {{assignments}}
     WHERE c.{{pk}} IN (SELECT unnest(stale.keys))
       AND ({{still_stale}});
END IF;
