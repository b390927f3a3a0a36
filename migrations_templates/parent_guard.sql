--! The database owns derived columns. A direct write (a stale Django save(),
--! UPDATE from psql) keeps the stored value. The trigger's WHEN clause lets
--! dbrules' own maintenance through (it runs inside a trigger, depth > 0) and
--! `manage.py dbrules repair` (which sets dbrules.repairing for its
--! transaction); restoring a value that did not change is harmless.
{{restores}}
RETURN NEW;
