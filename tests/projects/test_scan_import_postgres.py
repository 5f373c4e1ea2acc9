"""The scan import's set-based SQL on PostgreSQL: tests/projects/test_scan_import.py
(the query counts included) and test_services.py, run again in a child pytest whose
DATABASE_URL names a throwaway PostgreSQL database."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]


def test_scan_import_on_postgresql(postgres_url, tmp_path):
    import psycopg

    name = f"appsec_import_{uuid.uuid4().hex[:8]}"
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
            EXPECT_DATABASE_VENDOR="postgresql",
        )
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "tests/projects/test_scan_import.py",
                "tests/projects/test_services.py",
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
            timeout=600,
        )
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            # pytest-django's test database, then ours.
            conn.execute(f'DROP DATABASE IF EXISTS "test_{name}" WITH (FORCE)')
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
