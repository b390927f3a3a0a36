--! A one-row INSERT or DELETE: the row's deltas go to its parent with one
--! cached, indexed UPDATE -- no aggregate, no grouping.
IF {{applies}} THEN
    {{lock}}
    UPDATE {{parent_table}} AS p
       SET {{assignments}}
     WHERE p.{{parent_key}} = one.{{key}}{{returning}};
{{missed}}
    {{read}}
END IF;
