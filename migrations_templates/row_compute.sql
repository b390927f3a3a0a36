--! Copies (F("fk__...__field")) and same-row expressions (Lower, Concat,
--! Case...) are computed BEFORE the row is written, on INSERT and on any
--! UPDATE that touches an input, or the derived column itself when the
--! statement wrote it (not a trigger: a copy's cascade writes the value it
--! looked up) -- so a stale save() or a direct UPDATE of the derived column
--! is corrected, not stored. Copies come first, so expressions may read them.
{{assignments}}
RETURN NEW;
