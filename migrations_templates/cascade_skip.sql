--! A copy's cascade marked this UPDATE (copy_cascade.sql): it set only the
--! copy, which this trigger does not read, nor anything a rule of the row
--! computes from it (a count's columns, a check's first hops), so there is
--! nothing to apply or check. The mark holds the depth this statement's
--! triggers fire at: a statement run by one of its triggers fires deeper
--! and is never taken for it.
IF coalesce(current_setting({{setting}}, true), '') = ANY (ARRAY[{{marks}}]) THEN
    RETURN NULL;
END IF;
