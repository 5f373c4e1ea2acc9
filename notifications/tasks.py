"""Background tasks for notifications. Thin: they call services and schedule the next run.

The only module that imports the task framework: with Django 6 the import below
becomes `from django.tasks import task, task_backends` and nothing else changes.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django_tasks import task, task_backends

logger = logging.getLogger(__name__)


@task()
def deliver(delivery_ids: list[int]) -> dict:
    """Send these deliveries (those still due), then schedule their retries."""
    from notifications.services import deliveries_send

    summary = deliveries_send(delivery_ids=delivery_ids)
    schedule_retries(summary.retry_at)
    return {
        "sent": summary.sent,
        "failed": summary.failed,
        "skipped": summary.skipped,
        "retrying": summary.retrying,
    }


def _deliver_task():
    return deliver.using(
        queue_name=getattr(settings, "NOTIFICATIONS_QUEUE_NAME", "default")
    )


def deliveries_enqueue(*, delivery_ids: list[int], run_after: datetime | None = None):
    """Enqueue one `deliver` task for `delivery_ids` (call it in on_commit).

    A lost enqueue loses nothing: `manage.py deliver_pending` finds due rows. With a
    backend that cannot delay tasks (the immediate one, in tests) a delayed retry is
    left to that command.
    """
    if not delivery_ids:
        return None
    job = _deliver_task()
    if run_after is not None:
        if not task_backends[job.backend].supports_defer:
            return None
        job = job.using(run_after=run_after)
    try:
        return job.enqueue(list(delivery_ids))
    except Exception:
        # The rows are committed; the recovery path sends them.
        logger.exception("Could not enqueue delivery of %s", delivery_ids)
        return None


def schedule_retries(retry_at: dict[int, datetime]) -> None:
    """One delayed task per distinct retry time, rounded up to the second.

    Rounded up, never down: a task that ran before its deliveries were due would
    find nothing to do and leave them to the recovery path.
    """
    groups: dict[datetime, list[int]] = {}
    for delivery_id, at in retry_at.items():
        at = at.replace(microsecond=0) + timedelta(seconds=1)
        groups.setdefault(at, []).append(delivery_id)
    for at, ids in sorted(groups.items()):
        deliveries_enqueue(delivery_ids=ids, run_after=at)
