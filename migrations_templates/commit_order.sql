--! Parents a commit may lock, one row per relation and per table of
--! copies to check again: which rows of parent_table, selected by keys,
--! once the transaction lists parked in dbrules.parked (commit_locks.sql).
--! Owned by whoever runs the migrations: a writer can neither add nor
--! change one.
CREATE TABLE IF NOT EXISTS "dbrules"."commit_order" (
    entry text PRIMARY KEY,
    parked text NOT NULL,
    parent_table text NOT NULL,
    parent_key text NOT NULL,
    child_table text NOT NULL,
    keys text NOT NULL
);
INSERT INTO "dbrules"."commit_order" (entry, parked, parent_table, parent_key, child_table, keys)
VALUES ({{entry}}, {{parked}}, {{parent_table}}, {{parent_key}}, {{child_table}}, {{keys}})
ON CONFLICT (entry) DO UPDATE
   SET parked = EXCLUDED.parked, parent_table = EXCLUDED.parent_table, parent_key = EXCLUDED.parent_key,
       child_table = EXCLUDED.child_table, keys = EXCLUDED.keys;
