--! Count/Sum/Min/Max rules over one relation: the statement trigger on the
--! child table (AFTER INSERT / UPDATE / DELETE ... FOR EACH STATEMENT).
--!
--! `deltas` groups the statement's transition rows per parent: the rows it
--! removed count with sign -1, the rows it added with +1. Immediately (the
--! default) they are applied by `apply_deltas.sql`. In deferred mode (per
--! rule, or per transaction with dbrules.deferred()) they are parked in the
--! group's pending table and applied once at commit by `aggregate_apply.sql`.
--
-- Statement triggers fire for statements that touched no row, including
-- dbrules' own empty maintenance updates: stop there.
IF NOT EXISTS (SELECT 1 FROM {{any_rows}}) THEN
    RETURN NULL;
END IF;
IF {{deferred}} THEN
    INSERT INTO {{pending_table}} (dbrules_txid, parent_key, {{pending_columns}})
    SELECT txid_current(), d.*
      FROM ({{deltas}}) AS d
     WHERE {{any_change}};
    RETURN NULL;
END IF;
{{lock_first}}
{{apply}}
RETURN NULL;
