--! Copies are read by a BEFORE row trigger, without a lock: a change of the
--! source still in flight in another transaction is invisible to it, and
--! that change's cascade cannot see this statement's rows either. So after
--! the statement, the source rows of the rows it copied into are locked in
--! key order, hop by hop (FOR NO KEY UPDATE, the mode dbrules' own count
--! updates take: one writer of a hot parent at a time, no lock upgrades),
--! and the copies are checked again: a change that committed meanwhile is
--! now visible, and a later one waits for this transaction to end and then
--! its cascade sees these rows. Almost always nothing differs and nothing
--! is written. A deferred transaction locks parents only at commit: it
--! notes the rows to check then (copy_recheck.sql); so do copies whose
--! sources are the parents of rules deferred by declaration, always. A one-row statement (the usual single-row write)
--! locks and compares its own row's sources by key. Copies whose first hop
--! is a relation some rules count over are checked in that count's
--! statement trigger instead (aggregate_delta.sql), whose one-row UPDATE of
--! the parent locks it and returns what to compare (RETURNING ... INTO hop0).
--! An UPDATE checks only the rows it moved: a copy's cascade that moves
--! none returns before the search for them (cascade_skip.sql).
IF {{deferred}} THEN
    {{nested_jit_off}}
{{recheck}}
    {{jit_back}}
    RETURN NULL;
END IF;
{{one_row_branch}}{{cascade_skip}}
{{jit_off}}
{{rows}}
{{jit_back}}
RETURN NULL;
