from django.apps import AppConfig


class DBRulesConfig(AppConfig):
    name = "dbrules"
    verbose_name = "dbrules"

    def ready(self) -> None:
        from dbrules import checks, migrations, registry, writes  # noqa: F401

        registry.register_triggers()
        writes.install()
        migrations.patch_autodetector()
        migrations.keep_trigger_comments()
