--! Count/Sum/Min/Max rules over one relation: the statement trigger on the
--! child table (AFTER INSERT / UPDATE / DELETE ... FOR EACH STATEMENT).
--!
--! `deltas` groups the statement's transition rows per parent: rows it
--! removed count with sign -1, rows it added with +1. Parents are then
--! locked in primary-key order, so concurrent writers queue on a hot parent
--! instead of deadlocking. A statement that touches one parent (the usual
--! single-row write) updates it with a cached, indexed one-row UPDATE. A
--! statement that touches several locks them all in key order first and
--! updates them in one set-based statement: bulk writes stay linear in the
--! number of rows, and the parents' own triggers (a chained rule on a
--! grandparent) fire once, after every parent lock is held -- updating the
--! parents one statement at a time would take a grandparent's lock between
--! two parents' and break the order. `n = n + delta` under the row lock never
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
    IF touched > 1 THEN
        {{apply_all}}
        RETURN NULL;
    END IF;
    single := delta;
END LOOP;
IF touched = 1 THEN
    {{lock_one}}
    UPDATE {{parent_table}} AS p
       SET {{single_assignments}}
     WHERE p.{{parent_key}} = single.parent_key;
END IF;
RETURN NULL;
