--! Several relations of this table lead to one parent table (a transfer's
--! source and target accounts). Each relation's trigger locks its own
--! parents in key order, but one after the other: two statements writing in
--! opposite directions would each hold the parent the other waits for.
--! Whichever of these triggers runs first locks the parents of all of them,
--! in key order, before any is updated; the others find them held.
PERFORM 1 FROM {{parent_table}} AS p
 WHERE {{parents}}
 ORDER BY p.{{order_key}}
   FOR NO KEY UPDATE OF p;
