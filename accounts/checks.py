"""Deployment checks (`manage.py check --deploy`)."""

from django.conf import settings
from django.core.checks import Warning

#: Cache backends whose contents live in one process only.
PER_PROCESS_CACHE_BACKENDS = {
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
}


def shared_cache_check(app_configs=None, **kwargs):
    """accounts.W001: in production, rate limits need a cache every process shares."""
    if settings.DEBUG:
        return []
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if backend not in PER_PROCESS_CACHE_BACKENDS:
        return []
    return [
        Warning(
            f"The default cache ({backend.rsplit('.', 1)[-1]}) is kept inside each "
            "process, so rate limits are counted per process: the Test Connection "
            "limit (TEST_CONNECTION_RATE_LIMIT a minute per user) allows that many "
            "in every server process and worker. (Sign-in lockouts are counted in "
            "the database and are shared either way.)",
            hint=(
                "Set CACHE_URL to a cache every process shares, e.g. "
                "redis://127.0.0.1:6379/0 (or dbcache://cache_table after "
                "`manage.py createcachetable`)."
            ),
            id="accounts.W001",
        )
    ]
