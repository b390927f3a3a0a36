--! A row moved to another parent, when updating a parent locks nothing
--! more: each UPDATE takes its parent's lock, the smaller key first (a
--! separate locking statement for both cost about a tenth of a one-row
--! move). A missing key compares as NULL: then only the other side applies.
IF {{old_applies}} AND coalesce(one.dbrules_old_key < one.dbrules_new_key, false) THEN
    UPDATE {{parent_table}} AS p
       SET {{old_assignments}}
     WHERE p.{{parent_key}} = one.dbrules_old_key;
{{old_missed}}
END IF;
IF {{new_applies}} THEN
    UPDATE {{parent_table}} AS p
       SET {{new_assignments}}
     WHERE p.{{parent_key}} = one.dbrules_new_key{{new_returning}};
{{new_missed}}
    {{new_read}}
END IF;
IF {{old_applies}} AND NOT coalesce(one.dbrules_old_key < one.dbrules_new_key, false) THEN
    UPDATE {{parent_table}} AS p
       SET {{old_assignments}}
     WHERE p.{{parent_key}} = one.dbrules_old_key;
{{old_missed}}
END IF;
