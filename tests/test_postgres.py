"""The product on PostgreSQL: migrations apply, encrypted fields round-trip, and
timestamps read as Django reads them, by psycopg's optimised loader."""

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import pytest

pytestmark = pytest.mark.services


def test_migrations_and_encrypted_secrets_work_on_postgresql(postgres_url, tmp_path):
    import psycopg

    name = f"appsec_test_{uuid.uuid4().hex[:8]}"
    admin = postgres_url.replace("postgres://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        base, _, _ = postgres_url.rpartition("/")
        env = dict(
            os.environ,
            DATABASE_URL=f"{base}/{name}",
            DEBUG="True",
            VAR_DIR=str(tmp_path),
            DJANGO_SETTINGS_MODULE="config.settings",
        )
        run = lambda *args: subprocess.run(  # noqa: E731
            [sys.executable, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        migrate = run("manage.py", "migrate", "--no-input")
        assert migrate.returncode == 0, migrate.stderr
        script = (
            "import django; django.setup();"
            "from integrations.models import Integration;"
            "i = Integration.objects.create(provider='p', secrets={'client_secret': 'pg-secret'});"
            "print(Integration.objects.get(pk=i.pk).secrets['client_secret']);"
            "from django.db import connection;"
            "print(connection.settings_dict['ENGINE'])"
        )
        result = run("-c", script)
        # A postgres:// URL gets Django's backend with the optimised timestamp
        # loader (tested below).
        assert result.stdout.split() == ["pg-secret", "config.postgresql"], (
            result.stderr
        )
        with psycopg.connect(f"{admin.rpartition('/')[0]}/{name}") as conn:
            raw = conn.execute(
                "SELECT secrets FROM integrations_integration"
            ).fetchone()[0]
        assert "pg-secret" not in raw
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- timestamps parsed by psycopg's optimised loader (config/postgresql/base.py) ------

TIMESTAMPS = (
    "SELECT '2026-12-03 07:59:31.123456+02'::timestamptz,"
    " '1999-12-31 23:59:59+00'::timestamptz, NULL::timestamptz,"
    " '2024-03-31 01:30:00-09:30'::timestamptz"
)


def _read_timestamps(engine: str, postgres_url: str):
    """TIMESTAMPS as a fresh connection of `engine` reads them, and the class of
    the timestamptz loader it has."""
    import environ
    import psycopg
    from django.db.utils import ConnectionHandler
    from psycopg.pq import Format

    handler = ConnectionHandler(
        {
            "default": {
                **environ.Env.db_url_config(postgres_url),
                "ENGINE": engine,
            }
        }
    )
    connection = handler["default"]
    try:
        with connection.cursor() as cursor:
            cursor.execute(TIMESTAMPS)
            values = cursor.fetchone()
        oid = psycopg.adapters.types["timestamptz"].oid
        loader = connection.connection.adapters.get_loader(oid, Format.TEXT)
        return values, loader
    finally:
        connection.close()


@pytest.mark.parametrize(
    "use_tz, time_zone, first",
    [
        (True, "UTC", datetime(2026, 12, 3, 5, 59, 31, 123456, tzinfo=UTC)),
        (False, "UTC", datetime(2026, 12, 3, 5, 59, 31, 123456)),
        # Without USE_TZ, naive in the connection's time zone (TIME_ZONE).
        (False, "Asia/Kolkata", datetime(2026, 12, 3, 11, 29, 31, 123456)),
    ],
    ids=["aware-utc", "naive-utc", "naive-kolkata"],
)
def test_timestamps_read_by_the_optimised_loader_are_djangos_values(
    postgres_url, settings, django_db_blocker, use_tz, time_zone, first
):
    import psycopg.types.datetime
    from psycopg.pq import Format

    settings.USE_TZ = use_tz
    settings.TIME_ZONE = time_zone
    with django_db_blocker.unblock():  # connections of their own, not the tests'
        product, loader = _read_timestamps("config.postgresql", postgres_url)
        django, django_loader = _read_timestamps(
            "django.db.backends.postgresql", postgres_url
        )

    # Not Django's pure-Python parse: psycopg's optimised loader does it.
    assert issubclass(django_loader, psycopg.types.datetime.TimestamptzLoader)
    assert not issubclass(loader, psycopg.types.datetime.TimestamptzLoader)
    oid = psycopg.adapters.types["timestamptz"].oid
    assert loader(oid)._parse.__self__.__class__ is (
        psycopg.adapters.get_loader(oid, Format.TEXT)
    )
    # The same values, in the same time zone object, as Django's own loader gives.
    assert product == django
    assert [v.tzinfo if v else None for v in product] == [
        v.tzinfo if v else None for v in django
    ]
    assert product[0] == first and product[0].tzinfo is first.tzinfo
    assert product[2] is None
