from django.apps import AppConfig


class DBRulesConfig(AppConfig):
    name = "dbrules"
    verbose_name = "dbrules"

    def ready(self) -> None:
        from dbrules import checks, inserts, migrations, registry  # noqa: F401

        registry.register_triggers()
        inserts.install()
        migrations.patch_autodetector()
        migrations.keep_trigger_comments()
