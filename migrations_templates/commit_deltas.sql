--! At commit: the deltas this transaction parked, merged per parent, in
--! an array that the statements applying them read (commit_start.sql).
dbrules_deltas := ARRAY(
    SELECT ROW(txid_current(), q.parent_key, {{merged}})::{{pending_table}}
      FROM {{pending_table}} AS q
     WHERE q.dbrules_txid = txid_current()
     GROUP BY q.parent_key);
