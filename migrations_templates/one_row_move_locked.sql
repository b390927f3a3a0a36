--! A row moved to another parent, when updating a parent locks more rows
--! (a chained rule's grandparent, the copies of a derived column) or
--! rescans: both parents are locked in key order first, as the set-based
--! path does, so nothing further is locked before both; then each is
--! updated by key.
PERFORM 1
   FROM {{parent_table}} AS p
  WHERE p.{{parent_key}} = one.dbrules_old_key OR p.{{parent_key}} = one.dbrules_new_key
  ORDER BY p.{{parent_key}}
    FOR NO KEY UPDATE OF p;
IF {{old_applies}} THEN
    UPDATE {{parent_table}} AS p
       SET {{old_assignments}}
     WHERE p.{{parent_key}} = one.dbrules_old_key;
END IF;
IF {{new_applies}} THEN
    UPDATE {{parent_table}} AS p
       SET {{new_assignments}}
     WHERE p.{{parent_key}} = one.dbrules_new_key{{new_returning}};
    {{new_read}}
END IF;
