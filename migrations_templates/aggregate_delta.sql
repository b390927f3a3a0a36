--! Count/Sum/Min/Max rules over one relation: the statement trigger on the
--! child table (AFTER INSERT / UPDATE / DELETE ... FOR EACH STATEMENT).
--!
--! A statement that wrote one row -- the usual single-row write -- reads that
--! row (and, for an UPDATE, its old version) once and applies its deltas by
--! key: no aggregate, no grouping (one_row_side.sql, one_row_update.sql).
--!
--! Otherwise `deltas` groups the statement's transition rows per parent:
--! rows it removed count with sign -1, rows it added with +1. A first,
--! ungrouped pass finds the lowest and highest parent key with the same
--! delta columns over all rows. When both are the same parent, those are
--! its deltas, applied with a cached, indexed one-row UPDATE. A statement
--! that touches several parents locks them all in primary-key order first,
--! so concurrent writers queue on a hot parent instead of deadlocking, and
--! updates them in one set-based statement: bulk writes stay linear in the
--! number of rows, and the parents' own triggers (a chained rule on a
--! grandparent) fire once, after every parent lock is held -- updating the
--! parents one statement at a time would take a grandparent's lock between
--! two parents' and break the order.
--! A copy whose first hop is this relation is checked here, after the
--! parents are locked and updated (copy_check.sql; one trigger, one read of
--! a one-row statement, whose parent UPDATE returns the copy's source).
--! `n = n + delta` under the row lock never loses a concurrent writer's
--! change the way a recount under READ COMMITTED can. In deferred mode (per
--! rule, or per transaction with dbrules.deferred()) the deltas are parked in
--! the group's pending table and applied once at commit (aggregate_apply.sql).
IF {{deferred}} THEN
    INSERT INTO {{pending_table}} (dbrules_txid, parent_key, {{pending_columns}})
    SELECT txid_current(), d.*
      FROM ({{deltas}}) AS d
     WHERE {{any_change}};
    RETURN NULL;
END IF;
{{one_row_branch}}
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
    END IF;
    EXIT dbrules_counts;
END IF;
{{apply_all}}
END dbrules_counts;
{{copy_rows}}
RETURN NULL;
