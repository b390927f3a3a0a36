--! aggregate_delta.sql for a statement of several rows whose rules may
--! rescan (Min/Max, a nullable Sum). A first, ungrouped pass finds the
--! lowest and highest parent key with the same delta columns over all
--! rows: when both are the same parent, those are its deltas, locked and
--! applied with a cached, indexed one-row UPDATE. Otherwise
--! apply_deltas.sql locks every parent first, then updates them in a
--! statement of its own, so its rescans see every earlier writer.
<<dbrules_counts>>
BEGIN
SELECT min(r.{{fk}}) AS dbrules_low, max(r.{{fk}}) AS dbrules_high,
       {{delta_columns}}
  INTO single
  FROM ({{signed_rows}}) AS r
 WHERE r.{{fk}} IS NOT NULL;
IF single.dbrules_low IS NULL THEN
    EXIT dbrules_counts;
END IF;
IF single.dbrules_low = single.dbrules_high THEN
    IF {{single_changed}} THEN
        {{lock_one}}
        UPDATE {{parent_table}} AS p
           SET {{single_assignments}}
         WHERE p.{{parent_key}} = single.dbrules_low;
{{single_missed}}
    END IF;
    EXIT dbrules_counts;
END IF;
{{apply_all}}
END dbrules_counts;
