--! The one-row form of missed_parents.sql: the parent this row's deltas
--! were for was not there to update; they are parked for the commit.
IF {{missing}} THEN
    {{mark_parked}}
    INSERT INTO {{pending_table}} (dbrules_txid, parent_key, {{pending_columns}})
    VALUES (txid_current(), {{key}}, {{values}});
END IF;
