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

The other way round, a run that sent other tasks' deliveries along with its own
closes those tasks while they wait (`task_runs_close_done`): each would cost a
worker a task's bookkeeping to find nothing due.
"""

import logging
from datetime import datetime, timedelta

from django.apps import apps
from django.conf import settings
from django.db.models import Min, Q
from django.utils import timezone

from notifications.exceptions import TaskWorkerLost
from notifications.models import (
    Delivery,
    DeliveryStatus,
    RecoverySchedule,
    due_q,
)

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


#: At most this many waiting task rows are looked at per call of
#: `task_runs_close_done` (a run that sent more leaves the rest to run, finding
#: nothing).
CLOSE_DONE_LIMIT = 5000


def _task_delivery_ids(args_kwargs) -> list[int] | None:
    """The delivery ids a `deliver` task row was enqueued with, or None when the
    row does not read as one (it is then left to run)."""
    if not isinstance(args_kwargs, dict):
        return None
    args, kwargs = args_kwargs.get("args") or [], args_kwargs.get("kwargs") or {}
    ids = args[0] if args else kwargs.get("delivery_ids")
    if not isinstance(ids, list) or not all(type(i) is int for i in ids):
        return None
    return ids


def task_runs_close_done(*, task_path: str, current_task: str) -> int:
    """Close as SUCCESSFUL the `task_path` (`deliver`) rows still waiting to run
    none of whose deliveries is due any more; return how many.

    A run goes on with the due deliveries of its tools after its own, so when many
    small tasks were enqueued (one per import), the first to run sends the others'
    deliveries too, and each of the others would cost a worker a task's bookkeeping
    (taking the row, running it, recording the result) to find nothing due. Such a
    task does nothing when it runs: it claims only due rows, and a row retried
    later has its own task. Its row is closed with a result that names the task
    that sent its deliveries. The UPDATE repeats status READY, so a row a worker
    took in between runs as usual. Nothing on RQ (its jobs are not rows here).
    """
    if not apps.is_installed("django_tasks_db") or _tasks_on_rq():
        return 0
    from django_tasks_db.compat import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    waiting = (
        DBTaskResult.objects.ready()
        .filter(task_path=task_path)
        .exclude(pk=current_task)
        .values_list("pk", "args_kwargs")[:CLOSE_DONE_LIMIT]
    )
    ids_by_task = {}
    for pk, args_kwargs in waiting:
        ids = _task_delivery_ids(args_kwargs)
        if ids is not None:
            ids_by_task[pk] = ids
    if not ids_by_task:
        return 0
    now = timezone.now()
    every_id = sorted({i for ids in ids_by_task.values() for i in ids})
    due = set()
    for start in range(0, len(every_id), 900):
        due.update(
            Delivery.objects.filter(
                due_q(now), pk__in=every_id[start : start + 900]
            ).values_list("pk", flat=True)
        )
    done = [pk for pk, ids in ids_by_task.items() if not due.intersection(ids)]
    closed = 0
    result = {
        "sent": 0,
        "failed": 0,
        "skipped": 0,
        "retrying": 0,
        "deferred": 0,
        "sent_by": str(current_task),
    }
    for start in range(0, len(done), 900):
        closed += DBTaskResult.objects.filter(
            pk__in=done[start : start + 900], status=TaskResultStatus.READY
        ).update(
            status=TaskResultStatus.SUCCESSFUL,
            started_at=now,
            finished_at=now,
            return_value=result,
        )
    if closed:
        logger.info(
            "Closed %s waiting delivery task(s) whose deliveries task %s sent",
            closed,
            current_task,
        )
    return closed


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
