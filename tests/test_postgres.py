"""The product on PostgreSQL: migrations apply and encrypted fields round-trip."""

import os
import subprocess
import sys
import uuid

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
            "print(Integration.objects.get(pk=i.pk).secrets['client_secret'])"
        )
        result = run("-c", script)
        assert result.stdout.strip() == "pg-secret", result.stderr
        with psycopg.connect(f"{admin.rpartition('/')[0]}/{name}") as conn:
            raw = conn.execute(
                "SELECT secrets FROM integrations_integration"
            ).fetchone()[0]
        assert "pg-secret" not in raw
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
