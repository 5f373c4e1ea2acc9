"""accounts.W001: in production without a shared cache, rate limits are per process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from accounts.checks import shared_cache_check

ROOT = Path(__file__).resolve().parents[2]

LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
DUMMY = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/0",
    }
}
DATABASE = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "cache_table",
    }
}


@pytest.mark.parametrize("caches", [LOCMEM, DUMMY])
def test_a_per_process_cache_in_production_is_warned_about(settings, caches):
    settings.DEBUG = False
    settings.CACHES = caches

    [warning] = shared_cache_check()

    assert warning.id == "accounts.W001"
    assert "rate limits are counted per process" in warning.msg
    assert "TEST_CONNECTION_RATE_LIMIT" in warning.msg
    assert "CACHE_URL" in warning.hint


@pytest.mark.parametrize("caches", [REDIS, DATABASE])
def test_a_shared_cache_is_fine(settings, caches):
    settings.DEBUG = False
    settings.CACHES = caches
    assert shared_cache_check() == []


def test_development_is_not_warned(settings):
    settings.DEBUG = True
    settings.CACHES = LOCMEM
    assert shared_cache_check() == []


def production_env(tmp_path, **extra):
    """A production-style environment: DEBUG off, keys set, https SITE_URL."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"CACHE_URL", "DJANGO_SETTINGS_MODULE", "DEBUG"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_READ_DOT_ENV_FILE="False",
        DEBUG="False",
        SECRET_KEY="check-deploy-test-" + "k7Qz9xW2pL" * 6,
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="appsec.example.com",
        SITE_URL="https://appsec.example.com",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        VAR_DIR=str(tmp_path / "var"),
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def check_deploy(env):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.stdout + result.stderr


def test_check_deploy_warns_without_cache_url(tmp_path):
    output = check_deploy(production_env(tmp_path))
    assert "accounts.W001" in output, output


def test_check_deploy_is_quiet_about_it_with_redis(tmp_path):
    output = check_deploy(
        production_env(tmp_path, CACHE_URL="redis://127.0.0.1:6379/0")
    )
    assert "System check identified" in output, output
    assert "accounts.W001" not in output, output
