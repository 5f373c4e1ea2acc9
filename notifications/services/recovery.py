"""Recovery: a worker that dies mid-batch leaves behind a task that finishes it.

django-tasks-db leaves a killed worker's task RUNNING for good, and a restarted
`db_worker` never looks at it again (the library has no worker-start hook). So every
delivery task, once it has claimed rows, books a `recover` task for when its lease
would run out; that task sends whatever is due or was claimed by a dead worker,
closes the task rows dead workers left RUNNING (`task_runs_fail_dead`), then books
the next look while deliveries are open or such rows remain. `RecoverySchedule`
keeps it to one booking at a time. The periodic `notifications.recover` job
(notifications/periodic.py, every lease) runs the same sweep as a safety net, for
the rows no booking covers (an enqueue lost after commit).
"""

import logging
from datetime import datetime, timedelta

from django.apps import apps
from django.conf import settings
from django.db.models import Min, Q
from django.utils import timezone

from notifications.exceptions import TaskWorkerLost
from notifications.models import Delivery, DeliveryStatus, RecoverySchedule

logger = logging.getLogger(__name__)


def _lease() -> timedelta:
    return timedelta(seconds=float(settings.NOTIFICATIONS_LEASE_SECONDS))


def recovery_watchdog_at() -> datetime:
    """When a lease taken now runs out: when to look after a task starting now."""
    return timezone.now() + _lease()


def _stale() -> timedelta:
    return timedelta(seconds=float(settings.NOTIFICATIONS_TASK_STALE_SECONDS))


def task_claim_token(task_id: str) -> str:
    """The `claimed_by` of the deliveries a task's run claims: it ties a task row to
    its leases, which is how a live task is told from a dead one."""
    return f"task:{task_id}"


def deliveries_recovery_at(
    *, task_paths=(), current_task: str | None = None
) -> datetime | None:
    """When the next recovery should look, or None when there is nothing to look at.

    At the earliest lease end of a delivery being sent (its worker may be dead), one
    lease after a pending delivery fell due (its own task should have sent it by
    then), or when a task of `task_paths` still RUNNING (other than `current_task`)
    turns stale (`task_runs_fail_dead`); never sooner than
    NOTIFICATIONS_RETRY_BASE_SECONDS or a third of a lease from now, whichever is
    shorter, so a dead worker's rows are taken over about a lease after it died.
    """
    lease = _lease()
    open_ = Delivery.objects.aggregate(
        pending=Min("next_attempt_at", filter=Q(status=DeliveryStatus.PENDING)),
        sending=Min("lease_expires_at", filter=Q(status=DeliveryStatus.SENDING)),
    )
    candidates = []
    if open_["pending"] is not None:
        candidates.append(open_["pending"] + lease)
    if open_["sending"] is not None:
        candidates.append(open_["sending"])
    running = _running_task_rows(task_paths, current_task)
    if running is not None:
        started = running.aggregate(first=Min("started_at"))["first"]
        if started is not None:
            candidates.append(started + _stale())
    if not candidates:
        return None
    floor = timezone.now() + min(
        timedelta(seconds=float(settings.NOTIFICATIONS_RETRY_BASE_SECONDS)), lease / 3
    )
    return max(min(candidates), floor)


def _tasks_on_rq() -> bool:
    """Whether the tasks run on RQ (TASKS_BACKEND=rq) rather than in the database.

    RQ needs none of the closing below: a job whose worker died stays in RQ's
    StartedJobRegistry only until that worker's heartbeat expires, then the next
    worker's registry cleanup moves it to the FailedJobRegistry (AbandonedJobError),
    so its `get_result()` says FAILED; the deliveries it had claimed are sent by the
    `recover` task as on the database backend (their leases, not the task rows,
    decide that). The task table stays empty then, so the queries below are skipped."""
    backend = settings.TASKS.get("default", {}).get("BACKEND", "")
    return backend.startswith("django_tasks_rq.")


def _running_task_rows(task_paths, current_task: str | None):
    """django-tasks-db's rows of `task_paths` in status RUNNING; None without that
    backend (or on RQ, see `_tasks_on_rq`). Imported here, not at load time:
    importing the services never loads the task framework."""
    if not task_paths or not apps.is_installed("django_tasks_db") or _tasks_on_rq():
        return None
    from django_tasks_db.compat import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    rows = DBTaskResult.objects.filter(
        status=TaskResultStatus.RUNNING, task_path__in=list(task_paths)
    )
    if current_task:
        rows = rows.exclude(pk=current_task)
    return rows


def task_runs_fail_dead(*, task_paths, current_task: str | None = None) -> int:
    """Mark FAILED the task rows of `task_paths` that a killed worker left RUNNING;
    return how many.

    django-tasks-db records which worker took a task (`worker_ids`) but nothing that
    tells whether it still lives, and a killed worker's row stays RUNNING for good.
    A task is taken as dead when it has been RUNNING for longer than
    NOTIFICATIONS_TASK_STALE_SECONDS (a run stops claiming after
    NOTIFICATIONS_RUN_MAX_SECONDS) and no delivery claimed under its token has a
    live lease (a live run renews its leases every third of a lease, even while one
    send blocks). The UPDATE repeats status RUNNING, so a task that finished in
    between keeps its result.
    """
    running = _running_task_rows(task_paths, current_task)
    if running is None:
        return 0
    rows = running.filter(started_at__lt=timezone.now() - _stale())
    candidates = {str(pk): pk for pk in rows.values_list("pk", flat=True)}
    if not candidates:
        return 0
    now = timezone.now()
    alive = set(
        Delivery.objects.filter(
            claimed_by__in=[task_claim_token(key) for key in candidates],
            status=DeliveryStatus.SENDING,
            lease_expires_at__gte=now,
        ).values_list("claimed_by", flat=True)
    )
    dead = [pk for key, pk in candidates.items() if task_claim_token(key) not in alive]
    if not dead:
        return 0
    from django_tasks_db.compat import TaskResultStatus

    stale = float(settings.NOTIFICATIONS_TASK_STALE_SECONDS)
    message = (
        f"The worker running this task stopped without finishing it (killed, out of "
        f"memory, or its machine went down): the task was still RUNNING after "
        f"{stale:g} seconds and none of its deliveries had a live lease. Its "
        f"deliveries are sent by the recovery task, with the same Message-IDs; "
        f"nothing needs doing. Closed by the `recover` task at {now.isoformat()}."
    )
    error = TaskWorkerLost(message)
    closed = rows.model.objects.filter(
        pk__in=dead, status=TaskResultStatus.RUNNING
    ).update(
        status=TaskResultStatus.FAILED,
        finished_at=now,
        return_value=None,
        exception_class_path=f"{type(error).__module__}.{type(error).__qualname__}",
        traceback=f"{type(error).__module__}.{type(error).__qualname__}: {message}\n",
    )
    if closed:
        logger.warning("Closed %s task(s) left RUNNING by a dead worker", closed)
    return closed


def recovery_book(*, at: datetime) -> bool:
    """Book the recovery for `at`, unless one is booked already at or before it.

    Returns whether the caller should enqueue the `recover` task. One conditional
    UPDATE, so of concurrent callers only one wins; a booking whose time has passed
    (its task ran, or was lost) no longer counts.
    """
    now = timezone.now()
    free = Q(next_run_at__isnull=True) | Q(next_run_at__lt=now) | Q(next_run_at__gt=at)
    for _ in range(2):
        if RecoverySchedule.objects.filter(free, pk=1).update(next_run_at=at):
            return True
        if RecoverySchedule.objects.filter(pk=1).exists():
            return False
        RecoverySchedule.objects.bulk_create(
            [RecoverySchedule(pk=1)], ignore_conflicts=True
        )
    return False
