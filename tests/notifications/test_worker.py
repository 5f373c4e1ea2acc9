"""The database-backed worker in real processes: killed mid-batch, then restarted,
it finishes the rest with nothing lost and its task row closed as failed; many small
tasks are sent by a few runs; a slow live worker keeps its rows; two workers on
PostgreSQL never send the same delivery twice."""

import contextlib
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

from tests.processes import run, start_worker, wait_for

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


def status(env):
    return json.loads(run(env, "-m", "tests.notifications.worker_script", "status"))


def run_two_workers_and_a_sweeper_until_sent(env, *, timeout, sweep_interval):
    """Two db_workers and a `deliver_pending --loop` sweep compete for the
    deliveries until all are sent (or `timeout`); then all three are stopped."""
    processes = [start_worker(env), start_worker(env)]
    processes.append(
        subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "deliver_pending",
                "--loop",
                "--interval",
                str(sweep_interval),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    )
    try:
        assert wait_for(
            lambda: {d["status"] for d in status(env)["deliveries"]} == {"sent"},
            timeout=timeout,
            interval=0.3,
        ), status(env)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def expected_ids(state):
    return {f"<delivery-{d['uuid']}@appsec.example.test>" for d in state["deliveries"]}


def sent_uuids(state):
    return {d["uuid"] for d in state["deliveries"] if d["status"] == "sent"}


@contextlib.contextmanager
def postgres_database(postgres_url, prefix):
    """A database of its own on the PostgreSQL server, dropped at the end: its
    DATABASE_URL and its psycopg connection string."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = postgres_url.replace("postgres://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield (
            f"{postgres_url.rpartition('/')[0]}/{name}",
            f"{admin.rpartition('/')[0]}/{name}",
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def assert_each_sent_once(sandbox, env, count):
    state = status(env)
    messages = sandbox.messages()
    assert len(messages) == count
    assert {m["message_id"] for m in messages} == expected_ids(state)
    assert all(d["attempts"] == 1 for d in state["deliveries"])


def test_worker_killed_mid_batch_is_taken_over_within_about_a_lease(sandbox, tmp_path):
    count, lease, flush, stale = 40, 2.0, 5, 6.0
    env = worker_env(
        sandbox,
        tmp_path,
        f"sqlite:///{tmp_path / 'worker.sqlite3'}",
        NOTIFICATIONS_LEASE_SECONDS=str(lease),
        NOTIFICATIONS_OUTCOME_FLUSH=str(flush),
        NOTIFICATIONS_RUN_MAX_SECONDS="4",
        NOTIFICATIONS_TASK_STALE_SECONDS=str(stale),
        # Leases only: with pacing, the dead worker's in-flight slots would hold
        # Graph's 4 for twice the HTTP timeout (as long as the default lease, much
        # longer than this one).
        NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE="0",
    )
    run(env, "-m", "tests.notifications.worker_script", "setup", str(count))
    assert status(env)["tasks"] == ["READY"]  # one task for the whole transaction
    # Slow sending down (Graph takes 4 at a time), so the worker is surely in the
    # middle of the batch.
    sandbox.add_fault(target="graph", delay=0.4, probability=1.0)

    workers = {name: start_worker(env, "--worker-id", name) for name in ("a", "b")}
    try:
        assert wait_for(lambda: len(sandbox.messages()) >= 8, timeout=60)
        (busy,) = status(env)["task_workers"]["deliver"]
        workers[busy].send_signal(signal.SIGKILL)  # no goodbye: a crash, an OOM kill
        workers[busy].wait(timeout=10)
        killed_at = time.time()
        sandbox.control("DELETE", "/_sandbox/faults")
        state = status(env)
        statuses = [d["status"] for d in state["deliveries"]]
        # Outcomes are written every `flush` deliveries: some were, not the rest.
        assert 0 < statuses.count("sent") < count
        assert {"pending", "sending"} & set(statuses)  # left by the dead worker
        sent_before = sent_uuids(state)
        # The other worker finishes the batch: the dead task booked a `recover`
        # task for when its leases run out, which sends the rows it had claimed
        # and those it had not reached.
        assert wait_for(
            lambda: {d["status"] for d in status(env)["deliveries"]} == {"sent"},
            timeout=30,
            interval=0.3,
        ), status(env)
        # The dead worker's task row, left RUNNING by db_worker, is closed as
        # FAILED by a `recover` task once it is stale.
        assert wait_for(
            lambda: ["deliver", "FAILED"] in status(env)["task_runs"],
            timeout=stale + 15,
            interval=0.3,
        ), status(env)["task_runs"]
    finally:
        for process in workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=20)
    # Read once the live worker has stopped (finishing the task it ran): until then
    # a `recover` task of its own may be RUNNING, as it should.
    state = status(env)
    # Its deliveries resumed within about a lease of its death.
    resumed = min(
        d["sent_at"] for d in state["deliveries"] if d["uuid"] not in sent_before
    )
    assert resumed - killed_at < 2 * lease + 1, resumed - killed_at
    results = state["task_results"]
    (killed,) = [r for r in results if r["name"] == "deliver"]
    assert killed["status"] == "FAILED"
    assert killed["exception"] == "notifications.exceptions.TaskWorkerLost"
    assert "stopped without finishing it" in killed["traceback"]
    assert ["recover", "SUCCESSFUL"] in state["task_runs"]
    assert [r for r in results if r["status"] == "FAILED"] == [killed]
    assert "RUNNING" not in state["tasks"]
    assert [d["status"] for d in state["deliveries"]] == ["sent"] * count, state
    messages = sandbox.messages()
    assert {m["message_id"] for m in messages} == expected_ids(state)
    # At most the outcomes not yet written when the worker died (fewer than
    # `flush`, and those of the sends that had just come back) and the messages in
    # flight (Graph: 4 at a time) went out twice, with the same Message-ID.
    assert count <= len(messages) <= count + flush - 1 + 2 * 4


def test_worker_killed_and_restarted_alone_finishes_the_rest(sandbox, tmp_path):
    count = 20
    env = worker_env(
        sandbox,
        tmp_path,
        f"sqlite:///{tmp_path / 'restart.sqlite3'}",
        NOTIFICATIONS_OUTCOME_FLUSH="5",
        NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE="0",  # see the test above
    )
    run(env, "-m", "tests.notifications.worker_script", "setup", str(count))
    sandbox.add_fault(target="graph", delay=0.1, probability=1.0)
    worker = start_worker(env)
    try:
        assert wait_for(lambda: len(sandbox.messages()) >= 8, timeout=60)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
    assert "sent" in {d["status"] for d in status(env)["deliveries"]}
    sandbox.control("DELETE", "/_sandbox/faults")
    # Restarted, the worker alone finishes the batch (no `deliver_pending`).
    worker = start_worker(env)
    try:
        assert wait_for(
            lambda: {d["status"] for d in status(env)["deliveries"]} == {"sent"},
            timeout=30,
            interval=0.3,
        ), status(env)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    state = status(env)
    assert {m["message_id"] for m in sandbox.messages()} == expected_ids(state)
    assert count <= len(sandbox.messages()) <= count + 5


def delivers_done(state):
    """Every `deliver` task ran to the end (the `recover` ones may still wait)."""
    runs = state["task_runs"]
    return {task_status for name, task_status in runs if name == "deliver"} == {
        "SUCCESSFUL"
    }


def test_many_small_tasks_are_sent_in_a_few_task_runs(sandbox, tmp_path):
    count = 200
    env = worker_env(
        sandbox,
        tmp_path,
        f"sqlite:///{tmp_path / 'small.sqlite3'}",
        NOTIFICATIONS_CLAIM_BATCH="25",
        NOTIFICATIONS_LEASE_SECONDS="30",
        NOTIFICATIONS_RUN_MAX_SECONDS="60",
    )
    # One transaction per event, as imports commit: 200 tasks of one delivery each.
    run(env, "-m", "tests.notifications.worker_script", "setup", str(count), str(count))
    assert status(env)["tasks"] == ["READY"] * count
    worker = start_worker(env)
    try:
        assert wait_for(
            lambda: delivers_done(status(env)), timeout=120, interval=0.3
        ), status(env)["task_runs"][-5:]
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=20)
    state = status(env)
    assert [d["status"] for d in state["deliveries"]] == ["sent"] * count
    delivers = [r for r in state["task_results"] if r["name"] == "deliver"]
    assert len(delivers) == count
    sending = [r["return_value"]["sent"] for r in delivers if r["return_value"]["sent"]]
    assert sum(sending) == count
    assert len(sending) <= 3, sending  # a few runs did the work, not 200
    # The others were closed while they waited, naming the run that sent their
    # deliveries: the worker never ran them.
    senders = {r["id"] for r in delivers if r["return_value"]["sent"]}
    closed = [r for r in delivers if "sent_by" in r["return_value"]]
    assert len(closed) >= count - 3, len(closed)
    assert {r["return_value"]["sent_by"] for r in closed} <= senders
    assert all(not r["worker_ids"] for r in closed)
    messages = sandbox.messages()
    assert len(messages) == count
    assert {m["message_id"] for m in messages} == expected_ids(state)
    assert all(d["attempts"] == 1 for d in state["deliveries"])


def test_a_slow_live_worker_keeps_its_leases_against_other_workers(sandbox, tmp_path):
    """Each send takes longer than two leases; the heartbeat renews them, so neither
    the other worker (running the `recover` task booked for the lease's end) nor a
    sweeper takes a row over, and nothing is sent twice."""
    count, lease = 3, 1.0
    env = worker_env(
        sandbox,
        tmp_path,
        f"sqlite:///{tmp_path / 'slow.sqlite3'}",
        NOTIFICATIONS_LEASE_SECONDS=str(lease),
    )
    run(env, "-m", "tests.notifications.worker_script", "setup", str(count))
    sandbox.add_fault(target="graph", delay=2.5 * lease, probability=1.0)
    run_two_workers_and_a_sweeper_until_sent(env, timeout=60, sweep_interval=0.2)
    state = status(env)
    assert all(d["attempts"] == 1 for d in state["deliveries"]), state
    messages = sandbox.messages()
    assert len(messages) == count
    assert {m["message_id"] for m in messages} == expected_ids(state)


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
    count = 60
    with postgres_database(postgres_url, "appsec_workers") as (url, _):
        # No worker dies here, so the lease is long: a live worker stalled by a
        # loaded machine must not be overtaken (that would be a real double send,
        # which is what the short lease of the recovery tests allows on purpose).
        env = worker_env(
            sandbox,
            tmp_path,
            url,
            NOTIFICATIONS_CLAIM_BATCH="3",
            NOTIFICATIONS_LEASE_SECONDS="60",
        )
        # 6 transactions: 6 tasks, for two workers and a recovery sweep to share.
        run(env, "-m", "tests.notifications.worker_script", "setup", str(count), "6")
        sandbox.add_fault(target="graph", delay=0.02, probability=1.0)
        run_two_workers_and_a_sweeper_until_sent(env, timeout=90, sweep_interval=0.1)
        assert_each_sent_once(sandbox, env, count)


@pytest.mark.services
def test_a_worker_on_postgresql_keeps_its_connection_while_it_polls(
    sandbox, tmp_path, postgres_url
):
    """db_worker looks for tasks every --interval and closes the database connection
    after each look unless it is persistent (CONN_MAX_AGE): a new PostgreSQL
    connection (a process forked on the server, authentication) ten times a second
    per idle worker, and a sixth of a busy worker's time."""
    import psycopg

    from tests.processes import stop

    with postgres_database(postgres_url, "appsec_conn") as (url, database):
        env = worker_env(sandbox, tmp_path, url)
        run(env, "manage.py", "migrate", "--noinput")
        worker = start_worker(env)
        try:
            with psycopg.connect(database, autocommit=True) as conn:

                def backends():
                    rows = conn.execute(
                        "SELECT pid FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    ).fetchall()
                    return {pid for (pid,) in rows}

                assert wait_for(backends, timeout=60, interval=0.1), "no worker"
                seen = []
                deadline = time.monotonic() + 3  # some thirty looks at the queue
                while time.monotonic() < deadline:
                    seen.append(backends())
                    time.sleep(0.05)
            assert worker.poll() is None, worker.stderr.read()
            # One connection, the same all along: never closed, never replaced.
            assert len({frozenset(s) for s in seen}) == 1, seen
            assert len(seen[0]) == 1, seen
        finally:
            stop(worker)


@pytest.mark.services
def test_a_worker_on_postgresql_goes_on_sending_while_its_outcomes_are_written(
    sandbox, tmp_path, postgres_url
):
    """On PostgreSQL a run does its database work on threads of its own: while one
    outcome write waits on the database, the next messages go out (one write at a
    time, so the one after waits for it), and the next batch is claimed while
    one is sent. Here the database holds every write of a "sent" outcome until
    the test lets it go."""
    import psycopg

    from tests.processes import stop

    count, batch, flush = 60, 30, 10
    with postgres_database(postgres_url, "appsec_writer") as (url, database):
        env = worker_env(
            sandbox,
            tmp_path,
            url,
            NOTIFICATIONS_CLAIM_BATCH=str(batch),
            NOTIFICATIONS_OUTCOME_FLUSH=str(flush),
            NOTIFICATIONS_LEASE_SECONDS="60",
        )
        run(env, "-m", "tests.notifications.worker_script", "setup", str(count))
        with psycopg.connect(database, autocommit=True) as held:
            held.execute(
                "CREATE FUNCTION test_hold_outcomes() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN "
                "PERFORM pg_advisory_xact_lock_shared(4242); RETURN NEW; END $$"
            )
            held.execute(
                "CREATE TRIGGER test_hold_outcomes BEFORE UPDATE ON "
                "notifications_delivery FOR EACH ROW WHEN "
                "(OLD.status = 'sending' AND NEW.status = 'sent') "
                "EXECUTE FUNCTION test_hold_outcomes()"
            )
            held.execute("SELECT pg_advisory_lock(4242)")
            worker = start_worker(env)
            try:
                # Written one flush at a time, sends stopped at the first flush:
                # at most 10 answered plus 4 in flight. Written aside, the run
                # goes on to the second flush, which waits for the first.
                assert wait_for(
                    lambda: len(sandbox.messages()) >= 2 * flush, timeout=60
                ), len(sandbox.messages())
                # And the second batch was claimed meanwhile, on the claims
                # thread: claimed by the run's own thread once the first batch
                # was sent, it would still be pending here (the run waits for
                # the first write before the first batch's end).
                assert wait_for(
                    lambda: (
                        [d["status"] for d in status(env)["deliveries"]]
                        == ["sending"] * count
                    ),
                    timeout=60,
                    interval=0.3,
                ), status(env)
                held.execute("SELECT pg_advisory_unlock(4242)")
                assert wait_for(
                    lambda: (
                        {d["status"] for d in status(env)["deliveries"]} == {"sent"}
                    ),
                    timeout=60,
                    interval=0.3,
                ), status(env)
            finally:
                stop(worker)
        assert_each_sent_once(sandbox, env, count)
