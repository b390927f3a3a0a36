--! At commit, copy again the rows noted in the recopy table: a row whose
--! copy found no source although it points at one (another transaction is
--! inserting that source, or giving it this key, and has not committed; its
--! cascade cannot see this row either: Django's deferred ForeignKey check
--! also runs at commit, and by then the source has committed or the commit
--! fails), and the rows a deferred transaction wrote, whose copies were not
--! checked against sources changing at the same moment (copy_recheck.sql).
--! The sources are locked first, hop by hop and in key order, as the copy
--! check does, so a change in flight either committed before this copy or
--! waits for it. The UPDATE sets the copies; the row trigger recomputes
--! what reads them.
{{commit_start}}
{{collect}}
{{locks}}
-- Almost always every copy is right: one pass joins the rows to their
-- sources, and only a stale one costs the UPDATE's lookups row by row.
SELECT count(*) INTO dbrules_stale
  FROM {{model_table}} AS c {{joins}}
 WHERE {{noted_rows}}
   AND ({{stale}});
{{writes}}
IF dbrules_stale > 0 THEN
    UPDATE {{model_table}} AS c
       SET {{assignments}}
     WHERE {{noted_rows}}
       AND ({{differs}});
END IF;
DELETE FROM {{recopy_table}} WHERE dbrules_txid = txid_current();
{{commit_end}}
RETURN NULL;
