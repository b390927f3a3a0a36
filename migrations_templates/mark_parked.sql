--! Note in the transaction's dbrules.parked setting that this relation's
--! pending table has deltas for the commit (a list of pending tables, each
--! followed by ';'). A parent computed later in this transaction then
--! drops the deltas parked for it (parent_insert.sql, parent_rekey.sql), and
--! a commit that applies several relations locks their parents in one order
--! first (commit_locks.sql).
IF strpos(coalesce(current_setting('dbrules.parked', true), ''), {{entry}}) = 0 THEN PERFORM set_config('dbrules.parked', coalesce(current_setting('dbrules.parked', true), '') || {{entry}}, true); END IF;
