--! A table whose rows never outlive their transaction: deferred mode's
--! parked deltas (and those of a parent not there yet), or the rows whose
--! copy waits for a source not committed yet. UNLOGGED: they need no WAL.
--! The schema "dbrules" holds only these tables and commit_order
--! (commit_order.sql).
CREATE SCHEMA IF NOT EXISTS "dbrules";
CREATE UNLOGGED TABLE IF NOT EXISTS {{table}} (
    dbrules_txid bigint NOT NULL,
    {{columns}}
);
CREATE INDEX IF NOT EXISTS {{index}} ON {{table}} (dbrules_txid);
