--! Installation of one dbrules trigger, wrapped the way django-pgtrigger
--! installs its own. The function runs as its owner (SECURITY DEFINER) with a
--! pinned search_path, so a role that may only write the source table keeps
--! derived columns right but cannot redirect the function to its own objects.
--! A body in which every operator, function and type is named in pg_catalog
--! (dbrules/qualify.py) resolves exactly what the pin would, so it omits the
--! SET, which costs a configuration change on every call -- on every row, for
--! a row trigger.
--! Unlike plain pgtrigger triggers there is no pgtrigger.ignore() escape:
--! derived values are not optional. EXECUTE is revoked from PUBLIC: a trigger
--! fires whatever the writer's rights, but nobody else may attach the function
--! to a table of their own and run it as its owner.
{{setup}}
CREATE OR REPLACE FUNCTION {{pgid}}()
RETURNS TRIGGER
LANGUAGE plpgsql
SECURITY DEFINER
{{search_path}}
AS $dbrules$
{{declare}}
BEGIN
{{func}}
END;
$dbrules$;

REVOKE ALL ON FUNCTION {{pgid}}() FROM PUBLIC;
COMMENT ON FUNCTION {{pgid}}() IS {{comment}};

DROP TRIGGER IF EXISTS {{pgid}} ON {{table}};
CREATE {{constraint}}TRIGGER {{pgid}}
    {{when}} {{operation}} ON {{table}}
    {{timing}}
    {{referencing}}
    FOR EACH {{level}} {{condition}}
    EXECUTE FUNCTION {{pgid}}();

COMMENT ON TRIGGER {{pgid}} ON {{table}} IS {{trigger_comment}};
