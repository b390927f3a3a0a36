--! A row's copy found no source although the row points at one: another
--! transaction is inserting that source, or giving it this key, and has not
--! committed; its cascade cannot see this row either. The row trigger parked
--! the row, and this DEFERRABLE INITIALLY DEFERRED trigger copies it again
--! at commit, where Django's deferred ForeignKey check also runs: by then
--! the source has committed (or the commit fails on the ForeignKey). The
--! sources are locked first, in key order, as the copy check does, so a
--! rename in flight either committed before the copy or waits for it. The
--! UPDATE sets the copies; the row trigger recomputes what reads them.
IF NOT EXISTS (SELECT 1 FROM {{recopy_table}} WHERE dbrules_txid = txid_current()) THEN
    RETURN NULL;
END IF;
{{locks}}
UPDATE {{model_table}} AS c
   SET {{assignments}}
 WHERE c.{{pk}} IN ({{parked}})
   AND ({{differs}});
DELETE FROM {{recopy_table}} WHERE dbrules_txid = txid_current();
RETURN NULL;
