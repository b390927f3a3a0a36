--! Deferred mode parks deltas here until commit. UNLOGGED: rows never
--! outlive their transaction, so they need no WAL. The schema "dbrules"
--! holds only these tables.
CREATE SCHEMA IF NOT EXISTS "dbrules";
CREATE UNLOGGED TABLE IF NOT EXISTS {{pending_table}} (
    dbrules_txid bigint NOT NULL,
    parent_key {{parent_key_type}} NOT NULL,
    {{pending_column_types}}
);
CREATE INDEX IF NOT EXISTS {{pending_index}} ON {{pending_table}} (dbrules_txid);
