--! Per-parent deltas of one statement, from its transition table(s).
SELECT r.{{fk}} AS parent_key,
       {{delta_columns}}
  FROM ({{signed_rows}}) AS r
 WHERE r.{{fk}} IS NOT NULL
 GROUP BY r.{{fk}}
