--! When source rows of a copy are inserted, rows that reach them may be
--! there already: inserted first in this transaction (Django's ForeignKeys
--! are checked at commit) or with no constraint at all. Once per statement:
--! they are rare, and the probe finding none fires no trigger of theirs.
IF EXISTS (SELECT 1 FROM {{model_table}} AS m WHERE {{reaches_inserted}}) THEN
    UPDATE {{model_table}} AS m
       SET {{target}} = {{lookup}}
     WHERE {{reaches_inserted}}
       AND m.{{target}} IS DISTINCT FROM {{lookup}};
END IF;
RETURN NULL;
