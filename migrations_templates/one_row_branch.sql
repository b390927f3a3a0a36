--! A statement that wrote one row -- the usual single-row write -- takes
--! its own branch: the row (for an UPDATE, with its old version) is read into
--! `one`, with EXISTS (... OFFSET 1) beside it to tell there is no second,
--! and `one_row` handles it by key. An empty statement returns at once.
SELECT {{row_columns}},
       EXISTS (SELECT FROM {{row_table}} OFFSET 1) AS dbrules_more
  INTO one
  FROM {{row_from}}
 LIMIT 1;
IF NOT FOUND THEN
    RETURN NULL;
END IF;
IF NOT one.dbrules_more THEN
{{one_row}}
    RETURN NULL;
END IF;
