--! Apply per-parent deltas set-based: lock the parents in primary-key order
--! first (an ORDER BY inside UPDATE ... FROM does not order row locks), then
--! update each once -- or, when no parent changes, not at all. The UPDATE is
--! a statement of its own, so a rescan in it (Min/Max whose extreme left, a
--! nullable Sum that may become empty) takes its snapshot after every
--! earlier writer of these parents has committed. The counts tell whether a
--! changed parent was not there to lock (missed_parents.sql).
WITH d AS ({{deltas}}),
     locked AS (
    SELECT 1
      FROM {{parent_table}} AS p
     WHERE p.{{parent_key}} IN (SELECT d.parent_key FROM d WHERE {{any_change}})
     ORDER BY p.{{parent_key}}
       FOR NO KEY UPDATE OF p)
SELECT (SELECT count(*) FROM locked), (SELECT count(*) FROM d WHERE {{any_change}})
  INTO dbrules_applied, dbrules_changed;
{{if_none_locked}}
UPDATE {{parent_table}} AS p
   SET {{assignments}}
  FROM ({{deltas}}) AS d
 WHERE p.{{parent_key}} = d.parent_key
   AND ({{any_change}});
{{missed}}
