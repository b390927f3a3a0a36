--! copy_check.sql for a statement that wrote several rows (for an UPDATE,
--! the rows it moved): lock their sources, find the first hops whose copies
--! are stale, rewrite the rows of this statement that copy from them.
{{locks}}
-- An aggregate, not EXISTS: planned for a first row, EXISTS joined the
-- parents by nested loop (2 s for a 50,000-row move); this hash-joins once.
SELECT count(*) AS dbrules_stale, {{stale_keys}} INTO stale FROM ({{compare}}) AS x WHERE {{stale}};
IF stale.dbrules_stale > 0 THEN
    UPDATE {{child_table}} AS c
       SET {{assignments}}
     WHERE c.{{pk}} IN ({{stale_rows}})
       AND ({{still_stale}});
END IF;
{{park_missing}}
