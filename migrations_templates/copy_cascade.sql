--! When a source row of a copy changes (the copied column, or a ForeignKey
--! further along the path), every dependent row is re-copied in one
--! set-based statement. The trigger is FOR EACH ROW with a WHEN clause that
--! compares OLD and NEW, so PostgreSQL calls it only for rows whose relevant
--! column changed -- dbrules' own count updates on the same table cost
--! nothing here. The rows it reaches all copy one value, read from this
--! row as it is now (not NEW: a later trigger may have changed it again),
--! once per call; the dependents' row trigger does not look it up again.
--! A mark around the UPDATE lets the dependents' statement triggers that
--! read nothing it changes return at once (cascade_skip.sql).
{{mark}}
UPDATE {{model_table}} AS m
   SET {{target}} = {{value}}
 WHERE {{reaches_changed}}
   AND m.{{target}} IS DISTINCT FROM {{value}};
{{unmark}}
RETURN NULL;
