--! TRUNCATE fires no row or transition-table triggers: after it, every
--! parent's aggregate over this child table is the aggregate of no rows.
UPDATE {{parent_table}} AS p
   SET {{assignments}}
 WHERE {{any_change}};
RETURN NULL;
