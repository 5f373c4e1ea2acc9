"""The database-backed worker in real processes: killed mid-batch, then restarted,
it finishes the rest with nothing lost and nothing doubled; two workers on
PostgreSQL never send the same delivery twice."""

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

ROOT = Path(__file__).resolve().parents[2]


def worker_env(sandbox, tmp_path, database_url, **extra):
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="True",
        VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=database_url,
        SECRET_KEY="worker-test-secret-key-" + "x" * 40,
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        SITE_URL="https://appsec.example.test",
        TASKS_BACKEND="django_tasks_db.DatabaseBackend",
        M365_AUTHORITY_HOST=sandbox.authority_host,
        M365_GRAPH_HOST=sandbox.graph_host,
        M365_SMTP_HOST=sandbox.smtp_host,
        M365_SMTP_PORT=str(sandbox.smtp_port),
        M365_CA_BUNDLE=str(sandbox.ca_path),
        SANDBOX_SEED=json.dumps(sandbox.seed),
        NOTIFICATIONS_RETRY_BASE_SECONDS="0.1",
        NOTIFICATIONS_RETRY_MAX_SECONDS="1",
        NOTIFICATIONS_LEASE_SECONDS="2",
        NOTIFICATIONS_CLAIM_BATCH="5",
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def run(env, *args, timeout=120):
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


def status(env):
    return json.loads(run(env, "-m", "tests.notifications.worker_script", "status"))


def wait_for(predicate, timeout, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def expected_ids(state):
    return {f"<delivery-{d['uuid']}@appsec.example.test>" for d in state["deliveries"]}


def test_worker_killed_mid_batch_and_restarted_finishes_the_rest(sandbox, tmp_path):
    count = 30
    env = worker_env(sandbox, tmp_path, f"sqlite:///{tmp_path / 'worker.sqlite3'}")
    run(env, "-m", "tests.notifications.worker_script", "setup", str(count))
    assert status(env)["tasks"] == ["READY"]  # one task for the whole transaction
    # Slow sending down, so the worker is surely in the middle of the batch.
    sandbox.add_fault(target="graph", delay=0.1, probability=1.0)

    worker = start_worker(env)
    try:
        assert wait_for(lambda: len(sandbox.messages()) >= 8, timeout=60)
    finally:
        worker.send_signal(signal.SIGKILL)  # no goodbye: a crash, an OOM kill
        worker.wait(timeout=10)
    state = status(env)
    statuses = [d["status"] for d in state["deliveries"]]
    assert 0 < statuses.count("sent") < count
    assert "pending" in statuses  # work left behind by the dead worker

    sandbox.control("DELETE", "/_sandbox/faults")
    # Restarted, the worker alone finishes the batch (no `deliver_pending`): the dead
    # task booked a `recover` task for when its leases run out, which sends the
    # rows it had claimed and those it had not reached.
    worker = start_worker(env)
    try:
        assert wait_for(
            lambda: {d["status"] for d in status(env)["deliveries"]} == {"sent"},
            timeout=30,
            interval=0.3,
        ), status(env)
        state = status(env)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    runs = state["task_runs"]
    assert ["deliver", "RUNNING"] in runs  # the killed one, left as it was
    assert ["recover", "SUCCESSFUL"] in runs
    assert "FAILED" not in state["tasks"]
    assert [d["status"] for d in state["deliveries"]] == ["sent"] * count, state
    messages = sandbox.messages()
    assert {m["message_id"] for m in messages} == expected_ids(state)
    # At most the one message in flight when the worker died went out twice, and
    # then with the same Message-ID.
    assert count <= len(messages) <= count + 1


def test_worker_retries_throttled_deliveries_with_delayed_tasks(sandbox, tmp_path):
    count = 6
    env = worker_env(sandbox, tmp_path, f"sqlite:///{tmp_path / 'retry.sqlite3'}")
    run(env, "-m", "tests.notifications.worker_script", "setup", str(count))
    sandbox.add_fault(target="graph", status=429, retry_after="0.5", count=1)
    sandbox.add_fault(target="graph", status=503, count=1)
    worker = start_worker(env)
    try:
        assert wait_for(
            lambda: {d["status"] for d in status(env)["deliveries"]} == {"sent"},
            timeout=60,
            interval=0.3,
        ), status(env)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    state = status(env)
    assert "FAILED" not in state["tasks"]
    assert len(state["tasks"]) >= 2  # the retries came from delayed tasks
    messages = sandbox.messages()
    assert len(messages) == count
    assert {m["message_id"] for m in messages} == expected_ids(state)


@pytest.mark.services
def test_two_workers_on_postgresql_never_send_one_delivery_twice(
    sandbox, tmp_path, postgres_url
):
    import psycopg

    count = 60
    name = f"appsec_workers_{uuid.uuid4().hex[:8]}"
    admin = postgres_url.replace("postgres://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        base = postgres_url.rpartition("/")[0]
        # No worker dies here, so the lease is long: a live worker stalled by a
        # loaded machine must not be overtaken (that would be a real double send,
        # which is what the short lease of the recovery tests allows on purpose).
        env = worker_env(
            sandbox,
            tmp_path,
            f"{base}/{name}",
            NOTIFICATIONS_CLAIM_BATCH="3",
            NOTIFICATIONS_LEASE_SECONDS="60",
        )
        # 6 transactions: 6 tasks, for two workers and a recovery sweep to share.
        run(env, "-m", "tests.notifications.worker_script", "setup", str(count), "6")
        sandbox.add_fault(target="graph", delay=0.02, probability=1.0)
        workers = [start_worker(env), start_worker(env)]
        sweeper = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "deliver_pending",
                "--loop",
                "--interval",
                "0.1",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            assert wait_for(
                lambda: {d["status"] for d in status(env)["deliveries"]} == {"sent"},
                timeout=90,
                interval=0.3,
            ), status(env)
        finally:
            for process in [*workers, sweeper]:
                process.send_signal(signal.SIGTERM)
            for process in [*workers, sweeper]:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
        state = status(env)
        messages = sandbox.messages()
        assert len(messages) == count
        assert {m["message_id"] for m in messages} == expected_ids(state)
        assert all(d["attempts"] == 1 for d in state["deliveries"])
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
