--! The relations whose parked deltas a commit may apply, with what their
--! commit-time locks need: one row per pending table, owned by whoever runs
--! the migrations (a writer can neither add nor change one).
CREATE TABLE IF NOT EXISTS "dbrules"."commit_order" (
    pending_table text PRIMARY KEY,
    parent_table text NOT NULL,
    parent_key text NOT NULL,
    child_table text NOT NULL
);
INSERT INTO "dbrules"."commit_order" (pending_table, parent_table, parent_key, child_table)
VALUES ({{pending}}, {{parent_table}}, {{parent_key}}, {{child_table}})
ON CONFLICT (pending_table) DO UPDATE
   SET parent_table = EXCLUDED.parent_table, parent_key = EXCLUDED.parent_key, child_table = EXCLUDED.child_table;
