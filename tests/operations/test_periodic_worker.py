"""Periodic jobs in real processes: `run_periodic --book` then `manage.py db_worker`
runs the jobs, books their next runs and writes its heartbeat; a worker killed and
replaced resumes the schedule; concurrent bookers on PostgreSQL book each job once."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from tests.processes import run, start_worker, stop, wait_for

ROOT = Path(__file__).resolve().parents[2]


def periodic_env(tmp_path, database_url, **extra):
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_READ_DOT_ENV_FILE="False",
        DEBUG="True",
        VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=database_url,
        SECRET_KEY="periodic-test-secret-key-" + "x" * 40,
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        SITE_URL="https://appsec.example.test",
        TASKS_BACKEND="django_tasks_db.DatabaseBackend",
        WORKER_HEARTBEAT_SECONDS="1",
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def status(env):
    return json.loads(run(env, "-m", "tests.operations.periodic_script", "status"))


def assert_booked_once(state):
    """Each job has exactly one waiting task row, and it is the row's booking."""
    for name, job in state["jobs"].items():
        waiting = [
            t for t in state["tasks"] if t["job"] == name and t["status"] == "READY"
        ]
        assert len(waiting) == 1, (name, waiting)
        assert waiting[0]["id"] == job["booked_task_id"], (name, job, waiting)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)]
)
def database_url(request, tmp_path):
    """A fresh SQLite file, or a fresh PostgreSQL database (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'periodic.sqlite3'}"
        return
    import psycopg

    postgres_url = request.getfixturevalue("postgres_url")
    name = f"appsec_periodic_{uuid.uuid4().hex[:8]}"
    admin = postgres_url.replace("postgres://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{postgres_url.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_worker_runs_periodic_jobs_books_the_next_and_beats(tmp_path, database_url):
    env = periodic_env(tmp_path, database_url)
    run(env, "manage.py", "migrate", "--no-input", "-v", "0")
    run(env, "manage.py", "run_periodic", "--book")
    state = status(env)
    assert set(state["jobs"]) >= {
        "operations.heartbeat",
        "operations.retention",
        "notifications.recover",
    }
    assert_booked_once(state)
    assert state["heartbeats"] == []  # no worker yet

    first = start_worker(env)
    try:
        # The heartbeat job (every second) runs again and again, each run booking
        # the next; the worker's heartbeat row is fresh.
        state = wait_for(
            lambda: (
                (s := status(env))["jobs"]["operations.heartbeat"]["runs"] >= 3 and s
            ),
            timeout=60,
        )
        assert state, status(env)
        assert [h["pid"] for h in state["heartbeats"]] == [first.pid]
        assert time.time() - state["heartbeats"][0]["last_seen_at"] < 10
        for name in ("operations.retention", "notifications.recover"):
            job = state["jobs"][name]
            assert job["runs"] == 1 and job["failures"] == 0, (name, job)
        retention = state["jobs"]["operations.retention"]
        assert retention["next_run_at"] - retention["last_started_at"] == 86400
        assert not [t for t in state["tasks"] if t["status"] == "FAILED"]

        # A worker killed (no goodbye) and replaced: the schedule resumes.
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        runs = status(env)["jobs"]["operations.heartbeat"]["runs"]
        second = start_worker(env)
        try:
            state = wait_for(
                lambda: (
                    (s := status(env))["jobs"]["operations.heartbeat"]["runs"]
                    >= runs + 2
                    and second.pid in [h["pid"] for h in s["heartbeats"]]
                    and s
                ),
                timeout=60,
            )
            assert state, status(env)
        finally:
            stop(second)
    finally:
        stop(first)
    state = status(env)
    assert state["jobs"]["operations.heartbeat"]["failures"] == 0
    # Stopped, the workers leave each job booked once for the next worker.
    waiting = [t for t in state["tasks"] if t["status"] == "READY"]
    assert sorted(t["job"] for t in waiting) == sorted(state["jobs"])
    assert {t["id"] for t in waiting} == {
        job["booked_task_id"] for job in state["jobs"].values()
    }


@pytest.mark.services
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_bookers_on_postgresql_book_each_job_once(tmp_path, database_url):
    env = periodic_env(tmp_path, database_url)
    run(env, "manage.py", "migrate", "--no-input", "-v", "0")
    for _ in range(3):
        bookers = [
            subprocess.Popen(
                [sys.executable, "manage.py", "run_periodic", "--book"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        for booker in bookers:
            _, stderr = booker.communicate(timeout=120)
            assert booker.returncode == 0, stderr[-3000:]
        state = status(env)
        assert len(state["jobs"]) >= 3
        assert_booked_once(state)
        run(env, "-m", "tests.operations.periodic_script", "vanish")  # lost bookings
