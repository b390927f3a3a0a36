--! Apply per-parent deltas set-based: lock the parents in primary-key order
--! first (an ORDER BY inside UPDATE ... FROM does not order row locks), then
--! update each once -- or, when no parent changes, not at all. The UPDATE is
--! a statement of its own, so a rescan in it (Min/Max whose extreme left, a
--! nullable Sum that may become empty) takes its snapshot after every
--! earlier writer of these parents has committed.
PERFORM 1
   FROM {{parent_table}} AS p
  WHERE p.{{parent_key}} IN (SELECT d.parent_key FROM ({{deltas}}) AS d WHERE {{any_change}})
  ORDER BY p.{{parent_key}}
    FOR NO KEY UPDATE OF p;
{{if_none_locked}}
UPDATE {{parent_table}} AS p
   SET {{assignments}}
  FROM ({{deltas}}) AS d
 WHERE p.{{parent_key}} = d.parent_key
   AND ({{any_change}});
