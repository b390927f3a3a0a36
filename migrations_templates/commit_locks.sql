--! A commit applies the parked deltas of each relation, and checks again
--! the copies noted for it, when that table's constraint trigger fires: in
--! the order the transaction first parked for each. Two transactions that
--! parked in different orders (a book, then a loan; a loan, then a book)
--! would each hold parents the other waits for. So the first of these
--! triggers to fire in a commit that parked for more than one locks every
--! parent any of them will lock first: table by table, the tables with the
--! longest chain of relations below them last (authors before the
--! publishers their counts update), and within a table in key order, every
--! relation to it at once: one statement per table, ordered by every key
--! column any relation to it uses, so that a parent reached by its primary
--! key and by a to_field is locked in one order by every commit. What to
--! lock comes from dbrules.commit_order, never from the setting, which only
--! names which tables parked; the statements it holds name every operator
--! in pg_catalog (qualify.py). Each runs with EXECUTE, planned afresh;
--! its keys pass through an array, which the planner takes for a few
--! whatever the pending tables' statistics still count of an earlier
--! commit, and looks up by key.
IF split_part(coalesce(current_setting('dbrules.parked', true), ''), ';', 2) <> ''
   AND coalesce(current_setting('dbrules.commit_locked', true), '') <> 'on' THEN
    PERFORM set_config('dbrules.commit_locked', 'on', true);
    FOR dbrules_lock IN
        WITH RECURSIVE below AS (
            SELECT o.parent_table, 0 AS depth FROM "dbrules"."commit_order" AS o
            UNION
            SELECT o.parent_table, b.depth + 1
              FROM "dbrules"."commit_order" AS o JOIN below AS b ON b.parent_table = o.child_table
             WHERE b.depth < 32
        ), height AS (
            SELECT b.parent_table, max(b.depth) AS height FROM below AS b GROUP BY b.parent_table
        )
        SELECT format('SELECT 1 FROM %s AS p WHERE %s ORDER BY %s FOR NO KEY UPDATE OF p',
                      k.parent_table, string_agg(k.condition, ' OR '), k.order_keys)
          FROM (
            SELECT h.height, o.parent_table,
                   format('p.%s OPERATOR(pg_catalog.=) ANY (ARRAY(%s))', o.parent_key, string_agg(o.keys, ' UNION ALL ')) AS condition,
                   (SELECT string_agg(DISTINCT 'p.' || a.parent_key, ', ' ORDER BY 'p.' || a.parent_key)
                      FROM "dbrules"."commit_order" AS a WHERE a.parent_table = o.parent_table) AS order_keys
              FROM "dbrules"."commit_order" AS o JOIN height AS h ON h.parent_table = o.parent_table
             WHERE o.parked IN (SELECT unnest(string_to_array(current_setting('dbrules.parked', true), ';')))
             GROUP BY h.height, o.parent_table, o.parent_key
          ) AS k
         GROUP BY k.height, k.parent_table, k.order_keys
         ORDER BY k.height, k.parent_table
    LOOP
        EXECUTE dbrules_lock;
    END LOOP;
END IF;
