--! Rows whose copy found no source although they point at one: the source
--! is being inserted, or given that key, by a transaction that has not
--! committed. UNLOGGED, like the pending tables: rows never outlive their
--! transaction.
CREATE SCHEMA IF NOT EXISTS "dbrules";
CREATE UNLOGGED TABLE IF NOT EXISTS {{recopy_table}} (
    dbrules_txid bigint NOT NULL,
    row_key {{key_type}} NOT NULL
);
CREATE INDEX IF NOT EXISTS {{recopy_index}} ON {{recopy_table}} (dbrules_txid);
