--! A parent whose key changes (UPDATE ... SET id = ...) takes the values of
--! the children that carry its new key. Its old key's children were counted
--! for the old key; a transaction that renumbers a parent moves them itself,
--! and each move is counted as one. Like a parent inserted after its
--! children (parent_insert.sql), the value is computed from the children
--! once; here an UPDATE sets it, so the parent's own triggers see the change.
{{recomputes}}
RETURN NULL;
