--! A one-row UPDATE: its old and new row. The same parent gets the
--! difference; a row moved to another parent updates both, locking them in
--! key order (one_row_move_locked.sql, one_row_move_ordered.sql).
IF one.dbrules_old_key = one.dbrules_new_key THEN
    IF {{same_changed}} THEN
        {{lock_same}}
        UPDATE {{parent_table}} AS p
           SET {{same_assignments}}
         WHERE p.{{parent_key}} = one.dbrules_new_key;
{{same_missed}}
    END IF;
ELSIF {{moved_changed}} THEN
{{moved}}
END IF;
