--! Count/Sum/Min/Max rules over one relation: the statement trigger on the
--! child table (AFTER INSERT / UPDATE / DELETE ... FOR EACH STATEMENT).
--!
--! A statement that wrote one row -- the usual single-row write -- reads that
--! row (and, for an UPDATE, its old version) once and applies its deltas by
--! key: no aggregate, no grouping (one_row_side.sql, one_row_update.sql).
--!
--! Otherwise `deltas` groups the statement's transition rows per parent:
--! rows it removed count with sign -1, rows it added with +1. The parents
--! that change are locked in primary-key order, so concurrent writers queue
--! on a hot parent instead of deadlocking, and updated in one set-based
--! statement (apply_deltas_merged.sql): bulk writes stay linear in the
--! number of rows, and the parents' own triggers (a chained rule on a
--! grandparent) fire once, after every parent lock is held -- updating the
--! parents one statement at a time would take a grandparent's lock between
--! two parents' and break the order. Rules that may rescan lock first and
--! update in a second statement (apply_several_rescan.sql).
--! A copy whose first hop is this relation is checked here, after the
--! parents are locked and updated (copy_check.sql; one trigger, one read of
--! a one-row statement, whose parent UPDATE returns the copy's source).
--! An UPDATE of several rows by a copy's cascade that can change nothing
--! these rules read returns before any of that (cascade_skip.sql).
--! `n = n + delta` under the row lock never loses a concurrent writer's
--! change the way a recount under READ COMMITTED can. In deferred mode (per
--! rule, or per transaction with dbrules.deferred()) the deltas are parked in
--! the group's pending table and applied once at commit (aggregate_apply.sql).
--! The statements for several rows come in two copies, for fewer rows and
--! for more, each planned for its own sizes (plans_by_size.sql).
--! JIT is off for every statement planned for the transition tables' size
--! (jit_off.sql), and only for those: the one-row branch reads by key.
IF {{deferred}} THEN
    {{nested_jit_off}}
    {{mark_parked}}
    INSERT INTO {{pending_table}} (dbrules_txid, parent_key, {{pending_columns}})
    SELECT txid_current(), d.*
      FROM ({{deltas}}) AS d
     WHERE {{any_change}};
{{recheck}}
    {{jit_back}}
    RETURN NULL;
END IF;
{{sibling_locks}}{{one_row_branch}}{{cascade_skip}}
{{jit_off}}
{{several_rows}}
{{jit_back}}
RETURN NULL;
