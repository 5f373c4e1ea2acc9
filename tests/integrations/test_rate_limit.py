"""Test Connection's per-user rate limit, in the local cache and shared through Redis."""

import uuid

import pytest
from django.core.cache import caches

from integrations import services

pytestmark = pytest.mark.django_db


def attempts(user, n):
    return [services.test_connection_allowed(user) for _ in range(n)]


def test_limit_applies_per_user(settings, admin_user, plain_user):
    settings.TEST_CONNECTION_RATE_LIMIT = 3
    assert attempts(admin_user, 4) == [True, True, True, False]
    assert attempts(plain_user, 1) == [True]


@pytest.mark.services
def test_limit_is_shared_by_processes_through_redis(settings, admin_user, redis_url):
    prefix = f"test-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": prefix,
        }
    }
    settings.TEST_CONNECTION_RATE_LIMIT = 2
    client = caches["default"]._cache.get_client()
    try:
        assert attempts(admin_user, 2) == [True, True]
        # The counter lives in Redis, where every process sees it.
        [key] = client.keys(f"{prefix}*test-connection:{admin_user.pk}:*")
        assert int(client.get(key)) == 2
        assert attempts(admin_user, 1) == [False]
    finally:
        for key in client.keys(f"{prefix}*"):
            client.delete(key)
