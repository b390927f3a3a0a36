--! Rules that may rescan a parent's children (Min/Max whose extreme left, a
--! nullable Sum that may become empty) lock the touched parents first, in
--! primary-key order, in a statement of their own: the rescan in the UPDATE
--! that follows then takes its snapshot after every earlier writer of those
--! parents has committed, so under READ COMMITTED it cannot miss their rows.
PERFORM 1
   FROM {{parent_table}} AS p
  WHERE p.{{parent_key}} IN ({{keys}})
  ORDER BY p.{{parent_key}}
    FOR NO KEY UPDATE OF p;
