--! The statements for several rows, written twice: one copy runs for
--! fewer than FEW_ROWS (64) rows, the other for more. A session plans each
--! statement of a trigger function once, with the row counts of its first
--! run, and keeps that plan. With one copy for every size, a first
--! statement of 100,000 rows left the later two-row ones a hash join over a
--! scan of the whole parent table (8.7 ms against 0.67 ms a statement over
--! 20,000 parents); with two, each is planned for rows of its own size.
--! `save`, `for_many`, `for_few` and `restore` set how each copy is
--! planned (index_plans.sql), or are empty.
{{save}}
IF EXISTS (SELECT FROM {{rows}} OFFSET {{offset}}) THEN
{{for_many}}
{{statements}}
ELSE
{{for_few}}
{{statements}}
END IF;
{{restore}}
