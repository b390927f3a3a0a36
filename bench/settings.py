"""Django settings for the benchmark, configured in code from a URL."""

from __future__ import annotations

from typing import Any

BENCH_DATABASE = "dbrules_bench"


def configure(url: str, database: str = BENCH_DATABASE) -> dict[str, Any]:
    """Configure Django for the bench app on ``database`` of the server at
    ``url``; an ``admin`` alias points at the URL's own database."""
    import django
    from django.conf import settings

    from dbrules.embedded import django_database_settings

    admin = django_database_settings(url)
    default = {**admin, "NAME": database}
    settings.configure(
        DATABASES={"default": default, "admin": admin},
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "pgtrigger",
            "dbrules",
            "computedfields",
            "bench.shop",
        ],
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
        # computedfields' documented bulk settings: large update batches.
        COMPUTEDFIELDS_QUERYSIZE=10_000,
    )
    django.setup()
    return default
