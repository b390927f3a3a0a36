--! copy_check.sql for a statement that wrote one row, read into `one`.
{{unmoved}}
{{locks}}
IF {{stale}} THEN
    UPDATE {{child_table}} AS c
       SET {{assignments}}
     WHERE c.{{pk}} = one.dbrules_pk
       AND ({{still_stale}});
END IF;
{{park_missing}}
