"""/healthz and /readyz: who may ask, every readiness check passing and failing, and
nothing secret in the answers."""

import json
import os
import subprocess
import sys
from datetime import timedelta
from unittest import mock

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client
from django.utils import timezone

from config.settings import _check_readyz_networks
from operations.heartbeat import worker_heartbeat
from operations.models import WorkerHeartbeat

CHECKS = {"database", "migrations", "cache", "worker", "queue"}


def readyz(client=None, **headers):
    response = (client or Client()).get("/readyz", **headers)
    return response, response.json()


@pytest.fixture
def fresh_worker(db):
    worker_heartbeat(force=True)


# -- /healthz -------------------------------------------------------------------------


def test_healthz_answers_without_sign_in_or_database():
    # No django_db mark: any database query here raises (pytest-django blocks it).
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]
    assert "sessionid" not in response.cookies and "csrftoken" not in response.cookies


def test_healthz_takes_only_get_and_head():
    client = Client()
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


def test_probes_are_not_redirected_to_https(settings, db):
    settings.SECURE_SSL_REDIRECT = True
    client = Client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code in (200, 503)
    # Every other page still is.
    assert client.get("/operations/").status_code == 301


# -- /readyz: every check ----------------------------------------------------------


def test_readyz_passes_when_every_check_passes(fresh_worker):
    response, body = readyz()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == CHECKS
    for name, check in body["checks"].items():
        assert check["status"] in ("ok", "skipped"), name
        assert isinstance(check["duration_ms"], float)
    assert body["checks"]["migrations"]["unapplied"] == 0
    # CACHE_URL unset: a process-local cache, nothing shared to reach.
    assert body["checks"]["cache"]["status"] == "skipped"


def test_readyz_fails_without_a_worker_heartbeat(db):
    response, body = readyz()
    assert response.status_code == 503
    assert body["status"] == "fail"
    worker = body["checks"]["worker"]
    assert worker["status"] == "fail" and worker["last_seen_seconds"] is None


def test_readyz_fails_when_the_last_heartbeat_is_too_old(fresh_worker, settings):
    settings.READYZ_WORKER_MAX_AGE_SECONDS = 60
    WorkerHeartbeat.objects.update(last_seen_at=timezone.now() - timedelta(minutes=5))
    response, body = readyz()
    assert response.status_code == 503
    assert body["checks"]["worker"]["status"] == "fail"
    assert body["checks"]["worker"]["last_seen_seconds"] >= 300

    worker_heartbeat(force=True)  # the worker beats again
    response, body = readyz()
    assert response.status_code == 200, body
    assert body["checks"]["worker"]["last_seen_seconds"] < 60


def test_readyz_fails_when_a_due_delivery_waits_too_long(
    fresh_worker, pending_delivery, settings
):
    settings.READYZ_QUEUE_MAX_AGE_SECONDS = 600
    pending_delivery(due_seconds_ago=-3600)  # a retry booked for later: not late
    pending_delivery(due_seconds_ago=60)
    response, body = readyz()
    assert response.status_code == 200, body
    assert body["checks"]["queue"]["due"] == 1

    pending_delivery(due_seconds_ago=900)
    response, body = readyz()
    assert response.status_code == 503
    queue = body["checks"]["queue"]
    assert queue["status"] == "fail"
    assert queue["due"] == 2 and queue["oldest_due_seconds"] >= 900
    assert queue["max_age_seconds"] == 600


def test_readyz_fails_when_a_migration_is_not_applied(fresh_worker):
    # Forget that the latest operations migration was applied, as on a database
    # the release's `migrate` has not reached yet (rolled back with the test).
    latest = (
        MigrationRecorder.Migration.objects.filter(app="operations")
        .order_by("-name")
        .first()
    )
    latest.delete()
    response, body = readyz()
    assert response.status_code == 503
    assert body["checks"]["migrations"] == {
        "status": "fail",
        "unapplied": 1,
        "duration_ms": body["checks"]["migrations"]["duration_ms"],
    }
    assert body["checks"]["database"]["status"] == "ok"


def test_readyz_fails_when_the_database_is_unreachable(django_db_blocker):
    secret_name = "/nonexistent-dir-s3cret/db-s3cret.sqlite3"
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "sqlite":
        secret_name = "no-such-database-s3cret"
    with django_db_blocker.unblock():
        connection.close()
        try:
            with mock.patch.dict(connection.settings_dict, {"NAME": secret_name}):
                response, body = readyz()
                connection.close()
        finally:
            connection.close()
    assert response.status_code == 503
    assert body["checks"]["database"] == {
        "status": "fail",
        "error": "OperationalError",
        "duration_ms": body["checks"]["database"]["duration_ms"],
    }
    assert body["checks"]["migrations"]["status"] == "fail"
    assert "s3cret" not in response.content.decode()


@pytest.mark.services
def test_readyz_checks_a_shared_cache(fresh_worker, settings, redis_url):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
        }
    }
    response, body = readyz()
    assert response.status_code == 200, body
    assert body["checks"]["cache"]["status"] == "ok"


def test_readyz_fails_when_the_cache_is_unreachable(fresh_worker, settings):
    # Nothing listens on port 1; the password must not reach the answer.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://:cache-s3cret@127.0.0.1:1/0",
        }
    }
    response, body = readyz()
    assert response.status_code == 503
    cache_check = body["checks"]["cache"]
    assert cache_check["status"] == "fail"
    assert cache_check["error"] == "ConnectionError"
    assert "s3cret" not in response.content.decode()
    assert "127.0.0.1" not in response.content.decode()


def test_readyz_answers_only_known_fields(db):
    response, body = readyz()
    allowed = {
        "status",
        "duration_ms",
        "error",
        "reason",
        "unapplied",
        "last_seen_seconds",
        "max_age_seconds",
        "due",
        "oldest_due_seconds",
    }
    for check in body["checks"].values():
        assert set(check) <= allowed
    for value in json.dumps(body).split('"'):
        assert "sqlite" not in value and "postgres" not in value


# -- /readyz: who may ask ---------------------------------------------------------


def test_readyz_refuses_an_address_outside_the_allowed_networks(db):
    response = Client(REMOTE_ADDR="10.1.2.3").get("/readyz")
    assert response.status_code == 403
    assert response.json()["status"] == "forbidden"
    assert "checks" not in response.json()


def test_readyz_answers_an_allowed_network(db, settings):
    settings.READYZ_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert Client(REMOTE_ADDR="10.1.2.3").get("/readyz").status_code == 503
    # Loopback is no longer listed.
    assert Client(REMOTE_ADDR="127.0.0.1").get("/readyz").status_code == 403


def test_readyz_with_a_token_only(fresh_worker, settings):
    settings.READYZ_ALLOWED_NETWORKS = []
    settings.READYZ_TOKEN = "probe-token-s3cret"
    client = Client(REMOTE_ADDR="127.0.0.1")
    assert client.get("/readyz").status_code == 403
    wrong = client.get("/readyz", HTTP_AUTHORIZATION="Bearer probe-token-s3cre")
    assert wrong.status_code == 403
    assert "s3cret" not in wrong.content.decode()
    basic = client.get("/readyz", HTTP_AUTHORIZATION="Basic probe-token-s3cret")
    assert basic.status_code == 403
    right = client.get("/readyz", HTTP_AUTHORIZATION="Bearer probe-token-s3cret")
    assert right.status_code == 200, right.json()
    assert "s3cret" not in right.content.decode()


def test_readyz_without_a_token_setting_refuses_any_bearer(db, settings):
    settings.READYZ_ALLOWED_NETWORKS = []
    settings.READYZ_TOKEN = ""
    response = Client().get("/readyz", HTTP_AUTHORIZATION="Bearer ")
    assert response.status_code == 403


def test_readyz_networks_setting_is_checked_at_start():
    _check_readyz_networks(["10.0.0.0/8", "::1/128", "192.168.1.7"])
    with pytest.raises(ImproperlyConfigured, match="READYZ_ALLOWED_NETWORKS"):
        _check_readyz_networks(["10.0.0.0/33"])


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("READYZ_TOKEN", "short", "READYZ_TOKEN must be at least 16"),
        ("READYZ_ALLOWED_NETWORKS", "10.0.0.0/8,intranet", "READYZ_ALLOWED_NETWORKS"),
        ("READYZ_WORKER_MAX_AGE_SECONDS", "0", "READYZ_WORKER_MAX_AGE_SECONDS"),
        ("READYZ_QUEUE_MAX_AGE_SECONDS", "-5", "READYZ_QUEUE_MAX_AGE_SECONDS"),
    ],
)
def test_bad_readyz_settings_stop_start_up(tmp_path, variable, value, message):
    environment = {
        **os.environ,
        "DEBUG": "True",
        "VAR_DIR": str(tmp_path),
        "DJANGO_READ_DOT_ENV_FILE": "False",
        variable: value,
    }
    run = subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "ImproperlyConfigured" in run.stderr and message in run.stderr
