"""Recovery without a sweeper process: every delivery task books a `recover` task for
when its lease runs out, and that task finishes what a dead worker left behind.
tests/notifications/test_worker.py drills it with a real db_worker killed mid-batch."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone
from django_tasks import task_backends

from notifications import tasks
from notifications.models import Delivery, DeliveryStatus, EventKind, RecoverySchedule
from notifications.services import event_emit
from notifications.services.delivery import deliveries_claim
from notifications.services.recovery import deliveries_recovery_at, recovery_book

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
    tasks.deliver.call([deliveries[0].pk])
    tasks.deliver.call([deliveries[1].pk])
    (booked,) = recoveries(queued)  # one booking for both tasks
    assert booked.task.run_after >= started + timedelta(seconds=LEASE)
    assert booked.task.run_after <= timezone.now() + timedelta(seconds=LEASE + 1)
    assert [d.status for d in Delivery.objects.all()] == [DeliveryStatus.SENT] * 2

    # When it runs and nothing is open, the chain stops.
    RecoverySchedule.objects.update(next_run_at=timezone.now() - timedelta(seconds=1))
    tasks.recover.call()
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
    result = tasks.recover.call()
    assert result["sent"] == 6
    final = list(Delivery.objects.order_by("pk"))
    assert [d.status for d in final] == [DeliveryStatus.SENT] * 6
    assert {m["message_id"] for m in sandbox.messages()} == {
        f"<delivery-{d.uuid}@appsec.example.test>" for d in final
    }
    assert recoveries(queued) == []  # nothing left open: no further look booked


def test_recover_books_the_next_look_while_a_live_worker_holds_rows(
    sandbox, project, link, queued
):
    emit_uncommitted(project, 2)
    deliveries_claim(worker="live-worker", limit=1)
    lease_end = Delivery.objects.get(status=DeliveryStatus.SENDING).lease_expires_at
    tasks.recover.call()
    # The unclaimed one went out; the claimed one is left to its worker, and looked
    # at again when that worker's lease runs out.
    assert Delivery.objects.filter(status=DeliveryStatus.SENT).count() == 1
    (booked,) = recoveries(queued)
    assert lease_end <= booked.task.run_after <= lease_end + timedelta(seconds=1)


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
