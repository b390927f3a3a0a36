--! TRUNCATE fires no row or transition-table triggers: after it, every
--! parent's aggregate over this child table is the aggregate of no rows, and
--! deltas this transaction parked for commit (deferred mode) are moot.
UPDATE {{parent_table}} AS p
   SET {{assignments}}
 WHERE {{any_change}};
DELETE FROM {{pending_table}} WHERE dbrules_txid = txid_current();
RETURN NULL;
