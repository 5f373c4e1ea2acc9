"""Real product processes for tests: `manage.py` commands run to completion and
`db_worker` processes started, polled and stopped."""

import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(env, *args, timeout=120):
    """`python *args` in the repository with `env`; its stdout (fails on exit != 0)."""
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def start_worker(env, *extra):
    """A real `manage.py db_worker` polling every 0.1 s; its stderr is kept."""
    return subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "db_worker",
            "--no-startup-delay",
            "--no-reload",
            "--interval",
            "0.1",
            *extra,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(process):
    """SIGTERM, then SIGKILL if it has not exited within 20 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def wait_for(predicate, timeout, interval=0.05):
    """Polls `predicate` until it returns something true (returned) or `timeout`
    seconds pass (None)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    return None


def pytest_on_postgresql(postgres_url, tmp_path, *paths, **env):
    """Run the test modules `paths` (their tests not marked `services`) again in a
    child pytest whose DATABASE_URL names a throwaway PostgreSQL database, with
    `env` added; assert they all pass, none skipped. Both databases (pytest-django
    makes "test_<name>") are dropped at the end."""
    import os
    import uuid

    import psycopg

    name = f"appsec_child_{uuid.uuid4().hex[:8]}"
    server = postgres_url.replace("postgres://", "postgresql://")
    base = postgres_url.rpartition("/")[0]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", *paths]
            + ["-q", "-p", "no:cacheprovider", "-m", "not services"],
            cwd=ROOT,
            env=dict(
                os.environ,
                DATABASE_URL=f"{base}/{name}",
                VAR_DIR=str(tmp_path),
                DJANGO_SETTINGS_MODULE="config.settings_test",
                **env,
            ),
            capture_output=True,
            text=True,
            timeout=900,
        )
        output = result.stdout[-6000:] + result.stderr[-3000:]
        assert result.returncode == 0, output
        assert " passed" in result.stdout and " skipped" not in result.stdout, output
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "test_{name}" WITH (FORCE)')
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
