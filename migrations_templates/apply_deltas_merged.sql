--! Apply per-parent deltas set-based, in one statement: the deltas are
--! grouped once, the parents that change are locked in primary-key order
--! (the LockRows of `locked`, above its sort: an ORDER BY inside
--! UPDATE ... FROM does not order row locks), and each is updated once
--! from the deltas `locked` returns with it, so every wait happens there,
--! in key order. The UPDATE joins a table to one CTE, never two CTEs: a
--! session keeps this plan with the row counts of its first run, and a join
--! of two CTEs planned for two rows is a nested loop that compares every
--! pair when a later statement brings 20,000 (68 s instead of 0.1 s).
--! Under READ COMMITTED the UPDATE adds the delta to the newest version of
--! a parent another writer changed while this one waited. For deltas
--! alone: a rescan (Min/Max whose extreme left, a nullable Sum that may
--! become empty) needs a snapshot taken after the locks, and keeps the two
--! statements of apply_deltas.sql.
--! The counts tell whether a changed parent was not there to update
--! (missed_parents.sql).
WITH d AS ({{deltas}}),
     locked AS (
    SELECT d.*
      FROM {{parent_table}} AS p JOIN d ON d.parent_key = p.{{parent_key}}
     WHERE {{any_change}}
     ORDER BY p.{{parent_key}}
       FOR NO KEY UPDATE OF p),
     applied AS (
    UPDATE {{parent_table}} AS p
       SET {{assignments}}
      FROM locked AS d
     WHERE p.{{parent_key}} = d.parent_key
    RETURNING 1)
SELECT (SELECT count(*) FROM applied), (SELECT count(*) FROM d WHERE {{any_change}})
  INTO dbrules_applied, dbrules_changed;
{{missed}}
