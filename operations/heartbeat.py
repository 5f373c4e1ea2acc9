"""Worker heartbeats: each task worker process keeps one `WorkerHeartbeat` row fresh.

django-tasks has no worker-start hook, so a worker is seen when it runs a periodic
job (every run beats, see `operations.tasks`), including the `operations.heartbeat`
job booked every WORKER_HEARTBEAT_SECONDS. Rows not seen for a day are purged by the
`operations.retention` job.
"""

import os
import socket
import threading
import time
from datetime import timedelta

from django.utils import timezone

from operations.models import WorkerHeartbeat

# At most one write per process this often: every job run beats, and a worker
# running many short jobs must not write a row per job.
MIN_INTERVAL_SECONDS = 5.0
# Rows older than this are purged by retention.
STALE_AFTER = timedelta(days=1)

_lock = threading.Lock()
_state = {"pid": None, "started_at": None, "last_beat": 0.0}


def _identity() -> tuple[str, str, int]:
    hostname = socket.gethostname()[:150] or "unknown"
    pid = os.getpid()
    return f"{hostname}:{pid}"[:200], hostname, pid


def worker_heartbeat(*, force: bool = False) -> bool:
    """Record that this process is alive; return whether a row was written.

    Cheap: skipped when this process beat less than MIN_INTERVAL_SECONDS ago
    (unless `force`). One UPDATE; an INSERT only the first time.
    """
    pid = os.getpid()
    with _lock:
        if _state["pid"] != pid:  # first beat of this process (or a fork)
            _state.update(pid=pid, started_at=timezone.now(), last_beat=0.0)
        monotonic = time.monotonic()
        if not force and monotonic - _state["last_beat"] < MIN_INTERVAL_SECONDS:
            return False
        _state["last_beat"] = monotonic
        started_at = _state["started_at"]
    worker, hostname, pid = _identity()
    now = timezone.now()
    if not WorkerHeartbeat.objects.filter(worker=worker).update(last_seen_at=now):
        WorkerHeartbeat.objects.bulk_create(
            [
                WorkerHeartbeat(
                    worker=worker,
                    hostname=hostname,
                    pid=pid,
                    started_at=started_at,
                    last_seen_at=now,
                )
            ],
            ignore_conflicts=True,
        )
    return True


def workers(seen_within: timedelta | None = None) -> list[WorkerHeartbeat]:
    """The workers seen, most recent first; only those seen within `seen_within`
    when given."""
    rows = WorkerHeartbeat.objects.order_by("-last_seen_at")
    if seen_within is not None:
        rows = rows.filter(last_seen_at__gte=timezone.now() - seen_within)
    return list(rows)


def heartbeat_job() -> dict:
    """The `operations.heartbeat` periodic job: beats for the task worker running it
    (unthrottled), so an idle worker is still seen. Run by `manage.py run_periodic`
    (cron), it does nothing: that process is no task worker."""
    from operations.periodic import in_worker

    if not in_worker():
        return {"skipped": "not run by a task worker"}
    worker_heartbeat(force=True)
    return {"worker": _identity()[0]}
