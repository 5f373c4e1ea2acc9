"""
Settings for the product, read from the environment through django-environ.

Every value can be set as an environment variable (or in a `.env` file at the repo
root). Development defaults need no set-up: SQLite under `var/`, and a secret key and
an encryption key generated once into `var/` when DEBUG is on. In production
(DEBUG off) a missing SECRET_KEY or FIELD_ENCRYPTION_KEYS stops start-up.
"""

from pathlib import Path

import environ
from cryptography.fernet import Fernet
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A .env file at the repo root (bin/run writes one for development); the environment
# wins over it. The test settings turn it off so a developer's .env changes no test.
if env.bool("DJANGO_READ_DOT_ENV_FILE", default=True):
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))


def _development_key(name, generate):
    """Read a key kept in var/, creating it once. Only ever used with DEBUG on."""
    path = VAR_DIR / name
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(generate())
        path.chmod(0o600)
    return path.read_text().strip()


def _required_in_production(var, filename, generate):
    if var in env:
        return env.str(var)
    if DEBUG:
        return _development_key(filename, generate)
    raise ImproperlyConfigured(
        f"{var} is not set. Set it in the environment (or .env) before starting "
        f"with DEBUG off; see README.md, 'Running in production'."
    )


def _new_fernet_key():
    return Fernet.generate_key().decode()


SECRET_KEY = _required_in_production("SECRET_KEY", "secret_key", get_random_secret_key)

# Fernet keys for secrets stored in the database. The first key encrypts; every key
# decrypts. Rotate by putting a new key first, then `manage.py rotate_encryption_keys`.
FIELD_ENCRYPTION_KEYS = [
    key.strip()
    for key in _required_in_production(
        "FIELD_ENCRYPTION_KEYS", "field_encryption_key", _new_fernet_key
    ).split(",")
    if key.strip()
]

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "template_partials",
    "django_tasks",
    "django_tasks_db",
    "integrations",
    "notifications",
    "projects",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "integrations.context_processors.roles",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A busy timeout and immediate transactions keep the server and the worker from
    # tripping over each other's writes on SQLite.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
# Translation catalogs: `manage.py makemessages -l <lang>`, run at the top of the
# repository, writes the strings of templates/ and of the apps to locale/<lang>/.
LOCALE_PATHS = [BASE_DIR / "locale"]

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
# Uploaded files waiting for the worker (queued SARIF imports, deleted once imported).
# Never served: there is no MEDIA_URL route.
MEDIA_ROOT = VAR_DIR / "media"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
X_FRAME_OPTIONS = "DENY"

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "frame-ancestors": [NONE],
        "form-action": [SELF, "https:", "http://127.0.0.1:*", "http://localhost:*"],
    },
}

# Background tasks: django-tasks (the backport of Django 6's django.tasks) with the
# database backend; `manage.py db_worker` runs them.
TASKS = {
    "default": {
        "BACKEND": env.str("TASKS_BACKEND", default="django_tasks_db.DatabaseBackend"),
    }
}

# ---------------------------------------------------------------------------
# Notification tools
# ---------------------------------------------------------------------------

# The provider registry: one dotted path per notification tool, in card order.
NOTIFICATION_TOOL_PROVIDERS = [
    "integrations.providers.microsoft_azure_mail.MicrosoftAzureMailProvider",
    "integrations.providers.smtp.SmtpProvider",
]

# Microsoft 365 endpoints. Empty means "use the Cloud preset's hosts". Point both at
# the sandbox (e.g. https://127.0.0.1:8365) to run without a tenant.
M365_AUTHORITY_HOST = env.str("M365_AUTHORITY_HOST", default="")
M365_GRAPH_HOST = env.str("M365_GRAPH_HOST", default="")
M365_SMTP_HOST = env.str("M365_SMTP_HOST", default="")
M365_SMTP_PORT = env.int("M365_SMTP_PORT", default=0)
# An extra CA certificate (PEM) to trust besides the system's, e.g. the sandbox CA.
M365_CA_BUNDLE = env.str("M365_CA_BUNDLE", default="")
# Network timeouts in seconds: per request, and for a whole Test Connection.
M365_HTTP_TIMEOUT = env.float("M365_HTTP_TIMEOUT", default=10.0)
TEST_CONNECTION_TIMEOUT = env.float("TEST_CONNECTION_TIMEOUT", default=20.0)
# SMTP: seconds per network operation, and whether "Security: none" (plain text,
# no TLS) may be chosen at all.
SMTP_TIMEOUT = env.float("SMTP_TIMEOUT", default=15.0)
SMTP_ALLOW_INSECURE = env.bool("SMTP_ALLOW_INSECURE", default=False)
# How long a started "Save & Authorize" sign-in may take before its callback is refused.
OAUTH_AUTHORIZATION_TIMEOUT = env.int("OAUTH_AUTHORIZATION_TIMEOUT", default=900)
# Whether the SMTP tool's explicit OAuth endpoints (a non-Microsoft server) may be
# plain http:// URLs. Off: the Client Secret and tokens only ever travel over https.
# Internal and loopback hosts are allowed either way (self-hosted identity providers).
OAUTH_ALLOW_INSECURE_ENDPOINTS = env.bool(
    "OAUTH_ALLOW_INSECURE_ENDPOINTS", default=False
)
# Test Connection attempts allowed per user per minute.
TEST_CONNECTION_RATE_LIMIT = env.int("TEST_CONNECTION_RATE_LIMIT", default=10)

CACHES = {
    "default": env.cache("CACHE_URL", default="locmemcache://"),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # msal logs request details at DEBUG; keep it quiet.
        "msal": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
    },
}

# ---------------------------------------------------------------------------
# Projects (SARIF imports)
# ---------------------------------------------------------------------------

# The largest SARIF file accepted by upload, API or `manage.py import_sarif`.
SARIF_MAX_BYTES = env.int("SARIF_MAX_BYTES", default=50 * 1024 * 1024)
# Uploads (page or API) larger than this are stored and imported by the task worker
# (`manage.py db_worker`) instead of inside the request; the API answers 202 and a
# status URL. `manage.py import_sarif` always imports at once.
SARIF_ASYNC_THRESHOLD_BYTES = env.int(
    "SARIF_ASYNC_THRESHOLD_BYTES", default=4 * 1024 * 1024
)
# How long one queued import may run. A scan still "processing" after this is
# taken to be lost with its worker (killed, out of memory) and is marked failed.
SARIF_IMPORT_TIMEOUT_SECONDS = env.int("SARIF_IMPORT_TIMEOUT_SECONDS", default=3600)

# ---------------------------------------------------------------------------
# Notifications (delivery of vulnerability emails)
# ---------------------------------------------------------------------------

# Retries of a failed send: exponential backoff from BASE seconds up to MAX, with
# jitter; a server's Retry-After wins. After MAX_ATTEMPTS the delivery fails.
NOTIFICATIONS_RETRY_BASE_SECONDS = env.float(
    "NOTIFICATIONS_RETRY_BASE_SECONDS", default=30.0
)
NOTIFICATIONS_RETRY_MAX_SECONDS = env.float(
    "NOTIFICATIONS_RETRY_MAX_SECONDS", default=3600.0
)
# A server's Retry-After is honoured up to this many seconds, so that a buggy or
# hostile one cannot park a delivery for years.
NOTIFICATIONS_RETRY_AFTER_MAX_SECONDS = env.float(
    "NOTIFICATIONS_RETRY_AFTER_MAX_SECONDS", default=3600.0
)
NOTIFICATIONS_MAX_ATTEMPTS = env.int("NOTIFICATIONS_MAX_ATTEMPTS", default=8)
# How long a worker's claim on a delivery lasts without being renewed. A live worker
# renews the leases it holds every third of this (its heartbeat, also from a thread
# while one send blocks), so only a dead worker's run out; its batch is then taken
# over about this long after it died (each delivery task books a `recover` task for
# the end of its lease).
NOTIFICATIONS_LEASE_SECONDS = env.float("NOTIFICATIONS_LEASE_SECONDS", default=30.0)
# How long one delivery task keeps claiming more due deliveries of its tools before
# it stops and leaves the rest to a follow-up task.
NOTIFICATIONS_RUN_MAX_SECONDS = env.float("NOTIFICATIONS_RUN_MAX_SECONDS", default=60.0)
# Outcomes a worker keeps in memory before writing them in one transaction. A worker
# killed before writing them sends at most these again (with the same Message-ID).
NOTIFICATIONS_OUTCOME_FLUSH = env.int("NOTIFICATIONS_OUTCOME_FLUSH", default=10)
# A `deliver` or `recover` task still RUNNING after this long, with no live lease on
# any delivery, was left by a killed worker: the `recover` task marks it FAILED.
# Keep it above NOTIFICATIONS_RUN_MAX_SECONDS plus a lease.
NOTIFICATIONS_TASK_STALE_SECONDS = env.float(
    "NOTIFICATIONS_TASK_STALE_SECONDS", default=120.0
)
# Per-mailbox pacing: what one sender mailbox may submit through one tool, all
# workers together. Unset: the tool's "Messages per minute", else Microsoft's limits
# (Exchange Online SMTP 30 a minute; Graph 10,000 per 10 minutes, 4 at a time); a
# number is the budget of every tool without its own; 0 turns pacing off.
NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE = env.int(
    "NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE", default=None
)
# The pacing "minute" in seconds (tests shorten it; Graph's period is 10 of them).
NOTIFICATIONS_PACING_WINDOW_SECONDS = env.float(
    "NOTIFICATIONS_PACING_WINDOW_SECONDS", default=60.0
)
# Throttling (429, SMTP 4.3.2 / 421) delays a delivery without using up its attempts;
# it fails as "throttled_too_long" once it is this old (seconds since it was written).
NOTIFICATIONS_THROTTLE_MAX_AGE_SECONDS = env.float(
    "NOTIFICATIONS_THROTTLE_MAX_AGE_SECONDS", default=86400.0
)
# A Retry-After (or a wait for the mailbox's budget) shorter than this is waited out
# inside the task, on the same connection, instead of rescheduling the delivery.
NOTIFICATIONS_INLINE_RETRY_AFTER_SECONDS = env.float(
    "NOTIFICATIONS_INLINE_RETRY_AFTER_SECONDS", default=3.0
)
# Deliveries claimed at a time by one worker (one connection serves them all).
NOTIFICATIONS_CLAIM_BATCH = env.int("NOTIFICATIONS_CLAIM_BATCH", default=25)
# The django-tasks queue the delivery tasks go to (db_worker --queue-name).
NOTIFICATIONS_QUEUE_NAME = env.str("NOTIFICATIONS_QUEUE_NAME", default="default")
