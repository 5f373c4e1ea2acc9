"""
Settings for the product, read from the environment through django-environ.

Every value can be set as an environment variable (or in a `.env` file at the repo
root). Development defaults need no set-up: SQLite under `var/`, and a secret key and
an encryption key generated once into `var/` when DEBUG is on. In production
(DEBUG off) a missing SECRET_KEY or FIELD_ENCRYPTION_KEYS stops start-up.
"""

import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

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
        f"with DEBUG off; see README.md, 'Production'."
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
    "integrations",
    "notifications",
    "projects",
    "operations",  # issue 12: health, metrics, periodic work, the Operations page
    # After notifications, whose `db_worker` (this one's, warmed up) takes its place.
    "django_tasks_db",
]

MIDDLEWARE = [
    # issue 12: X-Request-ID on every response, redirects included (config/logs.py)
    "operations.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # issue 15, item 10: times in the signed-in user's time zone (Your settings)
    "accounts.middleware.TimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    # --- Email templates (issue 10): notifications/email/* render with Jinja2, which
    # speaks Django's translation tags (notifications/email_templates.py); this
    # engine answers for those names only, every other goes on to Django's.
    {
        "BACKEND": "django.template.backends.jinja2.Jinja2",
        "NAME": "email",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": False,
        "OPTIONS": {"environment": "notifications.email_templates.environment"},
    },
    # --- end of the email templates' engine
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
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend, with timestamps parsed by psycopg's optimised loader
    # (config/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "config.postgresql"
# Persistent connections, checked before reuse. The task worker polls its queue
# every --interval and Django closes a connection whose CONN_MAX_AGE is 0 after each
# poll and each task: on PostgreSQL the worker opened a connection (TCP and
# authentication) several times a second, and a sixth of its time went to that.
# `?conn_max_age=0` in DATABASE_URL turns this off (for example behind PgBouncer in
# transaction pooling, where the pooler keeps the connections).
# https://docs.djangoproject.com/en/5.2/ref/databases/#persistent-connections
DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A busy timeout and immediate transactions keep the server and the worker from
    # tripping over each other's writes on SQLite. Write-ahead logging lets pages
    # read while the worker writes, and with synchronous=NORMAL a commit does not
    # wait for the disk (a power cut may lose the last commits, never corrupt the
    # file): the worker commits once per batch of outcomes, and waiting on fsync
    # each time held up the sending. https://www.sqlite.org/wal.html
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

# -- Sign-in lockout (issue 11, item 1): django-axes --------------------------------
# Failed sign-ins are counted in the database, so every process sees the same count:
# by user name and, separately, by client address. SIGN_IN_FAILURE_LIMIT failures for
# either lock sign-in for it (the right password is refused too) for
# SIGN_IN_COOLOFF_MINUTES after the failure that caused the lockout. A security admin
# unlocks sooner on the "Sign-in lockouts" page or with `manage.py unlock_sign_in`.
INSTALLED_APPS += ["axes", "accounts"]
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]  # axes wants it last
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses a locked-out sign-in first
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_FAILURE_LIMIT = env.int("SIGN_IN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("SIGN_IN_COOLOFF_MINUTES", default=15))
if not 1 <= AXES_FAILURE_LIMIT <= 1000:
    raise ImproperlyConfigured("SIGN_IN_FAILURE_LIMIT must be from 1 to 1000.")
if not timedelta(minutes=1) <= AXES_COOLOFF_TIME <= timedelta(days=7):
    raise ImproperlyConfigured(
        "SIGN_IN_COOLOFF_MINUTES must be from 1 to 10080 (a week)."
    )
# Attempts made while locked out are refused without being counted, so a lockout
# ends when the page said it would.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# A successful sign-in does not clear the count: axes would clear every failure from
# that address too, letting anyone with an account reset the count against another.
AXES_RESET_ON_SUCCESS = False
# The sign-in page again, with status 429 and the lockout explained.
AXES_LOCKOUT_CALLABLE = "accounts.views.sign_in_locked_out"
AXES_HTTP_RESPONSE_CODE = 429
# The client address: REMOTE_ADDR. Behind N reverse proxies that each append the
# address they received from to X-Forwarded-For, set SIGN_IN_TRUSTED_PROXY_COUNT=N:
# the Nth address from the right is then taken (the ones to its left can be forged).
SIGN_IN_TRUSTED_PROXY_COUNT = env.int("SIGN_IN_TRUSTED_PROXY_COUNT", default=0)
if not 0 <= SIGN_IN_TRUSTED_PROXY_COUNT <= 10:
    raise ImproperlyConfigured("SIGN_IN_TRUSTED_PROXY_COUNT must be from 0 to 10.")
AXES_CLIENT_IP_CALLABLE = "accounts.services.client_address"
# No "AXES: BEGIN" banner at every manage.py command; lockouts are still logged
# (and audited by accounts.signals).
AXES_VERBOSE = False
# -- end sign-in lockout ---------------------------------------------------------------

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
# -- Static files in production (issue 12, item 1): whitenoise ------------------------
# With DEBUG off, `manage.py collectstatic` writes every file under a name with its
# content's hash plus .gz and .br copies into STATIC_ROOT, and whitenoise serves them
# (compressed when the client accepts it, cached for ever since the name changes with
# the content). Pages need the manifest collectstatic writes: run it at every release.
# With DEBUG on, nothing changes: `runserver` serves static/ as it is, no collectstatic
# (and no whitenoise, which would warn that STATIC_ROOT does not exist).
if not DEBUG:
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
        "whitenoise.middleware.WhiteNoiseMiddleware",
    )
    STORAGES = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {
            "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        },
    }
# -- end static files in production
# Uploaded files waiting for the worker (queued SARIF imports, deleted once imported).
# Never served: there is no MEDIA_URL route.
MEDIA_ROOT = VAR_DIR / "media"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
X_FRAME_OPTIONS = "DENY"

# -- HTTPS (issue 11, item 6) ----------------------------------------------------------
# With DEBUG off and an https:// SITE_URL the defaults are production's: plain http is
# redirected to https, and browsers are told (HSTS) to use only https on this host for
# a year (the value preload lists ask for; the host already needs https for its secure
# cookies). Subdomains and preloading are the operator's choice: they commit every
# host under SITE_URL's, which is harmless for a host of its own (appsec.example.com)
# and not for an organisation's bare domain. See README.md, "Production".
_SITE = urlsplit(SITE_URL)
if _SITE.scheme not in ("http", "https") or not _SITE.hostname:
    raise ImproperlyConfigured(
        "SITE_URL must be the product's address, e.g. https://appsec.example.com."
    )
_HTTPS_PRODUCTION = not DEBUG and _SITE.scheme == "https"
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=_HTTPS_PRODUCTION)
SECURE_HSTS_SECONDS = env.int(
    "SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if _HTTPS_PRODUCTION else 0
)
if SECURE_HSTS_SECONDS < 0:
    raise ImproperlyConfigured("SECURE_HSTS_SECONDS must be 0 (off) or more.")
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool(
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False
)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Behind a proxy that terminates TLS: the header it sets and the value meaning https,
# e.g. "HTTP_X_FORWARDED_PROTO,https". Only when the proxy always overwrites that
# header, since otherwise a client could claim https for itself.
_PROXY_SSL_HEADER = env.list("SECURE_PROXY_SSL_HEADER", default=[])
if _PROXY_SSL_HEADER:
    if (
        len(_PROXY_SSL_HEADER) != 2
        or not _PROXY_SSL_HEADER[0].startswith("HTTP_")
        or not _PROXY_SSL_HEADER[1]
    ):
        raise ImproperlyConfigured(
            "SECURE_PROXY_SSL_HEADER must be a request.META header name and a "
            "value, e.g. HTTP_X_FORWARDED_PROTO,https."
        )
    SECURE_PROXY_SSL_HEADER = tuple(_PROXY_SSL_HEADER)
# Origins whose form posts pass the CSRF check besides the request's own host (needed
# when a proxy in front changes the Host header). Default: SITE_URL's origin.
CSRF_TRUSTED_ORIGINS = env.list(
    "CSRF_TRUSTED_ORIGINS", default=[f"{_SITE.scheme}://{_SITE.netloc}"]
)
# -- end HTTPS ---------------------------------------------------------------------------

# -- Health and readiness (issue 12, item 3; operations/health.py) ----------------------
# Probes (a load balancer, Kubernetes) speak plain http inside the cluster: these
# paths are never redirected to https.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# /readyz answers whoever comes from READYZ_ALLOWED_NETWORKS (comma-separated CIDRs
# matched against REMOTE_ADDR; default loopback only; empty for none) or presents
# `Authorization: Bearer <READYZ_TOKEN>` (unset: no token opens it). /healthz is open.
READYZ_TOKEN = env.str("READYZ_TOKEN", default="")
if READYZ_TOKEN and len(READYZ_TOKEN) < 16:
    raise ImproperlyConfigured("READYZ_TOKEN must be at least 16 characters long.")
READYZ_ALLOWED_NETWORKS = env.list(
    "READYZ_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"]
)


def _check_readyz_networks(entries):
    import ipaddress

    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ImproperlyConfigured(
                f"READYZ_ALLOWED_NETWORKS: {entry!r} is not an IP network "
                "(e.g. 10.0.0.0/8, fd00::/8, 127.0.0.1)."
            ) from None


_check_readyz_networks(READYZ_ALLOWED_NETWORKS)
# Ready only if a task worker was seen within this many seconds (its heartbeat); the
# Deliveries pages warn after the same time. And only if no due delivery has been
# waiting longer than READYZ_QUEUE_MAX_AGE_SECONDS.
READYZ_WORKER_MAX_AGE_SECONDS = env.float(
    "READYZ_WORKER_MAX_AGE_SECONDS", default=120.0
)
READYZ_QUEUE_MAX_AGE_SECONDS = env.float("READYZ_QUEUE_MAX_AGE_SECONDS", default=900.0)
if READYZ_WORKER_MAX_AGE_SECONDS <= 0 or READYZ_QUEUE_MAX_AGE_SECONDS <= 0:
    raise ImproperlyConfigured(
        "READYZ_WORKER_MAX_AGE_SECONDS and READYZ_QUEUE_MAX_AGE_SECONDS must be "
        "more than 0 seconds."
    )
# -- end health and readiness ------------------------------------------------------------

# -- Task backend (issue 12, item 8; docs/SCALING.md) ----------------------------------
# Background tasks: django-tasks (the backport of Django 6's django.tasks).
# TASKS_BACKEND=database (default): the queue is a table of this database,
#   `manage.py db_worker` runs the tasks.
# TASKS_BACKEND=rq: RQ on Redis (django-tasks-rq) at REDIS_URL, or CACHE_URL when that
#   is a Redis URL; `manage.py rqworker --worker-class rq.worker.SimpleWorker
#   --with-scheduler --job-class django_tasks_rq.Job default` runs the tasks (the
#   scheduler runs the delayed ones; SimpleWorker runs them in the worker process,
#   like db_worker, instead of a fork per task: one heartbeat row per worker, and
#   in-process caches kept between tasks). docs/SCALING.md.
# A dotted path to another backend class is taken as it is (tests, benchmarks).
# TASKS_RQ_JOB_TIMEOUT: RQ stops a task running longer than this (seconds).
_TASKS_BACKENDS = {
    "database": "django_tasks_db.DatabaseBackend",
    "rq": "django_tasks_rq.RQBackend",
}
_tasks_backend = env.str("TASKS_BACKEND", default="database").strip()
if _tasks_backend not in _TASKS_BACKENDS and "." not in _tasks_backend:
    raise ImproperlyConfigured(
        f"TASKS_BACKEND must be 'database', 'rq' or a backend's dotted path, not "
        f"{_tasks_backend!r}."
    )
TASKS = {
    "default": {"BACKEND": _TASKS_BACKENDS.get(_tasks_backend, _tasks_backend)},
}
if TASKS["default"]["BACKEND"] == _TASKS_BACKENDS["rq"]:
    _rq_url = env.str("REDIS_URL", default="") or env.str("CACHE_URL", default="")
    if not _rq_url.startswith(("redis://", "rediss://")):
        raise ImproperlyConfigured(
            "TASKS_BACKEND=rq needs Redis: set REDIS_URL (or CACHE_URL) to a "
            "redis:// or rediss:// URL."
        )
    TASKS_RQ_JOB_TIMEOUT = env.int("TASKS_RQ_JOB_TIMEOUT", default=3600)
    if TASKS_RQ_JOB_TIMEOUT <= 0:
        raise ImproperlyConfigured("TASKS_RQ_JOB_TIMEOUT must be more than 0 seconds.")
    # Every queue a task goes to (NOTIFICATIONS_QUEUE_NAME, read again below).
    _rq_queues = sorted(
        {"default", env.str("NOTIFICATIONS_QUEUE_NAME", default="default")}
    )
    RQ_QUEUES = {
        name: {"URL": _rq_url, "DEFAULT_TIMEOUT": TASKS_RQ_JOB_TIMEOUT}
        for name in _rq_queues
    }
    TASKS["default"]["QUEUES"] = _rq_queues
    INSTALLED_APPS += ["django_rq", "django_tasks_rq"]
# -- end task backend ------------------------------------------------------------------

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
# Exchange Online IMAP (the SMTP tool's Email box): outlook.office365.com and the
# other clouds' hosts are read here instead (the sandbox), like M365_SMTP_HOST/PORT.
M365_IMAP_HOST = env.str("M365_IMAP_HOST", default="")
M365_IMAP_PORT = env.int("M365_IMAP_PORT", default=0)
# An extra CA certificate (PEM) to trust besides the system's, e.g. the sandbox CA.
M365_CA_BUNDLE = env.str("M365_CA_BUNDLE", default="")
# Network timeouts in seconds: per request, and for a whole Test Connection.
M365_HTTP_TIMEOUT = env.float("M365_HTTP_TIMEOUT", default=10.0)
TEST_CONNECTION_TIMEOUT = env.float("TEST_CONNECTION_TIMEOUT", default=20.0)
# SMTP: seconds per network operation, and whether "Security: none" (plain text,
# no TLS) may be chosen at all.
SMTP_TIMEOUT = env.float("SMTP_TIMEOUT", default=15.0)
SMTP_ALLOW_INSECURE = env.bool("SMTP_ALLOW_INSECURE", default=False)
# Email box (reading the sender mailbox, integrations/providers/mailbox.py): seconds
# per IMAP network operation, and the largest message read (a bigger one is skipped).
IMAP_TIMEOUT = env.float("IMAP_TIMEOUT", default=15.0)
MAILBOX_MAX_MESSAGE_BYTES = env.int(
    "MAILBOX_MAX_MESSAGE_BYTES", default=5 * 1024 * 1024
)
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

# --- Outbound policy (issue 11; integrations/providers/outbound.py) -----------------
# Every address an admin types (SMTP host and port, explicit OAuth endpoints) is
# resolved once and checked before connecting, and the connection goes to the checked
# address. Link-local, cloud metadata, unspecified and multicast addresses are always
# refused. Loopback and private ranges (RFC 1918, fc00::/7, 100.64.0.0/10, ...) only
# when OUTBOUND_ALLOW_PRIVATE_NETWORKS is on, or for the host names and CIDRs listed
# in OUTBOUND_ALLOWED_HOSTS (comma-separated, e.g. "mailrelay.corp,10.20.0.0/16").
# The M365_* hosts above are the operator's own and are trusted as they are.
OUTBOUND_ALLOW_PRIVATE_NETWORKS = env.bool(
    "OUTBOUND_ALLOW_PRIVATE_NETWORKS", default=False
)
OUTBOUND_ALLOWED_HOSTS = env.list("OUTBOUND_ALLOWED_HOSTS", default=[])


def _check_outbound_allowed_hosts(entries):
    import ipaddress
    import re

    name = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?")
    for entry in entries:
        try:
            ipaddress.ip_network(entry.strip("[]"), strict=False)
        except ValueError:
            if not name.fullmatch(entry.lower()) or "/" in entry:
                raise ImproperlyConfigured(
                    f"OUTBOUND_ALLOWED_HOSTS: {entry!r} is neither a host name nor "
                    "an IP address or network (10.0.0.0/8, fd00::/8)."
                )


_check_outbound_allowed_hosts(OUTBOUND_ALLOWED_HOSTS)
# SMTP ports an admin may choose besides 25, 465, 587 and 2525 (comma-separated);
# M365_SMTP_PORT is always allowed.
try:
    SMTP_ALLOWED_PORTS_EXTRA = [
        int(port) for port in env.list("SMTP_ALLOWED_PORTS_EXTRA", default=[])
    ]
except ValueError:
    raise ImproperlyConfigured(
        "SMTP_ALLOWED_PORTS_EXTRA must be port numbers separated by commas."
    )
if not all(0 < port < 65536 for port in SMTP_ALLOWED_PORTS_EXTRA):
    raise ImproperlyConfigured("SMTP_ALLOWED_PORTS_EXTRA: ports are 1 to 65535.")
# IMAP ports an admin may choose besides 993 and 143 (comma-separated);
# M365_IMAP_PORT is always allowed.
try:
    IMAP_ALLOWED_PORTS_EXTRA = [
        int(port) for port in env.list("IMAP_ALLOWED_PORTS_EXTRA", default=[])
    ]
except ValueError:
    raise ImproperlyConfigured(
        "IMAP_ALLOWED_PORTS_EXTRA must be port numbers separated by commas."
    )
if not all(0 < port < 65536 for port in IMAP_ALLOWED_PORTS_EXTRA):
    raise ImproperlyConfigured("IMAP_ALLOWED_PORTS_EXTRA: ports are 1 to 65535.")
# --- end of outbound policy ----------------------------------------------------------

# -- Content Security Policy (issue 11, item 6) ----------------------------------------
# form-action limits where a form may send the browser, redirects included. Save &
# Authorize posts to the product, which redirects to the sign-in page, so in
# production (DEBUG off) it is the product and Microsoft's sign-in hosts: every
# cloud's (integrations/providers/clouds.py) and M365_AUTHORITY_HOST, plus the origins
# in CSP_FORM_ACTION_EXTRA (comma-separated, e.g. the authorization endpoint of a
# non-Microsoft OAuth server used by the SMTP tool). With DEBUG on: any https origin,
# and loopback on any port (the sandbox).


def _origin(url: str, var: str) -> str:
    """`scheme://host[:port]` of an http(s) URL, rebuilt from its checked parts so
    that nothing else reaches the policy (a `;` would start another directive)."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    host = parts.hostname or ""
    if (
        parts.scheme not in ("http", "https")
        or port == -1
        or not re.fullmatch(r"[a-z0-9.-]+|[0-9a-f:.]+", host)
    ):
        raise ImproperlyConfigured(f"{var}: {url!r} is not an http(s) origin.")
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def _form_action_production() -> list[str]:
    from integrations.providers import clouds

    origins = [SELF]
    hosts = [
        ("clouds.py", clouds.preset(cloud).authority_host) for cloud in clouds.Cloud
    ]
    if M365_AUTHORITY_HOST:
        hosts.append(("M365_AUTHORITY_HOST", M365_AUTHORITY_HOST))
    for extra in env.list("CSP_FORM_ACTION_EXTRA", default=[]):
        hosts.append(("CSP_FORM_ACTION_EXTRA", extra))
    for var, host in hosts:
        origin = _origin(host, var)
        if origin not in origins:
            origins.append(origin)
    return origins


CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "frame-ancestors": [NONE],
        "form-action": (
            [SELF, "https:", "http://127.0.0.1:*", "http://localhost:*"]
            if DEBUG
            else _form_action_production()
        ),
    },
}
# -- end Content Security Policy -------------------------------------------------------

CACHES = {
    "default": env.cache("CACHE_URL", default="locmemcache://"),
}

# -- Logs (issue 12, item 7; config/logs.py) ------------------------------------------
# LOG_FORMAT=plain: one readable line per record. LOG_FORMAT=json: one JSON object per
# line (time, level, logger, message, exception) with the request_id or task_id of the
# request or task it was logged for. LOG_LEVEL: the root logger's level.
from config.logs import logging_config  # noqa: E402

LOG_FORMAT = env.str("LOG_FORMAT", default="plain").strip().lower()
LOGGING = logging_config(LOG_FORMAT, env.str("LOG_LEVEL", default="INFO").upper())
# -- end logs

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

# -- API tokens (issue 11, item 3) --------------------------------------------------
# The expiry a new API token gets unless its creator picks another (30, 90, 365
# days or none): days, 0 for no expiry.
API_TOKEN_DEFAULT_DAYS = env.int("API_TOKEN_DEFAULT_DAYS", default=90)
if not 0 <= API_TOKEN_DEFAULT_DAYS <= 3650:
    raise ImproperlyConfigured(
        "API_TOKEN_DEFAULT_DAYS must be a number of days from 0 (no expiry) to 3650."
    )
# -- end API tokens ------------------------------------------------------------------

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
# killed before writing them sends at most these again (with the same Message-ID;
# twice these on PostgreSQL, where the last write may still be in flight).
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
# Deliveries claimed at a time by one worker (one connection serves them all). A
# claim and a batch's email queries cost about the same for 25 rows as for 100, so
# fewer, larger batches save a worker about a sixth of its time per message; the
# rows a worker holds are renewed by its heartbeat and, if it dies, taken over
# together a lease later.
NOTIFICATIONS_CLAIM_BATCH = env.int("NOTIFICATIONS_CLAIM_BATCH", default=100)
# The django-tasks queue the delivery tasks go to (db_worker --queue-name).
NOTIFICATIONS_QUEUE_NAME = env.str("NOTIFICATIONS_QUEUE_NAME", default="default")

# -- Email box (issue 13): reading sender mailboxes for bounces ----------------------
# How often the worker reads each tool's Email box (seconds; 0 turns reading off).
NOTIFICATIONS_MAILBOX_READ_SECONDS = env.float(
    "NOTIFICATIONS_MAILBOX_READ_SECONDS", default=300.0
)
# How long one worker holds a mailbox while reading it (another one may take it over
# after that, if the first died).
NOTIFICATIONS_MAILBOX_LEASE_SECONDS = env.float(
    "NOTIFICATIONS_MAILBOX_LEASE_SECONDS", default=120.0
)
# The first read of a mailbox (or after its cursor became invalid) looks this many
# days back.
NOTIFICATIONS_MAILBOX_FIRST_READ_DAYS = env.int(
    "NOTIFICATIONS_MAILBOX_FIRST_READ_DAYS", default=7
)
# A link's address that bounced permanently this many times is suppressed (left out
# of that link's deliveries) until a project owner clears it.
NOTIFICATIONS_BOUNCE_SUPPRESS_AFTER = env.int(
    "NOTIFICATIONS_BOUNCE_SUPPRESS_AFTER", default=3
)
# -- end Email box

# -- Metrics (issue 12, item 4): GET /metrics for Prometheus ------------------------
# The bearer token Prometheus sends (`Authorization: Bearer ...`); unset, /metrics is
# switched off (404). At least 16 characters, e.g. `python -c "import secrets;
# print(secrets.token_urlsafe(32))"`.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
if METRICS_TOKEN and (len(METRICS_TOKEN) < 16 or re.search(r"\s", METRICS_TOKEN)):
    raise ImproperlyConfigured(
        "METRICS_TOKEN must be at least 16 characters without spaces (or unset to "
        "switch /metrics off)."
    )
# prometheus-client's multi-process mode: a directory shared by every web and task
# worker process (set in their environment before they start, emptied only when
# all of them are stopped). Unset, /metrics counts the answering process only.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if PROMETHEUS_MULTIPROC_DIR and not Path(PROMETHEUS_MULTIPROC_DIR).is_dir():
    raise ImproperlyConfigured(
        "PROMETHEUS_MULTIPROC_DIR must be an existing directory the web and worker "
        "processes can write to (or unset)."
    )
# -- end metrics ---------------------------------------------------------------------

# -- Periodic work and retention (issue 12, items 2 and 6; operations/periodic.py) ---
# A task worker records its heartbeat at least this often (the operations.heartbeat
# periodic job); 0 turns the job off.
WORKER_HEARTBEAT_SECONDS = env.float("WORKER_HEARTBEAT_SECONDS", default=30.0)
# How often the operations.retention job purges old records (default: daily).
RETENTION_INTERVAL_SECONDS = env.float("RETENTION_INTERVAL_SECONDS", default=86400.0)
# Days kept (0 keeps forever): sent deliveries and events none of whose deliveries is
# pending; finished task results (a week of task history for troubleshooting, while
# the table, which gets a row per task run, stays small); audit entries and sign-in
# attempts/logs. Findings and scans are never purged.
RETENTION_DELIVERIES_DAYS = env.int("RETENTION_DELIVERIES_DAYS", default=90)
RETENTION_TASK_RESULTS_DAYS = env.int("RETENTION_TASK_RESULTS_DAYS", default=7)
RETENTION_AUDIT_DAYS = env.int("RETENTION_AUDIT_DAYS", default=365)
# Rows deleted per transaction (short transactions, no long locks).
RETENTION_BATCH_SIZE = env.int("RETENTION_BATCH_SIZE", default=1000)
for _name in ("WORKER_HEARTBEAT_SECONDS", "RETENTION_INTERVAL_SECONDS"):
    if not 0 <= globals()[_name] <= 365 * 86400:
        raise ImproperlyConfigured(f"{_name} must be 0 (off) or seconds up to a year.")
for _name in (
    "RETENTION_DELIVERIES_DAYS",
    "RETENTION_TASK_RESULTS_DAYS",
    "RETENTION_AUDIT_DAYS",
):
    if not 0 <= globals()[_name] <= 36500:
        raise ImproperlyConfigured(f"{_name} must be 0 (keep forever) or days.")
if not 1 <= RETENTION_BATCH_SIZE <= 100000:
    raise ImproperlyConfigured("RETENTION_BATCH_SIZE must be from 1 to 100000.")
# -- end periodic work and retention ------------------------------------------------

# -- Integration health (issue 14, A): credential expiry reminders, grant keep-alive --
# How often notifications.expiry_reminders reads each tool's credential expiry (the
# certificate, the app registration with Application.Read.All, or the typed date)
# and sends the 30/14/7/1-day reminders; 0 turns the job off.
INTEGRATION_EXPIRY_CHECK_SECONDS = env.float(
    "INTEGRATION_EXPIRY_CHECK_SECONDS", default=86400.0
)
# How often notifications.grant_keepalive refreshes idle delegated grants (0: off),
# and after how many days without a refresh a grant counts as idle (Entra ID drops a
# refresh token unused for 90 days: AADSTS700082).
INTEGRATION_GRANT_KEEPALIVE_SECONDS = env.float(
    "INTEGRATION_GRANT_KEEPALIVE_SECONDS", default=86400.0
)
INTEGRATION_GRANT_IDLE_DAYS = env.int("INTEGRATION_GRANT_IDLE_DAYS", default=14)
for _name in (
    "INTEGRATION_EXPIRY_CHECK_SECONDS",
    "INTEGRATION_GRANT_KEEPALIVE_SECONDS",
):
    if not 0 <= globals()[_name] <= 365 * 86400:
        raise ImproperlyConfigured(f"{_name} must be 0 (off) or seconds up to a year.")
if not 1 <= INTEGRATION_GRANT_IDLE_DAYS <= 80:
    raise ImproperlyConfigured(
        "INTEGRATION_GRANT_IDLE_DAYS must be from 1 to 80 (well inside 90 days)."
    )
# -- end integration health (A) -------------------------------------------------------

# -- Integration health (issue 14, B): silent health checks, incidents -------------
# How often notifications.health_checks checks each active tool without sending
# mail (token, permission, sender mailbox; SMTP up to AUTH); 0 turns it off.
INTEGRATION_HEALTH_CHECK_SECONDS = env.float(
    "INTEGRATION_HEALTH_CHECK_SECONDS", default=86400.0
)
# How often notifications.attention_rechecks checks again a tool in "Needs
# attention" (a success makes it active and sends what waited); 0: off.
INTEGRATION_ATTENTION_RECHECK_SECONDS = env.float(
    "INTEGRATION_ATTENTION_RECHECK_SECONDS", default=300.0
)
# How long a delivery waits for a tool in "Needs attention" (or "Needs
# re-authorization") before it fails ("tool_needs_attention_too_long").
NOTIFICATIONS_ATTENTION_MAX_AGE_SECONDS = env.float(
    "NOTIFICATIONS_ATTENTION_MAX_AGE_SECONDS", default=86400.0
)
for _name in (
    "INTEGRATION_HEALTH_CHECK_SECONDS",
    "INTEGRATION_ATTENTION_RECHECK_SECONDS",
):
    if not 0 <= globals()[_name] <= 365 * 86400:
        raise ImproperlyConfigured(f"{_name} must be 0 (off) or seconds up to a year.")
if not 0 <= NOTIFICATIONS_ATTENTION_MAX_AGE_SECONDS <= 30 * 86400:
    raise ImproperlyConfigured(
        "NOTIFICATIONS_ATTENTION_MAX_AGE_SECONDS must be seconds up to 30 days."
    )
# -- end integration health (B) -------------------------------------------------------
