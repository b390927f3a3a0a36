--! Apply per-parent deltas set-based, in one statement: the deltas are
--! grouped once, the parents that change are locked in primary-key order
--! (the LockRows of `locked`, above its sort: an ORDER BY inside
--! UPDATE ... FROM does not order row locks), and each is updated once. A
--! parent is updated only after `locked` has returned it, so every wait
--! happens there, in key order. Under READ COMMITTED the UPDATE adds the
--! delta to the newest version of a parent another writer changed while
--! this one waited. For deltas alone: a rescan (Min/Max whose extreme left,
--! a nullable Sum that may become empty) needs a snapshot taken after the
--! locks, and keeps the two statements of apply_deltas.sql.
--! The counts tell whether a changed parent was not there to update
--! (missed_parents.sql).
WITH d AS ({{deltas}}),
     locked AS (
    SELECT p.{{parent_key}} AS dbrules_key
      FROM {{parent_table}} AS p
     WHERE p.{{parent_key}} IN (SELECT d.parent_key FROM d WHERE {{any_change}})
     ORDER BY p.{{parent_key}}
       FOR NO KEY UPDATE OF p),
     applied AS (
    UPDATE {{parent_table}} AS p
       SET {{assignments}}
      FROM d JOIN locked ON locked.dbrules_key = d.parent_key
     WHERE p.{{parent_key}} = d.parent_key
    RETURNING 1)
SELECT (SELECT count(*) FROM applied), (SELECT count(*) FROM d WHERE {{any_change}})
  INTO dbrules_applied, dbrules_changed;
{{missed}}
