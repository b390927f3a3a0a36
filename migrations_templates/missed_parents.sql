--! A changed parent that was not there to update: inserted, or given this
--! key, by a transaction that has not committed (or later in this one).
--! Its deltas are parked as in deferred mode and applied at this
--! transaction's commit, where Django's deferred ForeignKey check also runs:
--! by then the parent has committed, or the commit fails. A parent that
--! computes its value later in this transaction drops them again
--! (parent_insert.sql, parent_rekey.sql).
IF dbrules_applied < dbrules_changed THEN
    {{mark_parked}}
    INSERT INTO {{pending_table}} (dbrules_txid, parent_key, {{pending_columns}})
    SELECT txid_current(), d.*
      FROM ({{deltas}}) AS d
     WHERE ({{any_change}})
       AND NOT EXISTS (SELECT FROM {{parent_table}} AS p WHERE p.{{parent_key}} = d.parent_key);
END IF;
