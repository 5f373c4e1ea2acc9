"""The delivery path on PostgreSQL: claims with row locks and id arrays
(`notifications.lookups.IdIn`), the next batch claimed and the outcomes written on
threads of the run's own, and a batch's emails from one findings query.
tests/notifications/test_emails.py and services/test_delivery_runs.py (the query
counts included) and services/test_throttling.py, run again in a child pytest whose
DATABASE_URL names a throwaway PostgreSQL database."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]


def test_delivery_on_postgresql(postgres_url, tmp_path):
    import psycopg

    name = f"appsec_delivery_{uuid.uuid4().hex[:8]}"
    server = postgres_url.replace("postgres://", "postgresql://")
    base = postgres_url.rpartition("/")[0]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        env = dict(
            os.environ,
            DATABASE_URL=f"{base}/{name}",
            VAR_DIR=str(tmp_path),
            DJANGO_SETTINGS_MODULE="config.settings_test",
        )
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "tests/notifications/test_emails.py",
                "tests/notifications/services/test_delivery_runs.py",
                "tests/notifications/services/test_throttling.py",
                "-q",
                "-p",
                "no:cacheprovider",
                "-m",
                "not services",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
        assert " passed" in run.stdout and " skipped" not in run.stdout, run.stdout
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            # pytest-django's test database, then ours.
            conn.execute(f'DROP DATABASE IF EXISTS "test_{name}" WITH (FORCE)')
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
