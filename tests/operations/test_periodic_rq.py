"""Periodic jobs with TASKS_BACKEND=rq: `run_periodic --book` books each job as a
delayed RQ task, a real `manage.py rqworker` runs them, each run books the next
(through RQ's scheduler), booking again while the bookings are alive books nothing,
and the worker keeps one heartbeat row.

The periodic task goes to the `default` queue, so this test uses Redis database
RQ_DB on the REDIS_URL server (no other test or benchmark uses it) and deletes the
keys of that queue afterwards."""

import re
import time

import pytest

from tests.notifications.test_rq_worker import (
    delete_queue,
    rq_jobs,
    start_rq_worker,
    stop_rq_worker,
)
from tests.operations.test_periodic_worker import periodic_env, status
from tests.processes import run, wait_for

pytestmark = pytest.mark.services

RQ_DB = 10


@pytest.fixture
def rq_redis_url(redis_url):
    host_port = re.match(r"rediss?://([^/]+)", redis_url).group(1)
    url = f"redis://{host_port}/{RQ_DB}"
    delete_queue(url, "default")
    yield url
    delete_queue(url, "default")


def test_rq_worker_runs_periodic_jobs_and_books_each_once(tmp_path, rq_redis_url):
    env = periodic_env(
        tmp_path,
        f"sqlite:///{tmp_path / 'periodic-rq.sqlite3'}",
        TASKS_BACKEND="rq",
        REDIS_URL=rq_redis_url,
    )
    run(env, "manage.py", "migrate", "--no-input", "-v", "0")
    assert "Booked: " in run(env, "manage.py", "run_periodic", "--book")
    state = status(env)
    jobs = set(state["jobs"])
    assert jobs >= {"operations.heartbeat", "operations.retention"}
    assert state["tasks"] == []  # booked on RQ, not in the task table
    scheduled = rq_jobs(rq_redis_url, "default")["scheduled"]
    assert sorted(scheduled) == ["run_periodic_job"] * len(jobs)

    worker = start_rq_worker(env, "default")
    errors = ""
    try:
        # The heartbeat job (every second; on RQ booked at least 2 s ahead) runs
        # again and again, each run booking the next.
        state = wait_for(
            lambda: (
                (s := status(env))["jobs"]["operations.heartbeat"]["runs"] >= 3 and s
            ),
            timeout=90,
            interval=0.3,
        )
        assert state, status(env)
        # Alive bookings are left alone: booking again books nothing. (Should it
        # book one, the message says what RQ held then: it failed once in a full
        # run, and did not again in 30 runs under load.)
        booked = run(env, "manage.py", "run_periodic", "--book")
        assert "All jobs were booked." in booked, (
            booked,
            status(env)["jobs"],
            rq_jobs(rq_redis_url, "default"),
        )
        # One process ran every task: one heartbeat row, the worker's, fresh.
        assert [h["pid"] for h in state["heartbeats"]] == [worker.pid]
        assert time.time() - state["heartbeats"][0]["last_seen_at"] < 10
        retention = state["jobs"]["operations.retention"]
        assert retention["runs"] == 1 and retention["failures"] == 0, retention
    finally:
        errors = stop_rq_worker(worker)
    assert status(env)["jobs"]["operations.heartbeat"]["failures"] == 0
    jobs_left = rq_jobs(rq_redis_url, "default")
    assert jobs_left["failed"] == [], errors[-3000:]
    # Stopped, the worker leaves each job booked once (a delayed RQ task).
    assert sorted(jobs_left["scheduled"]) == ["run_periodic_job"] * len(jobs)
