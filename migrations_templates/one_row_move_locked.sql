--! A row moved to another parent, when updating a parent locks more rows
--! (a chained rule's grandparent, the copies of a derived column) or
--! rescans: both parents are locked in key order first, as the set-based
--! path does, then updated in one statement. A chained rule's statement
--! trigger on the parent table then sees both rows at once and locks the
--! grandparents in key order too; two one-row UPDATEs would lock them in
--! old-then-new order, and crossing moves deadlocked. The UPDATE is a
--! statement of its own, so a rescan in it sees every earlier writer.
PERFORM 1
   FROM {{parent_table}} AS p
  WHERE p.{{parent_key}} = one.dbrules_old_key OR p.{{parent_key}} = one.dbrules_new_key
  ORDER BY p.{{parent_key}}
    FOR NO KEY UPDATE OF p;
UPDATE {{parent_table}} AS p
   SET {{both_assignments}}
 WHERE (p.{{parent_key}} = one.dbrules_old_key AND {{old_applies}})
    OR (p.{{parent_key}} = one.dbrules_new_key AND {{new_applies}});
GET DIAGNOSTICS dbrules_applied = ROW_COUNT;
IF dbrules_applied < (CASE WHEN {{old_applies}} THEN 1 ELSE 0 END) + (CASE WHEN {{new_applies}} THEN 1 ELSE 0 END) THEN
{{old_missed}}
{{new_missed}}
END IF;
