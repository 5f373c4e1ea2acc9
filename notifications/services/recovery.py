"""Recovery: a worker that dies mid-batch leaves behind a task that finishes it.

django-tasks-db leaves a killed worker's task RUNNING for good, and a restarted
`db_worker` never looks at it again (the library has no worker-start hook). So every
delivery task first books a `recover` task for when its lease would run out; that
task sends whatever is due or was claimed by a dead worker, then books the next look
while deliveries are still open. `RecoverySchedule` keeps it to one booking at a time.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Min, Q
from django.utils import timezone

from notifications.models import Delivery, DeliveryStatus, RecoverySchedule


def _lease() -> timedelta:
    return timedelta(seconds=float(settings.NOTIFICATIONS_LEASE_SECONDS))


def recovery_watchdog_at() -> datetime:
    """When a lease taken now runs out: when to look after a task starting now."""
    return timezone.now() + _lease()


def deliveries_recovery_at() -> datetime | None:
    """When the next recovery should look, or None when no delivery is open.

    At the earliest lease end of a delivery being sent (its worker may be dead), or
    one lease after a pending delivery fell due (its own task should have sent it by
    then); never sooner than NOTIFICATIONS_RETRY_BASE_SECONDS from now.
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
    if not candidates:
        return None
    floor = timezone.now() + timedelta(
        seconds=float(settings.NOTIFICATIONS_RETRY_BASE_SECONDS)
    )
    return max(min(candidates), floor)


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
