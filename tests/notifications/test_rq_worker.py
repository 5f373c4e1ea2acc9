"""TASKS_BACKEND=rq: the notification tasks on RQ and Redis (django-tasks-rq), in a
real `manage.py rqworker` process, delivering through the sandbox.

Each test uses a queue of its own (NOTIFICATIONS_QUEUE_NAME) and the worker listens
to that queue only, so nothing else on the same Redis is touched; its keys are
deleted afterwards."""

import os
import signal
import subprocess
import sys
import uuid

import pytest

from tests.notifications.test_worker import ROOT, expected_ids, status, worker_env
from tests.processes import run, wait_for


def start_rq_worker(env, queue):
    """`manage.py rqworker` as config/settings.py's task-backend block says (one
    process running the tasks, with the scheduler that moves delayed tasks to the
    queue), on `queue` only."""
    return subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "rqworker",
            "--worker-class",
            "rq.worker.SimpleWorker",
            "--with-scheduler",
            "--job-class",
            "django_tasks_rq.Job",
            "--name",
            f"test-{uuid.uuid4().hex[:8]}",
            queue,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the worker and its scheduler process, stopped together
    )


def stop_rq_worker(process):
    """SIGTERM (warm shutdown: the worker stops its scheduler too), SIGKILL to the
    whole process group if it has not exited within 20 s; returns its stderr."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    return process.stderr.read()


def rq_jobs(redis_url, queue):
    """{status: [task name, ...]} of the jobs RQ holds for `queue`."""
    from redis import Redis
    from rq import Queue
    from rq.job import Job

    connection = Redis.from_url(redis_url)
    q = Queue(queue, connection=connection)
    registries = {
        "queued": q.get_job_ids(),
        "scheduled": q.scheduled_job_registry.get_job_ids(),
        "started": q.started_job_registry.get_job_ids(),
        "finished": q.finished_job_registry.get_job_ids(),
        "failed": q.failed_job_registry.get_job_ids(),
    }
    out = {}
    for name, ids in registries.items():
        jobs = [job for job in Job.fetch_many(ids, connection=connection) if job]
        out[name] = [job.func_name.rpartition(".")[2] for job in jobs]
    return out


def delete_queue(redis_url, queue):
    """Delete the queue's registries and the jobs they name."""
    from redis import Redis

    connection = Redis.from_url(redis_url)
    keys = list(connection.scan_iter(match=f"rq:*:{queue}*"))
    keys += list(connection.scan_iter(match=f"rq:{queue}*"))
    job_ids = set()
    for key in keys:
        kind = connection.type(key)
        if kind == b"zset":
            job_ids.update(connection.zrange(key, 0, -1))
        elif kind == b"list":
            job_ids.update(connection.lrange(key, 0, -1))
    for job_id in job_ids:
        job_id = job_id.decode()
        keys += [f"rq:job:{job_id}", f"rq:results:{job_id}"]
    if keys:
        connection.delete(*keys)


@pytest.fixture
def rq_env(sandbox, tmp_path, redis_url):
    queue = f"appsec-test-{uuid.uuid4().hex[:10]}"
    env = worker_env(
        sandbox,
        tmp_path,
        f"sqlite:///{tmp_path / 'rq.sqlite3'}",
        TASKS_BACKEND="rq",
        REDIS_URL=redis_url,
        NOTIFICATIONS_QUEUE_NAME=queue,
    )
    yield env, queue
    delete_queue(redis_url, queue)


@pytest.mark.services
def test_rq_worker_delivers_every_event_once_and_runs_delayed_tasks(
    sandbox, rq_env, redis_url
):
    env, queue = rq_env
    count = 12
    run(env, "-m", "tests.notifications.worker_script", "setup", str(count))
    # Committed: one `deliver` task waits on the RQ queue, none in the task table.
    assert rq_jobs(redis_url, queue)["queued"] == ["deliver"]
    assert status(env)["tasks"] == []
    # A throttled and a failed send: retried, the second time by a delayed task.
    sandbox.add_fault(target="graph", status=429, retry_after="0.5", count=1)
    sandbox.add_fault(target="graph", status=503, count=1)
    worker = start_rq_worker(env, queue)
    errors = ""
    try:
        assert wait_for(
            lambda: {d["status"] for d in status(env)["deliveries"]} == {"sent"},
            timeout=90,
            interval=0.3,
        ), status(env)
        # The `recover` task each claiming run books for its leases' end (2 s
        # later) is a delayed task: the worker's scheduler moved it to the queue.
        assert wait_for(
            lambda: "recover" in rq_jobs(redis_url, queue)["finished"],
            timeout=60,
            interval=0.3,
        ), rq_jobs(redis_url, queue)
    finally:
        errors = stop_rq_worker(worker)
    jobs = rq_jobs(redis_url, queue)
    assert jobs["failed"] == [], errors[-3000:]
    assert jobs["started"] == []
    assert "deliver" in jobs["finished"]
    state = status(env)
    assert state["tasks"] == []  # nothing went through the database queue
    messages = sandbox.messages()
    assert len(messages) == count  # no double sends
    assert {m["message_id"] for m in messages} == expected_ids(state)


def test_rq_settings_pass_the_checks_and_refuse_a_backend_without_redis(tmp_path):
    """TASKS_BACKEND=rq with a Redis URL passes django-tasks-rq's checks (django_rq
    installed, every queue configured, rq new enough); without one, or with an
    unknown TASKS_BACKEND, the process stops at start with a clear error."""
    base = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="True",
        VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        SECRET_KEY="rq-settings-test-secret-key-" + "x" * 40,
    )
    base.pop("REDIS_URL", None)
    base.pop("CACHE_URL", None)
    for extra, expected in (
        ({"TASKS_BACKEND": "rq"}, "TASKS_BACKEND=rq needs Redis"),
        ({"TASKS_BACKEND": "celery"}, "TASKS_BACKEND must be 'database', 'rq'"),
        (
            {"TASKS_BACKEND": "rq", "CACHE_URL": "locmemcache://"},
            "TASKS_BACKEND=rq needs Redis",
        ),
    ):
        result = subprocess.run(
            [sys.executable, "manage.py", "check"],
            cwd=ROOT,
            env={**base, **extra},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode != 0
        assert expected in result.stderr, result.stderr[-2000:]
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={
            **base,
            "TASKS_BACKEND": "rq",
            "REDIS_URL": "redis://127.0.0.1:1/0",  # not connected to by the checks
            "NOTIFICATIONS_QUEUE_NAME": "mail",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no issues" in result.stdout
