--! The database owns derived columns. A direct write (a stale Django save(),
--! UPDATE from psql) keeps the stored value. The trigger's WHEN clause lets
--! dbrules' own maintenance through (it runs inside a trigger, depth > 0);
--! `manage.py dbrules repair` sets dbrules.repairing for its transaction and
--! writes through here. Restoring a value that did not change is harmless.
IF coalesce(current_setting('dbrules.repairing', true), '') = 'on' THEN
    RETURN NEW;
END IF;
{{restores}}
RETURN NEW;
