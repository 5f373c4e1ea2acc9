"""Recovery without a sweeper process: every delivery task books a `recover` task for
when its lease runs out, and that task finishes what a dead worker left behind.
tests/notifications/test_worker.py drills it with a real db_worker killed mid-batch."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from django_tasks import task_backends

from notifications import tasks
from notifications.exceptions import TaskWorkerLost
from notifications.models import Delivery, DeliveryStatus, EventKind, RecoverySchedule
from notifications.services import event_emit
from notifications.services.delivery import deliveries_claim
from notifications.services.recovery import (
    deliveries_recovery_at,
    recovery_book,
    task_claim_token,
    task_runs_fail_dead,
)
from tests.notifications.conftest import call_task

pytestmark = pytest.mark.django_db

LEASE = 10.0


@pytest.fixture
def queued(settings):
    """A backend that records enqueued tasks (with their run_after) instead of
    running them, as the database backend would hold them for db_worker."""
    dummy = "django_tasks.backends.dummy.DummyBackend"
    settings.TASKS = {"default": {"BACKEND": dummy}}
    settings.NOTIFICATIONS_LEASE_SECONDS = LEASE
    backend = task_backends["default"]
    backend.clear()
    return backend


def recoveries(backend):
    return [r for r in backend.results if r.task.name == "recover"]


def emit_uncommitted(project, count):
    """Deliveries written, their on-commit enqueue never run (a lost enqueue)."""
    with transaction.atomic():
        for i in range(count):
            event_emit(
                project=project, kind=EventKind.SCAN_COMPLETED, payload={"new": i}
            )
    return list(Delivery.objects.order_by("pk"))


def test_one_booking_at_a_time_and_an_earlier_one_wins():
    now = timezone.now()
    assert recovery_book(at=now + timedelta(seconds=10))
    assert not recovery_book(at=now + timedelta(seconds=20))  # one is due sooner
    assert recovery_book(at=now + timedelta(seconds=5))
    assert RecoverySchedule.objects.get().next_run_at == now + timedelta(seconds=5)
    # A booking whose time has passed (its task ran, or was lost) no longer counts.
    RecoverySchedule.objects.update(next_run_at=now - timedelta(seconds=1))
    assert recovery_book(at=now + timedelta(seconds=20))


def test_recovery_looks_at_lease_end_or_one_lease_after_a_row_fell_due(
    project, link, settings
):
    settings.NOTIFICATIONS_LEASE_SECONDS = LEASE
    assert deliveries_recovery_at() is None  # nothing open, no more looks
    (delivery,) = emit_uncommitted(project, 1)
    due = Delivery.objects.get().next_attempt_at
    assert deliveries_recovery_at() == due + timedelta(seconds=LEASE)
    deliveries_claim(worker="about-to-die")
    lease_end = Delivery.objects.get().lease_expires_at
    assert deliveries_recovery_at() == lease_end


def test_delivery_task_books_a_recovery_for_its_lease_end(
    sandbox, project, link, queued
):
    deliveries = emit_uncommitted(project, 2)
    started = timezone.now()
    call_task(tasks.deliver, [deliveries[0].pk])
    call_task(tasks.deliver, [deliveries[1].pk])
    (booked,) = recoveries(queued)  # one booking for both tasks
    assert booked.task.run_after >= started + timedelta(seconds=LEASE)
    assert booked.task.run_after <= timezone.now() + timedelta(seconds=LEASE + 1)
    assert [d.status for d in Delivery.objects.all()] == [DeliveryStatus.SENT] * 2

    # When it runs and nothing is open, the chain stops.
    RecoverySchedule.objects.update(next_run_at=timezone.now() - timedelta(seconds=1))
    call_task(tasks.recover)
    assert len(recoveries(queued)) == 1


def test_recover_finishes_a_dead_workers_batch_and_what_it_never_reached(
    sandbox, project, link, queued
):
    emit_uncommitted(project, 6)
    # The dead worker had claimed three (and maybe sent one: the same Message-ID
    # again is one message to a mail client); three it never reached.
    deliveries_claim(worker="killed-worker", limit=3)
    Delivery.objects.filter(status=DeliveryStatus.SENDING).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    result = call_task(tasks.recover)
    assert result["sent"] == 6
    final = list(Delivery.objects.order_by("pk"))
    assert [d.status for d in final] == [DeliveryStatus.SENT] * 6
    assert {m["message_id"] for m in sandbox.messages()} == {
        f"<delivery-{d.uuid}@appsec.example.test>" for d in final
    }
    # Only the watchdog this run booked for its own leases (had its worker died,
    # that look would have finished its work); nothing is left open, so when it
    # runs it books no further look.
    (watchdog,) = recoveries(queued)
    assert watchdog.task.run_after <= timezone.now() + timedelta(seconds=LEASE + 1)
    RecoverySchedule.objects.update(next_run_at=timezone.now() - timedelta(seconds=1))
    assert call_task(tasks.recover)["sent"] == 0
    assert len(recoveries(queued)) == 1


def test_recover_books_the_next_look_while_a_live_worker_holds_rows(
    sandbox, project, link, queued
):
    emit_uncommitted(project, 2)
    deliveries_claim(worker="live-worker", limit=1)
    # The live worker claimed a while ago: its lease runs out half a lease from now,
    # before the watchdog this run books for its own rows (a lease from now). Taken
    # with the claim above, the two could fall in one second or in two, and so be
    # booked as one look or as two.
    lease_end = timezone.now() + timedelta(seconds=LEASE / 2)
    Delivery.objects.filter(status=DeliveryStatus.SENDING).update(
        lease_expires_at=lease_end
    )
    call_task(tasks.recover)
    # The unclaimed one went out; the claimed one is left to its worker, and looked
    # at again when that worker's lease runs out, sooner than the watchdog.
    assert Delivery.objects.filter(status=DeliveryStatus.SENT).count() == 1
    watchdog, at_lease_end = sorted(
        recoveries(queued), key=lambda r: r.task.run_after, reverse=True
    )
    assert lease_end <= at_lease_end.task.run_after <= lease_end + timedelta(seconds=1)
    assert watchdog.task.run_after >= lease_end + timedelta(seconds=LEASE / 2 - 1)


def test_immediate_backend_books_nothing(project, link):
    tasks.recovery_schedule(at=timezone.now())
    assert not RecoverySchedule.objects.exists()


def test_deliver_pending_sends_what_a_lost_enqueue_left(sandbox, project, link):
    from io import StringIO

    from django.core.management import call_command

    emit_uncommitted(project, 2)  # committed rows whose enqueue never happened
    out = StringIO()
    call_command("deliver_pending", stdout=out)
    assert out.getvalue().startswith("sent 2, failed 0")
    assert [d.status for d in Delivery.objects.all()] == [DeliveryStatus.SENT] * 2


def running_task_row(path, *, started):
    """A task row as db_worker leaves it while running (or after being killed)."""
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.create(
        status="RUNNING",
        task_path=path,
        args_kwargs={"args": [], "kwargs": {}},
        backend_name="default",
        run_after=started,
        started_at=started,
        worker_ids=["killed-or-not"],
    )


def test_recover_closes_task_rows_a_dead_worker_left_running(
    sandbox, project, link, queued, settings
):
    settings.NOTIFICATIONS_TASK_STALE_SECONDS = 60
    now = timezone.now()
    long_ago = now - timedelta(seconds=120)
    deliver, recover = tasks.deliver.module_path, tasks.recover.module_path
    dead = running_task_row(deliver, started=long_ago)
    dead_recover = running_task_row(recover, started=long_ago)
    # As old, but its run still holds a delivery with a live lease (a slow send).
    slow = running_task_row(deliver, started=long_ago)
    young = running_task_row(deliver, started=now - timedelta(seconds=5))
    not_ours = running_task_row("projects.tasks.scan_import", started=long_ago)
    emit_uncommitted(project, 1)
    deliveries_claim(worker=task_claim_token(str(slow.pk)))

    result = call_task(tasks.recover)

    assert result["tasks_closed"] == 2
    for row in (dead, dead_recover):
        row.refresh_from_db()
        assert row.status == "FAILED" and row.finished_at is not None
        (error,) = row.task_result.errors
        assert error.exception_class is TaskWorkerLost
        assert "stopped without finishing it" in error.traceback
        assert "none of its deliveries had a live lease" in error.traceback
    for row in (slow, young, not_ours):
        row.refresh_from_db()
        assert row.status == "RUNNING"
    assert Delivery.objects.get().status == DeliveryStatus.SENDING  # left to `slow`


def test_a_task_finishing_while_it_is_closed_keeps_its_result(settings):
    settings.NOTIFICATIONS_TASK_STALE_SECONDS = 60
    row = running_task_row(
        tasks.deliver.module_path, started=timezone.now() - timedelta(seconds=120)
    )
    row.set_successful({"sent": 1})  # it was alive after all, and just finished
    assert (
        task_runs_fail_dead(task_paths=[tasks.deliver.module_path], current_task=None)
        == 0
    )
    row.refresh_from_db()
    assert row.status == "SUCCESSFUL"


def test_recovery_looks_again_when_a_running_task_turns_stale(settings):
    settings.NOTIFICATIONS_TASK_STALE_SECONDS = 60
    paths = [tasks.deliver.module_path, tasks.recover.module_path]
    assert deliveries_recovery_at(task_paths=paths) is None
    started = timezone.now() - timedelta(seconds=5)
    row = running_task_row(tasks.deliver.module_path, started=started)
    assert deliveries_recovery_at(task_paths=paths) == started + timedelta(seconds=60)
    # A `recover` task does not wait for itself.
    assert deliveries_recovery_at(task_paths=paths, current_task=str(row.pk)) is None


def test_a_dead_workers_rows_are_looked_at_about_a_lease_after_it_died(
    project, link, settings
):
    """The next look is at the lease end, never more than a third of a lease
    later however long the retry base is."""
    settings.NOTIFICATIONS_LEASE_SECONDS = 30
    settings.NOTIFICATIONS_RETRY_BASE_SECONDS = 3600
    emit_uncommitted(project, 1)
    deliveries_claim(worker="about-to-die")
    Delivery.objects.update(lease_expires_at=timezone.now() + timedelta(seconds=2))
    at = deliveries_recovery_at()
    assert at <= timezone.now() + timedelta(seconds=10)


def waiting_task_row(path, args_kwargs):
    """A task row as the database backend holds it until a worker takes it."""
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.create(
        task_path=path, args_kwargs=args_kwargs, backend_name="default"
    )


def test_waiting_delivery_tasks_with_nothing_due_are_closed_and_the_rest_left(
    project, link
):
    from notifications.services.recovery import task_runs_close_done

    sent, later, due = emit_uncommitted(project, 3)
    Delivery.objects.filter(pk=sent.pk).update(status=DeliveryStatus.SENT)
    Delivery.objects.filter(pk=later.pk).update(
        next_attempt_at=timezone.now() + timedelta(minutes=5)
    )
    deliver = tasks.deliver.module_path
    done = waiting_task_row(deliver, {"args": [[sent.pk, later.pk]], "kwargs": {}})
    by_keyword = waiting_task_row(
        deliver, {"args": [], "kwargs": {"delivery_ids": [sent.pk]}}
    )
    still_due = waiting_task_row(deliver, {"args": [[sent.pk, due.pk]], "kwargs": {}})
    unreadable = waiting_task_row(deliver, {"args": [["x"]], "kwargs": {}})
    recover = waiting_task_row(tasks.recover.module_path, {"args": [], "kwargs": {}})
    running = running_task_row(deliver, started=timezone.now())
    current = waiting_task_row(deliver, {"args": [[sent.pk]], "kwargs": {}})

    closed = task_runs_close_done(task_path=deliver, current_task=str(current.pk))

    assert closed == 2
    for row in (done, by_keyword):
        row.refresh_from_db()
        assert row.status == "SUCCESSFUL" and row.finished_at is not None
        assert row.return_value["sent_by"] == str(current.pk)
        assert row.return_value["sent"] == 0
    for row, status in (
        (still_due, "READY"),
        (unreadable, "READY"),
        (recover, "READY"),
        (running, "RUNNING"),
        (current, "READY"),
    ):
        row.refresh_from_db()
        assert row.status == status


def test_a_delivery_task_that_sent_others_deliveries_closes_their_tasks(
    sandbox, project, link, settings, django_capture_on_commit_callbacks
):
    """Tasks enqueued one per transaction: the first to run sends every due
    delivery of its tool and closes the other tasks, which then never run."""
    from django_tasks.base import TaskContext
    from django_tasks_db.models import DBTaskResult

    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    # Ids earlier tests gathered and rolled back (the outbox keeps them on the
    # connection until a commit) would ride along with the first task.
    transaction.get_connection().__dict__.pop("notifications_pending_ids", None)
    for i in range(4):
        with django_capture_on_commit_callbacks(execute=True):
            event_emit(
                project=project, kind=EventKind.SCAN_COMPLETED, payload={"new": i}
            )
    first, *others = DBTaskResult.objects.order_by("enqueued_at")
    assert len(others) == 3 and all(row.status == "READY" for row in others)

    # As db_worker runs it: with the row's own id in its context.
    result = tasks.deliver.call(
        TaskContext(task_result=first.task_result), *first.task_result.args
    )

    assert (result["sent"], result["tasks_closed"]) == (4, 3)
    assert [d.status for d in Delivery.objects.all()] == [DeliveryStatus.SENT] * 4
    assert set(DBTaskResult.objects.ready().values_list("pk", flat=True)) == {first.pk}
