--! Count/Sum rules over one reverse ForeignKey, maintained by deltas.
--!
--! Runs once per statement (AFTER ... FOR EACH STATEMENT) over the statement's
--! transition table(s). `signed_rows` is the rows the statement removed
--! (sign -1) and/or added (sign +1). Deltas are grouped per parent, parents
--! are locked in primary-key order (an ORDER BY inside UPDATE ... FROM does
--! not order row locks; this locking CTE does), and each parent is updated
--! once: `n = n + delta` under the row lock, which never loses a concurrent
--! writer's change the way a recount under READ COMMITTED can.
-- Statement triggers fire for statements that touched no row, including
-- dbrules' own empty maintenance updates: stop there.
IF NOT EXISTS (SELECT 1 FROM {{any_rows}}) THEN
    RETURN NULL;
END IF;
{{lock_first}}
WITH deltas AS (
    SELECT r.{{fk}} AS parent_key,
           {{delta_columns}}
      FROM ({{signed_rows}}) AS r
     WHERE r.{{fk}} IS NOT NULL
     GROUP BY r.{{fk}}
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
RETURN NULL;
