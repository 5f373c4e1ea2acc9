"""Liveness, readiness and the machine-room figures, read without changing rows.

`readiness()` runs every readiness check and times it; `queue_summary()`,
`workers_seen()` and `worker_missing()` are the reads behind the Operations page and
the Deliveries pages' banner. Nothing here reports more than an exception's class
name: a database URL, a host or a password never reaches a probe's answer.
"""

import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Max, Min
from django.utils import timezone

from notifications.models import Delivery, DeliveryStatus
from operations import heartbeat, periodic
from operations.models import WorkerHeartbeat

#: Cache backends private to one process: nothing shared to be unreachable, so the
#: cache check is skipped for them (CACHE_URL unset means locmem).
PROCESS_LOCAL_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)

OK, FAIL, SKIPPED = "ok", "fail", "skipped"


@dataclass
class CheckResult:
    """One readiness check: its status, figures safe to publish, and its timing."""

    status: str
    details: dict = field(default_factory=dict)
    duration_ms: float = 0.0

    def as_dict(self) -> dict:
        return {
            "status": self.status,
            **self.details,
            "duration_ms": round(self.duration_ms, 2),
        }


# -- who may ask /readyz ----------------------------------------------------------------


def _bearer_token(request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def readyz_allowed(request) -> bool:
    """From READYZ_ALLOWED_NETWORKS, or with `Authorization: Bearer <READYZ_TOKEN>`."""
    expected = settings.READYZ_TOKEN
    presented = _bearer_token(request)
    if expected and presented:
        if hmac.compare_digest(presented.encode(), expected.encode()):
            return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(
        address in ipaddress.ip_network(network, strict=False)
        for network in settings.READYZ_ALLOWED_NETWORKS
    )


# -- the checks ---------------------------------------------------------------------


def _timed(check) -> CheckResult:
    started = time.perf_counter()
    try:
        result = check()
    except Exception as exc:  # noqa: BLE001 - a probe reports, it never raises
        result = CheckResult(FAIL, {"error": type(exc).__name__})
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result


def check_database() -> CheckResult:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return CheckResult(OK)


def check_migrations() -> CheckResult:
    """Every migration on disk applied (Django's own `migrate --check` question)."""
    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return CheckResult(OK if not plan else FAIL, {"unapplied": len(plan)})


def check_cache() -> CheckResult:
    """A key written and read back, when the cache is shared (CACHE_URL set)."""
    backend = settings.CACHES["default"]["BACKEND"]
    if backend in PROCESS_LOCAL_CACHES:
        return CheckResult(SKIPPED, {"reason": "process-local cache"})
    key = f"operations:readyz:{secrets.token_hex(8)}"
    value = secrets.token_hex(8)
    try:
        cache.set(key, value, timeout=30)
        read = cache.get(key)
    finally:
        cache.delete(key)
    return CheckResult(OK if read == value else FAIL)


def _seconds_since(moment: datetime | None, now: datetime) -> float | None:
    if moment is None:
        return None
    return round(max((now - moment).total_seconds(), 0.0), 1)


def latest_heartbeat_at() -> datetime | None:
    """When a task worker was last seen alive (None: never)."""
    return WorkerHeartbeat.objects.aggregate(latest=Max("last_seen_at"))["latest"]


def check_worker() -> CheckResult:
    """A task worker seen within READYZ_WORKER_MAX_AGE_SECONDS."""
    limit = settings.READYZ_WORKER_MAX_AGE_SECONDS
    age = _seconds_since(latest_heartbeat_at(), timezone.now())
    status = OK if age is not None and age <= limit else FAIL
    return CheckResult(status, {"last_seen_seconds": age, "max_age_seconds": limit})


def check_queue() -> CheckResult:
    """No due delivery waiting longer than READYZ_QUEUE_MAX_AGE_SECONDS."""
    limit = settings.READYZ_QUEUE_MAX_AGE_SECONDS
    summary = queue_summary()
    age = summary.oldest_due_seconds
    return CheckResult(
        OK if age is None or age <= limit else FAIL,
        {
            "due": summary.due,
            "oldest_due_seconds": age,
            "max_age_seconds": limit,
        },
    )


CHECKS = {
    "database": check_database,
    "migrations": check_migrations,
    "cache": check_cache,
    "worker": check_worker,
    "queue": check_queue,
}


def readiness() -> tuple[bool, dict[str, dict]]:
    """Run every check: (all passed or skipped, {name: result as a dict})."""
    results = {name: _timed(check) for name, check in CHECKS.items()}
    ready = all(result.status != FAIL for result in results.values())
    return ready, {name: result.as_dict() for name, result in results.items()}


# -- the Operations page and the banner ------------------------------------------------


@dataclass
class QueueSummary:
    pending: int
    due: int
    oldest_due_seconds: float | None
    oldest_pending_seconds: float | None
    ready_tasks: int | None


def _ready_tasks() -> int | None:
    """Tasks waiting for a worker in django-tasks' database queue (None: not used)."""
    if "django_tasks_db" not in settings.INSTALLED_APPS:
        return None
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.ready().count()


def queue_summary() -> QueueSummary:
    """Pending deliveries: how many, how many due now and how long the oldest due one
    has waited (since it was due) and the oldest pending one (since it was written)."""
    now = timezone.now()
    pending = Delivery.objects.filter(status=DeliveryStatus.PENDING)
    due = pending.filter(next_attempt_at__lte=now)
    figures = pending.aggregate(oldest=Min("created_at"))
    return QueueSummary(
        pending=pending.count(),
        due=due.count(),
        oldest_due_seconds=_seconds_since(
            due.aggregate(oldest=Min("next_attempt_at"))["oldest"], now
        ),
        oldest_pending_seconds=_seconds_since(figures["oldest"], now),
        ready_tasks=_ready_tasks(),
    )


def pending_deliveries(*, project=None) -> int:
    """How many deliveries wait to be sent (of one project when given)."""
    pending = Delivery.objects.filter(status=DeliveryStatus.PENDING)
    if project is not None:
        pending = pending.filter(project=project)
    return pending.count()


@dataclass
class WorkerSeen:
    worker: str
    hostname: str
    pid: int
    started_at: datetime
    last_seen_at: datetime
    last_seen_seconds: float
    alive: bool


def workers_seen() -> list[WorkerSeen]:
    """Every worker heartbeat kept, the most recently seen first."""
    now = timezone.now()
    limit = timedelta(seconds=settings.READYZ_WORKER_MAX_AGE_SECONDS)
    return [
        WorkerSeen(
            worker=row.worker,
            hostname=row.hostname,
            pid=row.pid,
            started_at=row.started_at,
            last_seen_at=row.last_seen_at,
            last_seen_seconds=_seconds_since(row.last_seen_at, now),
            alive=now - row.last_seen_at <= limit,
        )
        for row in heartbeat.workers()
    ]


def worker_missing() -> bool:
    """No task worker seen within READYZ_WORKER_MAX_AGE_SECONDS."""
    since = timezone.now() - timedelta(seconds=settings.READYZ_WORKER_MAX_AGE_SECONDS)
    return not WorkerHeartbeat.objects.filter(last_seen_at__gte=since).exists()


def worker_max_age_seconds() -> int:
    """How long without a heartbeat before a worker counts as gone (for pages)."""
    return round(settings.READYZ_WORKER_MAX_AGE_SECONDS)


def periodic_jobs() -> list[periodic.JobInfo]:
    """The registered periodic jobs with their schedule and last outcome."""
    return periodic.jobs()
