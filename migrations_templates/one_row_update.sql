--! A one-row UPDATE: its old and new row. The same parent gets the
--! difference; a row moved to another parent locks both parents in key order
--! first (as the set-based path does, so a chained rule's grandparent is
--! locked only after both), then updates each by key.
IF one.dbrules_old_key = one.dbrules_new_key THEN
    IF {{same_changed}} THEN
        {{lock_same}}
        UPDATE {{parent_table}} AS p
           SET {{same_assignments}}
         WHERE p.{{parent_key}} = one.dbrules_new_key;
    END IF;
ELSIF {{moved_changed}} THEN
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
END IF;
