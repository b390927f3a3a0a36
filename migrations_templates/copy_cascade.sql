--! When a source row of a copy changes (the copied column, or a ForeignKey
--! further along the path), every dependent row is re-copied in one
--! set-based statement. The trigger is FOR EACH ROW with a WHEN clause that
--! compares OLD and NEW, so PostgreSQL calls it only for rows whose relevant
--! column changed -- dbrules' own count updates on the same table cost
--! nothing here.
UPDATE {{model_table}} AS m
   SET {{target}} = {{lookup}}
 WHERE {{reaches_changed}}
   AND m.{{target}} IS DISTINCT FROM {{lookup}};
RETURN NULL;
