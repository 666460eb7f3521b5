"""Settings of the recipe's Django project.

The database comes from libpq's environment variables, which is what
`scry ci test-migration` sets for the migration command (PGHOST, PGPORT,
PGDATABASE, PGUSER, PGPASSWORD pointing at its clone). A project that reads
DATABASE_URL instead (dj-database-url) works the same way: scry sets it too.
"""
import os

SECRET_KEY = "scry-recipe-not-secret"
DEBUG = False
INSTALLED_APPS = ["shop"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("PGDATABASE", "shop"),
        "HOST": os.environ.get("PGHOST", ""),
        "PORT": os.environ.get("PGPORT", ""),
        "USER": os.environ.get("PGUSER", ""),
        "PASSWORD": os.environ.get("PGPASSWORD", ""),
    }
}
