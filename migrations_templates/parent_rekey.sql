--! A parent whose key changes (UPDATE ... SET id = ...) takes the values of
--! the children that carry its new key. Its old key's children were counted
--! for the old key; a transaction that renumbers a parent moves them itself,
--! and each move is counted as one. Like a parent inserted after its
--! children (parent_insert.sql), the value is computed from the children
--! once, into the row being written, so the parent's own rules see it.
--! BEFORE the update, not after: a foreign key declared ON UPDATE CASCADE
--! moves the children in an AFTER row trigger of this same statement, and
--! their statement trigger applies that move after all of them. Counted
--! here after the cascade, those children were counted twice.
{{recomputes}}
RETURN NEW;
