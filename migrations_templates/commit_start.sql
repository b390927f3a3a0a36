--! How a commit-time trigger of a pending or recopy table begins. It is a
--! constraint trigger, so it fires once per row the table received in this
--! transaction, and the first firing does the work for every row. The
--! table's entry in dbrules.parked says whether any rows are left: later
--! firings end at that setting's read. Before, each of them looked for the
--! transaction's rows in the table, and found in its index every row the
--! first firing had deleted (a transaction's own deleted rows stay there
--! until it ends): a deferred insert over 20,000 parents parked 20,000
--! rows, and its commit took 23-30 s instead of 0.4 s. The entry is removed
--! after the commit's locks, which count the entries (commit_locks.sql),
--! and before the work, which may park in this table again and list it
--! again.
--! The statements after it that only read (the arrays of the
--! transaction's rows, the locks, the check of noted copies) run with
--! plan_cache_mode = force_custom_plan: each commit plans them for its
--! arrays' lengths and the tables' sizes of now. A session otherwise keeps
--! a statement's first plan: after a large commit, a small one scanned the
--! whole parent table to lock and update two parents; after a first commit
--! on a nearly empty table, a large one compared each of its rows with
--! every noted key. The setting is given back before the first statement
--! that writes: the triggers that statement fires would plan their own
--! statements again on every row (a deferred insert of 100,000 books: 9 s
--! to commit instead of 5). The update of the parents runs through EXECUTE,
--! planned for each commit as well, while the triggers it fires keep their
--! own plans (planned_each_call in triggers.py). The other writes, which
--! run only when a copy is stale, read the arrays as parameters: their
--! first five runs in a session are planned for their sizes.
--! And jit = off for the whole work, as statement triggers are declared
--! (triggers.py). Both are set here, in the one firing that works, and
--! given back by it (commit_steps in triggers.py): declared on the
--! function, they cost each of the 20,000 firings of a commit 5 us, 0.1 s
--! in all.
IF strpos(coalesce(current_setting('dbrules.parked', true), ''), {{entry}}) = 0 THEN
    RETURN NULL;
END IF;
IF NOT EXISTS (SELECT 1 FROM {{table}} WHERE dbrules_txid = txid_current()) THEN
    {{unmark}}
    RETURN NULL;
END IF;
{{commit_locks}}
{{unmark}}
dbrules_settings := ARRAY[current_setting('plan_cache_mode'), current_setting('jit')];
PERFORM set_config('plan_cache_mode', 'force_custom_plan', true), set_config('jit', 'off', true);
