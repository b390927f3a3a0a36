from django.apps import AppConfig


class DBRulesConfig(AppConfig):
    name = "dbrules"
    verbose_name = "dbrules"

    def ready(self) -> None:
        from dbrules import checks, migrations, registry, runtime  # noqa: F401

        registry.register_triggers()
        runtime.return_derived_values_on_insert()
        migrations.patch_autodetector()
        migrations.keep_trigger_comments()
