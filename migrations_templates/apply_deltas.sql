--! Apply per-parent deltas. Parents are locked in primary-key order (an
--! ORDER BY inside UPDATE ... FROM does not order row locks; this locking
--! CTE does), so concurrent writers queue instead of deadlocking, and each
--! parent is updated once: `n = n + delta` under the row lock never loses a
--! concurrent writer's change the way a recount under READ COMMITTED can.
WITH deltas AS (
{{deltas}}
),
locked AS (
    SELECT p.{{parent_key}} AS parent_key
      FROM {{parent_table}} AS p
     WHERE p.{{parent_key}} IN (SELECT d.parent_key FROM deltas AS d WHERE {{any_change}})
     ORDER BY p.{{parent_key}}
       FOR NO KEY UPDATE OF p
)
UPDATE {{parent_table}} AS p
   SET {{assignments}}
  FROM deltas AS d
 WHERE p.{{parent_key}} = d.parent_key
   AND p.{{parent_key}} IN (SELECT l.parent_key FROM locked AS l);
