"""Settings for dbrules' own test suite and demo project.

With DATABASE_URL unset the suite runs on the embedded PostgreSQL server
(see docs/embedded.md); otherwise on the server DATABASE_URL names.
"""

from dbrules.embedded import database_url, django_database_settings

SECRET_KEY = "dbrules-tests"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {"default": django_database_settings(database_url())}
INSTALLED_APPS = [
    "pgtrigger",
    "dbrules",
    "tests.bookstore",
]
