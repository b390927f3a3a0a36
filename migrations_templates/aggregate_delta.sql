--! Count/Sum/Min/Max rules over one relation: the statement trigger on the
--! child table (AFTER INSERT / UPDATE / DELETE ... FOR EACH STATEMENT).
--!
--! `deltas` groups the statement's transition rows per parent: rows it
--! removed count with sign -1, rows it added with +1. Parents are then
--! updated in primary-key order, so concurrent writers queue on a hot parent
--! instead of deadlocking. A statement that touches few parents (the usual
--! single-row write) updates each with a cached, indexed one-row UPDATE --
--! as cheap as a row-level trigger. Past {{loop_limit}} parents the rest are locked in
--! key order and updated by one set-based statement, which keeps bulk writes
--! linear in the number of rows. `n = n + delta` under the row lock never
--! loses a concurrent writer's change the way a recount under READ COMMITTED
--! can. In deferred mode (per rule, or per transaction with
--! dbrules.deferred()) the deltas are parked in the group's pending table and
--! applied once at commit (aggregate_apply.sql).
IF {{deferred}} THEN
    INSERT INTO {{pending_table}} (dbrules_txid, parent_key, {{pending_columns}})
    SELECT txid_current(), d.*
      FROM ({{deltas}}) AS d
     WHERE {{any_change}};
    RETURN NULL;
END IF;
touched := 0;
FOR delta IN
    SELECT * FROM ({{deltas}}) AS d WHERE {{any_change}} ORDER BY d.parent_key
LOOP
    touched := touched + 1;
    IF touched > {{loop_limit}} THEN
        {{apply_rest}}
        EXIT;
    END IF;
    {{lock_one}}
    UPDATE {{parent_table}} AS p
       SET {{loop_assignments}}
     WHERE p.{{parent_key}} = delta.parent_key;
END LOOP;
RETURN NULL;
