"""Retention: the `operations.retention` periodic job purges old records.

In batches of RETENTION_BATCH_SIZE rows, one short transaction each (no long locks;
the job loops until nothing is left):

- sent deliveries older than RETENTION_DELIVERIES_DAYS (by when they were sent),
  and events older than that none of whose deliveries is still pending or being
  sent (their failed or skipped deliveries go with them);
- finished task results (succeeded or failed) older than
  RETENTION_TASK_RESULTS_DAYS (django-tasks-db's table);
- audit entries, and django-axes' sign-in attempts and logs, older than
  RETENTION_AUDIT_DAYS;
- worker heartbeats not seen for a day, and the batch marks (`RunProgress`) that
  dead delivery runs left a day ago or more.

0 turns a kind off. Findings and scans are never purged.
"""

import logging
from datetime import timedelta

from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from operations.heartbeat import STALE_AFTER
from operations.models import WorkerHeartbeat

logger = logging.getLogger(__name__)


def _cutoff(setting: str):
    days = int(getattr(settings, setting))
    if days < 0:
        raise ValueError(f"{setting} must be 0 (off) or a number of days.")
    return None if days == 0 else timezone.now() - timedelta(days=days)


def purge_in_batches(queryset, *, batch_size: int | None = None) -> int:
    """Delete the rows of `queryset`, `batch_size` primary keys per transaction,
    until none is left; return how many rows of its model were deleted."""
    size = int(batch_size or settings.RETENTION_BATCH_SIZE)
    if size < 1:
        raise ValueError("RETENTION_BATCH_SIZE must be at least 1.")
    model = queryset.model
    label = model._meta.label
    total = 0
    while True:
        with transaction.atomic():
            ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:size])
            if not ids:
                return total
            _, per_model = model.objects.filter(pk__in=ids).delete()
        total += per_model.get(label, 0)


def _deliveries(cutoff):
    from notifications.models import Delivery, DeliveryStatus

    return Delivery.objects.filter(
        Q(sent_at__lt=cutoff) | Q(sent_at__isnull=True, created_at__lt=cutoff),
        status=DeliveryStatus.SENT,
    )


def _events(cutoff):
    from notifications.models import DeliveryStatus, Event

    open_ = [DeliveryStatus.PENDING, DeliveryStatus.SENDING]
    return Event.objects.filter(created_at__lt=cutoff).exclude(
        deliveries__status__in=open_
    )


def _task_results(cutoff):
    if not apps.is_installed("django_tasks_db"):
        return None
    from django_tasks.base import TaskResultStatus
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.filter(
        status__in=[TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED],
        finished_at__lt=cutoff,
    )


def retention_purge(*, batch_size: int | None = None) -> dict[str, int]:
    """Purge everything past its retention; return the rows deleted by kind."""
    purged = {}
    cutoff = _cutoff("RETENTION_DELIVERIES_DAYS")
    if cutoff is not None:
        purged["deliveries"] = purge_in_batches(
            _deliveries(cutoff), batch_size=batch_size
        )
        purged["events"] = purge_in_batches(_events(cutoff), batch_size=batch_size)
    cutoff = _cutoff("RETENTION_TASK_RESULTS_DAYS")
    if cutoff is not None and (rows := _task_results(cutoff)) is not None:
        purged["task_results"] = purge_in_batches(rows, batch_size=batch_size)
    cutoff = _cutoff("RETENTION_AUDIT_DAYS")
    if cutoff is not None:
        from integrations.models import AuditEntry

        purged["audit_entries"] = purge_in_batches(
            AuditEntry.objects.filter(created_at__lt=cutoff), batch_size=batch_size
        )
        if apps.is_installed("axes"):
            from axes.models import AccessAttempt, AccessFailureLog, AccessLog

            for key, model in (
                ("sign_in_attempts", AccessAttempt),
                ("sign_in_failures", AccessFailureLog),
                ("sign_in_logs", AccessLog),
            ):
                purged[key] = purge_in_batches(
                    model.objects.filter(attempt_time__lt=cutoff),
                    batch_size=batch_size,
                )
    purged["worker_heartbeats"] = purge_in_batches(
        WorkerHeartbeat.objects.filter(last_seen_at__lt=timezone.now() - STALE_AFTER),
        batch_size=batch_size,
    )
    # A live run renews its mark with every batch and deletes it when it ends.
    from notifications.models import RunProgress

    purged["run_progress"] = purge_in_batches(
        RunProgress.objects.filter(updated_at__lt=timezone.now() - STALE_AFTER),
        batch_size=batch_size,
    )
    if any(purged.values()):
        logger.info(
            "Retention purged %s",
            ", ".join(f"{count} {kind}" for kind, count in purged.items() if count),
        )
    return purged


def retention_job() -> dict[str, int]:
    """The `operations.retention` periodic job."""
    return retention_purge()
