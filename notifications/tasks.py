"""Background tasks for notifications. Thin: they call services and schedule the next run.

The only module that imports the task framework: with Django 6 the import below
becomes `from django.tasks import task, task_backends` and nothing else changes.
The services never import this module at load time: they hand committed deliveries
to `deliveries_enqueue` through `notifications.services.outbox`.
"""

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from django_tasks import task, task_backends

from notifications.services import deliveries_send
from notifications.services.recovery import (
    deliveries_recovery_at,
    recovery_book,
    recovery_watchdog_at,
    task_claim_token,
    task_runs_close_done,
    task_runs_fail_dead,
)

logger = logging.getLogger(__name__)


def _result(summary) -> dict:
    return {
        "sent": summary.sent,
        "failed": summary.failed,
        "skipped": summary.skipped,
        "retrying": summary.retrying,
        "deferred": summary.deferred,
    }


def _book_watchdog():
    return recovery_schedule(at=recovery_watchdog_at())


@task(takes_context=True)
def deliver(context, delivery_ids: list[int]) -> dict:
    """Send these deliveries (those still due) and the other due deliveries of
    their tools, then schedule the retries.

    Many small tasks due together are sent by the first to run, which then closes
    the others still waiting (`task_runs_close_done`); one that runs all the same
    finds nothing due (one query). Once it has claimed rows, books a `recover` task for
    when their leases would run out: if the worker dies mid-batch, that task (run by
    any worker, or by this one restarted) sends the rest. Stopped by
    NOTIFICATIONS_RUN_MAX_SECONDS, it enqueues itself again for its rows still due.
    """
    summary = deliveries_send(
        delivery_ids=delivery_ids,
        worker=task_claim_token(context.task_result.id),
        on_claim=_book_watchdog,
    )
    schedule_retries(summary.retry_at)
    if summary.unfinished:
        deliveries_enqueue(delivery_ids=delivery_ids)
    result = _result(summary)
    if summary.others:
        # It sent other tasks' deliveries: those tasks need not run.
        result["tasks_closed"] = task_runs_close_done(
            task_path=deliver.module_path, current_task=str(context.task_result.id)
        )
    return result


@task(takes_context=True)
def recover(context) -> dict:
    """Send what no live task is sending: due deliveries, and those whose worker's
    lease expired. Close the `deliver` and `recover` task rows that dead workers
    left RUNNING (as FAILED, saying why). Then book the next look while deliveries
    are open or such rows remain."""
    current = str(context.task_result.id)
    summary = deliveries_send(worker=task_claim_token(current), on_claim=_book_watchdog)
    schedule_retries(summary.retry_at)
    paths = _task_paths()
    closed = task_runs_fail_dead(task_paths=paths, current_task=current)
    if summary.unfinished:
        recovery_schedule(at=timezone.now())
    else:
        recovery_schedule(
            at=deliveries_recovery_at(task_paths=paths, current_task=current)
        )
    return {**_result(summary), "tasks_closed": closed}


def recover_sweep() -> dict:
    """The periodic `notifications.recover` job (every NOTIFICATIONS_LEASE_SECONDS,
    see notifications/periodic.py): what a `recover` task does, on the periodic
    schedule, so recovery also happens when no `recover` task was booked (a booking
    lost, a worker that died before its first claim)."""
    summary = deliveries_send(
        worker=task_claim_token(f"periodic-{uuid.uuid4()}"), on_claim=_book_watchdog
    )
    schedule_retries(summary.retry_at)
    closed = task_runs_fail_dead(task_paths=_task_paths())
    if summary.unfinished:
        recovery_schedule(at=timezone.now())
    return {**_result(summary), "tasks_closed": closed}


def _task_paths() -> list[str]:
    return [deliver.module_path, recover.module_path]


def _on_queue(task_):
    return task_.using(queue_name=settings.NOTIFICATIONS_QUEUE_NAME)


def _deliver_task():
    return _on_queue(deliver)


def _round_up(at: datetime) -> datetime:
    """To the next whole second: a task that ran before its deliveries were due
    would find nothing to do."""
    return at.replace(microsecond=0) + timedelta(seconds=1)


def deliveries_enqueue(*, delivery_ids: list[int], run_after: datetime | None = None):
    """Enqueue one `deliver` task for `delivery_ids` (call it in on_commit).

    A lost enqueue loses nothing: the next `recover` task, or `manage.py
    deliver_pending`, finds due rows. With a backend that cannot delay tasks (the
    immediate one, in tests) a delayed retry is left to that command.
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
        groups.setdefault(_round_up(at), []).append(delivery_id)
    for at, ids in sorted(groups.items()):
        deliveries_enqueue(delivery_ids=ids, run_after=at)


def recovery_schedule(*, at: datetime | None):
    """Enqueue a `recover` task for `at` unless one is booked at or before it.

    Nothing with a backend that cannot delay tasks (recovery is then left to
    `manage.py deliver_pending`), or when `at` is None (nothing is open).
    """
    if at is None:
        return None
    job = _on_queue(recover)
    if not task_backends[job.backend].supports_defer:
        return None
    at = _round_up(at)
    try:
        if not recovery_book(at=at):
            return None
        return job.using(run_after=at).enqueue()
    except Exception:
        # A booking without its task lapses at `at`; the next caller books again.
        logger.exception("Could not schedule delivery recovery at %s", at)
        return None
