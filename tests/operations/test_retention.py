"""Retention: rows just older than each limit are purged, rows just newer kept, in
batches of short transactions; nothing pending, no finding and no scan is purged."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessLog
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tasks.base import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from integrations.models import AuditAction, AuditEntry
from notifications.models import Delivery, DeliveryStatus, Event, EventKind
from operations import periodic
from operations.models import WorkerHeartbeat
from operations.retention import purge_in_batches, retention_purge
from projects.models import Finding, Scan, ScanSource, ScanStatus, Severity

DAY = timedelta(days=1)
MARGIN = timedelta(hours=1)  # "just" older / newer than a limit


@pytest.fixture
def limits(settings):
    settings.RETENTION_DELIVERIES_DAYS = 90
    settings.RETENTION_TASK_RESULTS_DAYS = 7
    settings.RETENTION_AUDIT_DAYS = 365
    settings.RETENTION_BATCH_SIZE = 1000
    return settings


def ago(days, *, older):
    return timezone.now() - days * DAY + (-MARGIN if older else MARGIN)


def event_with(project, tool, statuses, *, age):
    """An event created `age` ago with one delivery per status."""
    event = Event.objects.create(project=project, kind=EventKind.TEST)
    Event.objects.filter(pk=event.pk).update(created_at=age)
    for index, status in enumerate(statuses):
        delivery = Delivery.objects.create(
            dedupe_key=f"test:{event.pk}:{index}",
            project=project,
            event=event,
            integration=tool,
            recipients=["someone@example.com"],
            status=status,
            next_attempt_at=age,
            sent_at=age if status == DeliveryStatus.SENT else None,
        )
        Delivery.objects.filter(pk=delivery.pk).update(created_at=age)
    return event


def test_deliveries_and_events_past_the_limit_are_purged(project, tool, limits):
    sent, failed, pending = (
        DeliveryStatus.SENT,
        DeliveryStatus.FAILED,
        DeliveryStatus.PENDING,
    )
    old_sent = event_with(project, tool, [sent, sent], age=ago(90, older=True))
    old_failed = event_with(project, tool, [sent, failed], age=ago(90, older=True))
    old_pending = event_with(project, tool, [sent, pending], age=ago(90, older=True))
    old_sending = event_with(
        project, tool, [DeliveryStatus.SENDING], age=ago(90, older=True)
    )
    young = event_with(project, tool, [sent], age=ago(90, older=False))

    purged = retention_purge()

    assert purged["deliveries"] == 4  # the sent ones of the old events
    assert purged["events"] == 2  # old_sent, old_failed (with its failed delivery)
    remaining = set(Event.objects.values_list("pk", flat=True))
    assert remaining == {old_pending.pk, old_sending.pk, young.pk}
    assert not Delivery.objects.filter(event_id__in=[old_sent.pk, old_failed.pk])
    # Nothing pending (or being sent) is purged, nor anything young.
    assert list(
        Delivery.objects.filter(event=old_pending).values_list("status", flat=True)
    ) == [pending]
    assert Delivery.objects.filter(event=old_sending).count() == 1
    assert Delivery.objects.filter(event=young).count() == 1


def make_task_result(status, finished):
    row = DBTaskResult.objects.create(
        args_kwargs={"args": [], "kwargs": {}},
        task_path="operations.tasks.run_periodic_job",
        backend_name="default",
        run_after=finished,
        status=status,
        finished_at=finished,
    )
    return row.pk


def test_finished_task_results_past_the_limit_are_purged(db, limits):
    old = ago(7, older=True)
    gone = [
        make_task_result(TaskResultStatus.SUCCESSFUL, old),
        make_task_result(TaskResultStatus.FAILED, old),
    ]
    kept = [
        make_task_result(TaskResultStatus.SUCCESSFUL, ago(7, older=False)),
        make_task_result(TaskResultStatus.READY, old),  # not finished: never
        make_task_result(TaskResultStatus.RUNNING, old),
    ]
    assert retention_purge()["task_results"] == 2
    assert set(DBTaskResult.objects.values_list("pk", flat=True)) == set(kept)
    assert not DBTaskResult.objects.filter(pk__in=gone).exists()


def test_audit_entries_and_sign_in_records_past_the_limit_are_purged(db, limits):
    for older in (True, False):
        entry = AuditEntry.objects.create(
            provider="smtp", action=AuditAction.TOKEN_CREATED, detail=f"{older}"
        )
        AuditEntry.objects.filter(pk=entry.pk).update(created_at=ago(365, older=older))
        for model in (AccessAttempt, AccessLog):
            extra = {"failures_since_start": 1} if model is AccessAttempt else {}
            row = model.objects.create(
                username=f"user-{older}",
                ip_address="127.0.0.1",
                user_agent="test",
                **extra,
            )
            model.objects.filter(pk=row.pk).update(attempt_time=ago(365, older=older))
    purged = retention_purge()
    assert purged["audit_entries"] == 1
    assert purged["sign_in_attempts"] == 1 and purged["sign_in_logs"] == 1
    assert list(AuditEntry.objects.values_list("detail", flat=True)) == ["False"]
    assert list(AccessAttempt.objects.values_list("username", flat=True)) == [
        "user-False"
    ]
    assert list(AccessLog.objects.values_list("username", flat=True)) == ["user-False"]


def test_stale_worker_heartbeats_are_purged(db, limits):
    now = timezone.now()
    for name, seen in (("old:1", now - DAY - MARGIN), ("recent:2", now - DAY + MARGIN)):
        WorkerHeartbeat.objects.create(
            worker=name, hostname=name, pid=1, started_at=seen, last_seen_at=seen
        )
    assert retention_purge()["worker_heartbeats"] == 1
    assert list(WorkerHeartbeat.objects.values_list("worker", flat=True)) == [
        "recent:2"
    ]


def test_marks_of_dead_delivery_runs_are_purged_after_a_day(db, limits):
    from notifications.models import RunProgress

    now = timezone.now()
    for name, age in (("dead-run", DAY + MARGIN), ("live-run", DAY - MARGIN)):
        RunProgress.objects.create(worker=name, batch_claimed_at=now)
        RunProgress.objects.filter(worker=name).update(updated_at=now - age)
    assert retention_purge()["run_progress"] == 1
    assert list(RunProgress.objects.values_list("worker", flat=True)) == ["live-run"]


def test_zero_turns_a_retention_off(project, tool, limits):
    limits.RETENTION_DELIVERIES_DAYS = 0
    limits.RETENTION_TASK_RESULTS_DAYS = 0
    limits.RETENTION_AUDIT_DAYS = 0
    years = timezone.now() - 3650 * DAY
    event_with(project, tool, [DeliveryStatus.SENT], age=years)
    make_task_result(TaskResultStatus.SUCCESSFUL, years)
    entry = AuditEntry.objects.create(provider="smtp", action=AuditAction.TOKEN_CREATED)
    AuditEntry.objects.filter(pk=entry.pk).update(created_at=years)
    purged = retention_purge()
    assert set(purged) == {"worker_heartbeats", "run_progress"}
    assert Event.objects.count() == Delivery.objects.count() == 1
    assert DBTaskResult.objects.count() == 1
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_purges_in_batches_of_short_transactions(db, limits):
    base = timezone.now() - 400 * DAY
    for index in range(10):
        entry = AuditEntry.objects.create(
            provider="smtp", action=AuditAction.TOKEN_CREATED, detail=str(index)
        )
        AuditEntry.objects.filter(pk=entry.pk).update(created_at=base)
    rows = AuditEntry.objects.filter(created_at__lt=timezone.now() - 365 * DAY)
    with CaptureQueriesContext(connection) as queries:
        assert purge_in_batches(rows, batch_size=3) == 10
    assert AuditEntry.objects.count() == 0
    deletes = [q["sql"] for q in queries if q["sql"].upper().startswith("DELETE")]
    assert len(deletes) == 4  # 3 + 3 + 3 + 1, each in its own transaction
    # Each batch is its own transaction (pytest-django's test transaction around
    # them makes these savepoints): one per batch, plus the last, empty, look.
    savepoints = [q for q in queries if q["sql"].upper().startswith("SAVEPOINT")]
    assert len(savepoints) == 5


def test_findings_and_scans_are_never_purged(project, tool, limits):
    years = timezone.now() - 3650 * DAY
    scan = Scan.objects.create(
        project=project, source=ScanSource.UPLOAD, status=ScanStatus.COMPLETE
    )
    finding = Finding.objects.create(
        project=project,
        tool_name="semgrep",
        fingerprint="f" * 64,
        severity=Severity.HIGH,
        first_seen_scan=scan,
        last_seen_scan=scan,
    )
    Scan.objects.filter(pk=scan.pk).update(created_at=years)
    Finding.objects.filter(pk=finding.pk).update(created_at=years, updated_at=years)
    event = event_with(project, tool, [DeliveryStatus.SENT], age=years)
    Event.objects.filter(pk=event.pk).update(scan=scan)
    purged = retention_purge()
    assert purged["events"] == 1  # the scan's old event goes ...
    assert Scan.objects.filter(pk=scan.pk).exists()  # ... the scan stays
    assert Finding.objects.filter(pk=finding.pk).exists()


def test_retention_is_a_registered_daily_job(db, limits):
    job = periodic.get("operations.retention")
    assert job.interval_seconds == 86400
    (outcome,) = periodic.run_due(["operations.retention"])
    assert outcome["outcome"] == "ran" and "audit_entries" in outcome["result"]
