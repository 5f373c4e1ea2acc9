"""Worker heartbeats: one row per process, refreshed cheaply; listed by age; the
heartbeat job beats only inside a task worker (a real worker: test_periodic_worker)."""

import os
import socket
from datetime import timedelta

from django.utils import timezone

from operations import heartbeat, periodic
from operations.heartbeat import worker_heartbeat, workers
from operations.models import WorkerHeartbeat


def test_heartbeat_upserts_this_process_row_at_most_every_few_seconds(db):
    assert worker_heartbeat(force=True)
    (row,) = WorkerHeartbeat.objects.all()
    assert row.worker == f"{socket.gethostname()}:{os.getpid()}"
    assert row.pid == os.getpid() and row.hostname == socket.gethostname()
    first_seen = row.last_seen_at
    assert not worker_heartbeat()  # throttled: no write
    assert WorkerHeartbeat.objects.get().last_seen_at == first_seen
    assert worker_heartbeat(force=True)
    row = WorkerHeartbeat.objects.get()  # still one row, seen later
    assert row.last_seen_at > first_seen and row.started_at <= first_seen


def test_workers_lists_those_seen_within(db):
    now = timezone.now()
    for name, seen in (("a:1", now), ("b:2", now - timedelta(minutes=10))):
        WorkerHeartbeat.objects.create(
            worker=name, hostname=name[0], pid=1, started_at=seen, last_seen_at=seen
        )
    assert [w.worker for w in workers()] == ["a:1", "b:2"]
    assert [w.worker for w in workers(seen_within=timedelta(minutes=5))] == ["a:1"]


def test_heartbeat_job_beats_only_in_a_task_worker(db):
    (outcome,) = periodic.run_due(["operations.heartbeat"])  # cron: not a worker
    assert outcome["result"] == {"skipped": "not run by a task worker"}
    assert not WorkerHeartbeat.objects.exists()
    periodic._context.in_worker = True
    try:
        assert heartbeat.heartbeat_job()["worker"].endswith(f":{os.getpid()}")
    finally:
        periodic._context.in_worker = False
    assert WorkerHeartbeat.objects.count() == 1
