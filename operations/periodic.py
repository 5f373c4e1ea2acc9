"""Periodic work on the task framework: one registry of recurring jobs.

A job is a plain function in the app that owns it, registered with its interval
(seconds, or the name of a setting holding them) in that app's `periodic.py`
module (found by `autodiscover_modules`), or here for the operations jobs:

    from operations.periodic import register
    register("notifications.recover", "NOTIFICATIONS_LEASE_SECONDS",
             "notifications.tasks.recover_sweep", "Send what no live task sends.")

Each job has one `PeriodicJob` row. `next_run_at` is when it is next due, and
`booked_task_id` the one task (`operations.tasks.run_periodic_job`, booked with
`run_after`) that runs it then. That task first books the next run, then runs the
job: a job that fails (its error kept in `last_error`, `failures` counted) or a
worker killed in the middle does not stop the schedule.

Never more than one booking per job, across workers and restarts: a booking is
written by a conditional UPDATE (`WHERE booked_task_id = <what the booker saw>`)
in the same transaction as the task row it names, so of two concurrent bookers one
commits and the other rolls its task row back. A booked task that is not the one in
the row does nothing. A booking whose task row is gone or finished (or was left
RUNNING by a dead worker) is replaced by `ensure_booked()`, which runs at worker
start (`manage.py run_periodic --book`, in bin/run and the README's worker command)
and on every periodic run (so the heartbeat job, every 30 seconds, heals the
others).

`manage.py run_periodic` runs the due jobs in the foreground, for deployments that
prefer cron. It claims a run the same way (a conditional UPDATE of `next_run_at` and
`last_started_at`), and a job whose last run started less than its timeout ago and
has not finished is never started again, so cron and workers never run a job twice
at once.
"""

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules, import_string
from django.utils.translation import gettext_lazy as _

from integrations.text import single_line
from operations.models import PeriodicJob

logger = logging.getLogger(__name__)

# A booked task may start this early (clocks of the booker and the worker).
DUE_TOLERANCE = timedelta(seconds=1)
# A booked task RUNNING this long without having booked the next run was left by
# a dead worker (the first thing a run does is book the next one).
BOOKING_RUNNING_GRACE = timedelta(seconds=120)
# A run that has not finished after its timeout (default: its interval, at least
# this) is taken as dead: the job may run again.
MIN_TIMEOUT_SECONDS = 600.0

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,99}$")


class PeriodicJobFailed(Exception):
    """A periodic job raised; the message is its sanitised error."""


@dataclass(frozen=True)
class Job:
    name: str
    interval: float | str  # seconds, or the name of a setting holding them
    func: Callable[[], object] | str  # a callable, or its dotted path
    description: str = ""
    timeout_seconds: float | None = None

    @property
    def interval_seconds(self) -> float:
        """The interval in seconds; 0 turns the job off."""
        value = self.interval
        if isinstance(value, str):
            value = getattr(settings, value)
        value = float(value)
        if value < 0 or value != value:
            raise ValueError(
                f"Periodic job {self.name}: the interval must be 0 (off) or a "
                f"positive number of seconds, not {value!r}."
            )
        return value

    @property
    def enabled(self) -> bool:
        return self.interval_seconds > 0

    @property
    def timeout(self) -> timedelta:
        seconds = self.timeout_seconds or max(
            self.interval_seconds, MIN_TIMEOUT_SECONDS
        )
        return timedelta(seconds=seconds)

    def callable(self) -> Callable[[], object]:
        return import_string(self.func) if isinstance(self.func, str) else self.func


@dataclass(frozen=True)
class JobInfo:
    """A registered job merged with its row, for display."""

    name: str
    interval_seconds: float
    func: Callable[[], object] | str
    description: str
    enabled: bool
    running: bool
    next_run_at: datetime | None
    booked_task_id: str
    last_started_at: datetime | None
    last_finished_at: datetime | None
    last_error: str
    runs: int
    failures: int


_context = threading.local()


def in_worker() -> bool:
    """Whether the job running in this thread was started by a task worker (its
    booked task), not by `manage.py run_periodic`."""
    return getattr(_context, "in_worker", False)


_registry: dict[str, Job] = {}
_discovered = False


def register(
    name: str,
    interval: float | str,
    func: Callable[[], object] | str,
    description: str = "",
    *,
    timeout_seconds: float | None = None,
) -> Job:
    """Register a periodic job: `func` (a callable taking no arguments, or its
    dotted path) every `interval` seconds (a number, or a setting's name)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"Periodic job name {name!r}: 1 to 100 characters, lower-case letters, "
            "digits, '.', '_' or '-'."
        )
    if not (callable(func) or isinstance(func, str)):
        raise TypeError(f"Periodic job {name}: func must be callable or a dotted path.")
    if isinstance(interval, bool) or not isinstance(interval, int | float | str):
        raise TypeError(f"Periodic job {name}: interval must be seconds or a setting.")
    if timeout_seconds is not None and not timeout_seconds > 0:
        raise ValueError(f"Periodic job {name}: timeout_seconds must be positive.")
    job = Job(name, interval, func, description, timeout_seconds)
    existing = _registry.get(name)
    if existing is not None and existing.func != job.func:
        raise ValueError(f"Periodic job {name} is registered twice.")
    _registry[name] = job
    return job


def periodic(name: str, interval: float | str, description: str = "", **options):
    """Decorator form of `register`."""

    def decorate(func):
        register(name, interval, func, description or (func.__doc__ or ""), **options)
        return func

    return decorate


def unregister(name: str) -> None:
    """Remove a job from the registry (tests)."""
    _registry.pop(name, None)


def _discover() -> None:
    global _discovered
    if not _discovered:
        _discovered = True
        autodiscover_modules("periodic")


def registered() -> dict[str, Job]:
    _discover()
    return dict(_registry)


def get(name: str) -> Job:
    try:
        return registered()[name]
    except KeyError:
        raise KeyError(f"No periodic job is registered as {name!r}.") from None


def _running(row: PeriodicJob, job: Job, now: datetime) -> bool:
    started = row.last_started_at
    if started is None:
        return False
    if row.last_finished_at is not None and row.last_finished_at >= started:
        return False
    return started > now - job.timeout


def _due(row: PeriodicJob, now: datetime) -> bool:
    return row.next_run_at is None or row.next_run_at <= now + DUE_TOLERANCE


def jobs() -> list[JobInfo]:
    """Every registered job, with its row's schedule and last outcome."""
    rows = {row.name: row for row in PeriodicJob.objects.all()}
    now = timezone.now()
    out = []
    for name, job in sorted(registered().items()):
        row = rows.get(name) or PeriodicJob(name=name, interval_seconds=0)
        out.append(
            JobInfo(
                name=name,
                interval_seconds=job.interval_seconds,
                func=job.func,
                description=job.description,
                enabled=job.enabled,
                running=_running(row, job, now),
                next_run_at=row.next_run_at,
                booked_task_id=row.booked_task_id,
                last_started_at=row.last_started_at,
                last_finished_at=row.last_finished_at,
                last_error=row.last_error,
                runs=row.runs,
                failures=row.failures,
            )
        )
    return out


def _row(job: Job) -> PeriodicJob:
    """The job's row, created if missing, its interval kept up to date."""
    interval = job.interval_seconds
    row = PeriodicJob.objects.filter(name=job.name).first()
    if row is None:
        PeriodicJob.objects.bulk_create(
            [PeriodicJob(name=job.name, interval_seconds=interval)],
            ignore_conflicts=True,
        )
        row = PeriodicJob.objects.get(name=job.name)
    if row.interval_seconds != interval:
        PeriodicJob.objects.filter(pk=row.pk).update(interval_seconds=interval)
        row.interval_seconds = interval
    return row


def _unchanged(row: PeriodicJob, *fields: str) -> Q:
    """Matches `row` only while `fields` still hold what was read."""
    q = Q(pk=row.pk)
    for field in fields:
        value = getattr(row, field)
        q &= Q(**{f"{field}__isnull": True}) if value is None else Q(**{field: value})
    return q


def _task():
    from operations.tasks import run_periodic_job

    return run_periodic_job


def can_book() -> bool:
    """Whether the task backend can delay tasks (the immediate one cannot: then only
    `manage.py run_periodic` runs jobs)."""
    from django_tasks import task_backends

    return bool(task_backends[_task().backend].supports_defer)


# RQ (TASKS_BACKEND=rq) writes a task to Redis at once, outside the transaction
# that books it: due at once, it could run before its booking commits and find
# itself not booked (the booking would then be healed only by another job's run).
# So on RQ a booked task runs no sooner than this after it is enqueued. A losing
# booker's task is not rolled back there either: it runs and does nothing
# ("not_booked").
RQ_BOOKING_DELAY = timedelta(seconds=2)


def _enqueue(job: Job, at: datetime):
    task = _task()
    from django_tasks import task_backends

    if type(task_backends[task.backend]).__module__.startswith("django_tasks_rq"):
        at = max(at, timezone.now() + RQ_BOOKING_DELAY)
    return task.using(run_after=at).enqueue(job.name)


def _booking_alive(row: PeriodicJob, now: datetime) -> bool:
    if not row.booked_task_id:
        return False
    from django_tasks import task_backends
    from django_tasks.base import TaskResultStatus
    from django_tasks.exceptions import TaskResultDoesNotExist

    try:
        result = task_backends[_task().backend].get_result(row.booked_task_id)
    except TaskResultDoesNotExist:
        return False
    status = result.status
    if status == TaskResultStatus.READY:
        return True
    if status == TaskResultStatus.RUNNING:
        started = result.started_at
        return started is not None and started > now - BOOKING_RUNNING_GRACE
    return False  # finished without booking the next run


def ensure_booked(names: list[str] | None = None) -> list[str]:
    """Book every enabled job (or those `names`) whose booking is missing or
    stale; return the names booked now. Safe to call from any number of
    processes at once: each job ends up with one booking."""
    if not can_book():
        return []
    booked = []
    for name, job in sorted(registered().items()):
        if (names is not None and name not in names) or not job.enabled:
            continue
        for _attempt in range(3):
            row = _row(job)
            now = timezone.now()
            if _booking_alive(row, now):
                break
            at = row.next_run_at or now  # a new job runs at once
            with transaction.atomic():
                task_result = _enqueue(job, at)
                won = PeriodicJob.objects.filter(
                    _unchanged(row, "booked_task_id")
                ).update(booked_task_id=str(task_result.id), next_run_at=at)
                if not won:  # another booker was first: drop this task row
                    transaction.set_rollback(True)
            if won:
                booked.append(name)
                logger.info("Booked periodic job %s for %s", name, at.isoformat())
                break
    return booked


def run_booked(name: str, *, task_id: str) -> dict:
    """Run by the booked task `task_id`: book the next run, then run the job if it
    is due and not running. A task that is not the job's booking does nothing."""
    try:
        job = get(name)
    except KeyError:
        logger.warning("Periodic task for unregistered job %r ignored", name)
        return {"job": single_line(name, 100), "outcome": "unregistered"}
    for _attempt in range(5):
        row = _row(job)
        if row.booked_task_id != task_id:
            return {"job": name, "outcome": "not_booked"}
        now = timezone.now()
        fields = ("booked_task_id", "next_run_at", "last_started_at")
        if not job.enabled:
            PeriodicJob.objects.filter(_unchanged(row, *fields)).update(
                booked_task_id="", next_run_at=None
            )
            return {"job": name, "outcome": "disabled"}
        interval = timedelta(seconds=job.interval_seconds)
        due = _due(row, now)
        run = due and not _running(row, job, now)
        updates = {}
        if run:
            next_at = now + interval
            updates = {"last_started_at": now, "next_run_at": next_at}
        elif due:  # still running elsewhere: look again an interval later
            next_at = now + interval
            updates = {"next_run_at": next_at}
        else:  # run early by cron or `--job`: keep the schedule
            next_at = row.next_run_at
        with transaction.atomic():
            task_result = _enqueue(job, next_at)
            won = PeriodicJob.objects.filter(_unchanged(row, *fields)).update(
                booked_task_id=str(task_result.id), **updates
            )
            if not won:
                transaction.set_rollback(True)
        if not won:
            continue
        if not run:
            return {"job": name, "outcome": "running" if due else "not_due"}
        _heal(name)
        _context.in_worker = True
        try:
            return _execute(job, started=now)
        finally:
            _context.in_worker = False
    return {"job": name, "outcome": "busy"}


def _heal(current: str) -> None:
    """Re-book any other job whose booking vanished (a lost task row, a dead
    worker): one job's run keeps the whole schedule."""
    try:
        ensure_booked([name for name in registered() if name != current])
    except Exception:
        logger.exception("Could not check the periodic bookings")


def run_due(names: list[str] | None = None, *, force: bool = False) -> list[dict]:
    """Run, in this process, every enabled job that is due (or those `names`, and
    with `force` whether due or not), each unless it is running elsewhere. Returns
    one outcome per job considered."""
    outcomes = []
    for name, job in sorted(registered().items()):
        if names is not None and name not in names:
            continue
        if not job.enabled:
            outcomes.append({"job": name, "outcome": "disabled"})
            continue
        row = _row(job)
        now = timezone.now()
        if not force and not _due(row, now):
            outcomes.append({"job": name, "outcome": "not_due"})
            continue
        if _running(row, job, now):
            outcomes.append({"job": name, "outcome": "running"})
            continue
        won = PeriodicJob.objects.filter(
            _unchanged(row, "next_run_at", "last_started_at")
        ).update(
            last_started_at=now,
            next_run_at=now + timedelta(seconds=job.interval_seconds),
        )
        if not won:
            outcomes.append({"job": name, "outcome": "busy"})
            continue
        outcomes.append(_execute(job, started=now))
    return outcomes


def _execute(job: Job, *, started: datetime) -> dict:
    """Run the claimed job and record its outcome."""
    try:
        result = job.callable()()
    except Exception as exc:
        error = single_line(f"{type(exc).__name__}: {exc}", 2000)
        logger.exception("Periodic job %s failed", job.name)
        _finish(job, started, last_error=error, failures=F("failures") + 1)
        return {"job": job.name, "outcome": "failed", "error": error}
    _finish(job, started, last_error="", runs=F("runs") + 1)
    return {"job": job.name, "outcome": "ran", "result": _jsonable(result)}


def _finish(job: Job, started: datetime, **counters) -> None:
    now = timezone.now()
    if not PeriodicJob.objects.filter(name=job.name, last_started_at=started).update(
        last_finished_at=now, **counters
    ):
        # A later run took over (this one outlived its timeout): count only.
        PeriodicJob.objects.filter(name=job.name).update(**counters)


def _jsonable(value):
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


# -- The operations app's own jobs --------------------------------------------------
register(
    "operations.heartbeat",
    "WORKER_HEARTBEAT_SECONDS",
    "operations.heartbeat.heartbeat_job",
    _("Records that a task worker is alive, so an idle worker is still seen."),
)
register(
    "operations.retention",
    "RETENTION_INTERVAL_SECONDS",
    "operations.retention.retention_job",
    _(
        "Purges sent deliveries, old events, finished task results, old audit "
        "entries and sign-in records (RETENTION_* settings). Never findings or scans."
    ),
)
