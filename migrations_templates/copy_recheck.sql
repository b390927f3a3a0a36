--! Deferred mode: this transaction locks no parent before its commit, so
--! its copies are not checked against a source changing at the same moment
--! (copy_check.sql). The rows to check are noted instead, one row of the
--! recopy table per statement: their keys, and the keys of the sources
--! they point at, which the commit locks before it checks them
--! (copy_recopy.sql).
INSERT INTO {{recopy_table}} (dbrules_txid, {{columns}})
SELECT txid_current(), {{values}} FROM {{rows}}
HAVING count(*) > 0;
IF FOUND THEN
    {{mark_parked}}
END IF;
