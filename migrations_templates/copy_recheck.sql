--! Deferred mode: this transaction locks no parent before its commit, so
--! its copies are not checked against a source changing at the same moment
--! (copy_check.sql). The rows to check are noted instead, one row of the
--! recopy table per statement, and checked at commit once their sources are
--! locked (copy_recopy.sql).
INSERT INTO {{recopy_table}} (dbrules_txid, row_keys)
SELECT txid_current(), array_agg(n.{{pk}}) FROM {{rows}}
HAVING count(*) > 0;
IF FOUND THEN
    {{mark_parked}}
END IF;
