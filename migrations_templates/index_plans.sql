--! The copy for few rows of plans_by_size.sql is planned with no
--! sequential scan, hash or merge join: it reaches every table it reads by
--! index, once per row, whatever that table's size. A session keeps the
--! plan while the tables grow: an import adding parents and their children
--! in turn, into new tables, had it made while the parents were a few rows,
--! and each later statement read every parent, three times per insert. The
--! copy for many rows is planned with them on, whatever a trigger firing
--! inside the other copy left set. The caller's settings are given back.
--! Four lines, one per placeholder of plans_by_size.sql: save, for_many,
--! for_few, restore.
{{saved}} := ARRAY[current_setting('enable_seqscan'), current_setting('enable_hashjoin'), current_setting('enable_mergejoin')];
    PERFORM set_config('enable_seqscan', 'on', true), set_config('enable_hashjoin', 'on', true), set_config('enable_mergejoin', 'on', true);
    PERFORM set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true);
PERFORM set_config('enable_seqscan', {{saved}}[1], true), set_config('enable_hashjoin', {{saved}}[2], true), set_config('enable_mergejoin', {{saved}}[3], true);
