"""Settings of the example site: django.contrib.auth on SQLite, sessions on sessiond."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# An example: never use this key for anything real.
SECRET_KEY = "sessiond-example-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    # No django.contrib.sessions: it only holds the database engine's table.
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "example",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

# Sessions on sessiond, over gRPC.
SESSION_ENGINE = "sessiond_django.session_store"
SESSIOND_ADDRESS = os.environ.get("SESSIOND_ADDRESS", "127.0.0.1:50051")
SESSIOND_TIMEOUT = 5
SESSIOND_TOKEN = os.environ.get("SESSIOND_TOKEN") or None

ROOT_URLCONF = "example.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

USE_TZ = True
TIME_ZONE = "UTC"
