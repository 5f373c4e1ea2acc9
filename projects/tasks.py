"""Background tasks for projects: queued SARIF imports. Thin: they call
projects/scan_queue.py, which says how a queued scan moves and how a lost one is
recovered.

The only module of the app that imports the task framework (with Django 6:
`from django.tasks import task, task_backends`). The services hand committed scans
to `import_queued_scan_enqueue` at commit time, never importing this at load time.
"""

import logging
from datetime import datetime

from django_tasks import task, task_backends

from projects.scan_queue import scan_import_queued, scan_recover, scan_recovery_at

logger = logging.getLogger(__name__)


def _status(scan) -> str | None:
    return scan.status if scan is not None else None


@task()
def import_queued_scan(scan_id: int) -> dict:
    """Import the queued scan `scan_id` (nothing if another task has it already)."""
    scan = scan_import_queued(scan_id=scan_id)
    return {"scan_id": scan_id, "status": _status(scan)}


@task()
def recover_queued_scan(scan_id: int) -> dict:
    """Enqueue the scan again if it is still queued, fail it if its worker is gone,
    or look again when its import should be over."""
    at = scan_recover(scan_id=scan_id)
    if at is not None:
        recovery_schedule(scan_id=scan_id, at=at)
    return {"scan_id": scan_id}


def import_queued_scan_enqueue(*, scan_id: int):
    """Enqueue the import of a committed queued scan, and its recovery for when the
    import should be over (call it in on_commit).

    A lost import task is made up for by the recovery, which imports a scan still
    queued at its time.
    """
    recovery_schedule(scan_id=scan_id, at=scan_recovery_at())
    try:
        return import_queued_scan.enqueue(scan_id)
    except Exception:
        # The scan is committed as queued; the recovery task imports it.
        logger.exception("Could not enqueue the import of scan %s", scan_id)
        return None


def recovery_schedule(*, scan_id: int, at: datetime):
    """Enqueue `recover_queued_scan` for `at`. Nothing with a backend that cannot
    delay tasks (the immediate one, in tests, runs the import before it returns)."""
    if not task_backends[recover_queued_scan.backend].supports_defer:
        return None
    try:
        return recover_queued_scan.using(run_after=at).enqueue(scan_id)
    except Exception:
        logger.exception("Could not schedule the recovery of scan %s", scan_id)
        return None
