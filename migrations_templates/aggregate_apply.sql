--! Deferred mode: a DEFERRABLE INITIALLY DEFERRED constraint trigger on the
--! group's pending table runs at COMMIT. The first firing merges every delta
--! this transaction parked, applies them once in primary-key order and
--! clears them; later firings of the same commit end at once
--! (commit_start.sql, commit_deltas.sql). Transactions
--! of several statements on hot parents then hold no parent lock until
--! commit, and take them all in one order: no deadlock between them. The
--! trade-off: inside the transaction the stored values are not yet updated.
--! A rolled-back savepoint takes its parked deltas with it.
{{commit_start}}
{{collect}}
{{writes}}
{{apply}}
DELETE FROM {{pending_table}} WHERE dbrules_txid = txid_current();
{{commit_end}}
RETURN NULL;
