"""Per-mailbox pacing against the sandbox's Exchange-like SMTP limit: a batch beyond
the mailbox's budget waits for free slots instead of running into "451 4.3.2"."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from integrations.providers.microsoft_azure_mail import MicrosoftAzureMailProvider
from integrations.providers.smtp import SmtpProvider
from integrations.services import provider_for
from notifications.models import Delivery, DeliveryStatus, EventKind
from notifications.services import event_emit
from notifications.services.pacing import (
    mailbox_budget,
    mailbox_slot_settle,
    mailbox_slot_take,
)
from tests.notifications.conftest import settle

pytestmark = pytest.mark.django_db

BUDGET = 3
WINDOW = 1.0  # seconds: Exchange's minute, shortened for the test


@pytest.fixture
def exchange_limit(sandbox, settings):
    """The sandbox refuses a mailbox's 4th SMTP message per second with 4.3.2, and
    the product paces each mailbox to 3 messages per second."""
    sandbox.control(
        "PUT",
        "/_sandbox/throttling",
        {
            "enabled": True,
            "smtp_messages_per_minute": BUDGET,
            "smtp_window_seconds": WINDOW,
        },
    )
    settings.NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE = BUDGET
    settings.NOTIFICATIONS_PACING_WINDOW_SECONDS = WINDOW
    return sandbox


def emit(project, count, capture):
    with capture(execute=True):
        for i in range(count):
            event_emit(
                project=project, kind=EventKind.SCAN_COMPLETED, payload={"new": i}
            )
    return list(Delivery.objects.order_by("pk"))


def test_batch_beyond_the_mailbox_budget_waits_and_all_are_delivered_without_4_3_2(
    exchange_limit, project, smtp_link, django_capture_on_commit_callbacks
):
    started = time.monotonic()
    emitted_at = timezone.now()
    emit(project, 8, django_capture_on_commit_callbacks)

    # The task sent the budget's worth; the rest were not attempted but deferred
    # to when the window frees a slot.
    rows = list(Delivery.objects.order_by("pk"))
    assert [d.status for d in rows].count(DeliveryStatus.SENT) == BUDGET
    waiting = [d for d in rows if d.status == DeliveryStatus.PENDING]
    assert len(waiting) == 8 - BUDGET
    assert all(d.attempts == 0 and d.error_code == "" for d in waiting)
    free_at = emitted_at + timedelta(seconds=WINDOW)
    assert all(d.next_attempt_at >= free_at for d in waiting)

    final = settle(timeout=30)
    assert [d.status for d in final] == [DeliveryStatus.SENT] * 8
    # Never refused: one attempt each, no throttling error on any of them.
    assert [(d.attempts, d.error_code) for d in final] == [(1, "")] * 8
    messages = exchange_limit.messages()
    assert {m["message_id"] for m in messages} == {
        f"<delivery-{d.uuid}@appsec.example.test>" for d in final
    }
    assert exchange_limit.counters()["smtp_messages"] == 8
    # 8 messages at 3 per window span at least two more windows.
    assert time.monotonic() - started >= 2 * WINDOW


def test_without_pacing_the_same_batch_runs_into_4_3_2(
    exchange_limit, project, smtp_link, settings, django_capture_on_commit_callbacks
):
    # The control experiment: the sandbox's limit is real.
    settings.NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE = 0
    rows = emit(project, 5, django_capture_on_commit_callbacks)
    refused = Delivery.objects.get(pk=rows[BUDGET].pk)
    assert refused.status == DeliveryStatus.PENDING
    assert refused.attempts == 1
    assert refused.error_code == "throttled"
    assert "4.3.2" in refused.request_id


def test_budget_is_shared_by_every_worker_and_frees_with_the_window(
    graph_tool, settings
):
    settings.NOTIFICATIONS_PACING_WINDOW_SECONDS = 60
    take = dict(integration_id=graph_tool.pk, mailbox="Sender@Contoso.test", budget=2)
    first = mailbox_slot_take(**take)
    second = mailbox_slot_take(**take)  # another worker: same row in the database
    assert first.taken and second.taken
    refused = mailbox_slot_take(**take)
    assert not refused.taken
    assert refused.free_at.timestamp() == pytest.approx(first.stamp + 60, abs=0.01)
    # Counted from the server's answer, the slot frees later.
    time.sleep(0.05)
    mailbox_slot_settle(slot=first)
    later = mailbox_slot_take(**take)
    assert later.free_at > refused.free_at
    # Another mailbox has its own budget.
    assert mailbox_slot_take(**{**take, "mailbox": "other@contoso.test"}).taken
    settings.NOTIFICATIONS_PACING_WINDOW_SECONDS = 0.05
    time.sleep(0.1)
    assert mailbox_slot_take(**take).taken


def test_exchange_smtp_is_paced_at_30_a_minute_and_graph_is_not(
    smtp_link, graph_tool, settings
):
    assert mailbox_budget(provider_for(smtp_link.integration)) == 30
    assert mailbox_budget(provider_for(graph_tool)) is None
    delegated_api = SmtpProvider(
        config={"auth_type": "oauth_delegated", "communication_type": "api"}, secrets={}
    )
    assert mailbox_budget(delegated_api) is None  # Graph /me/sendMail
    settings.NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE = 10
    assert mailbox_budget(MicrosoftAzureMailProvider(config={}, secrets={})) == 10
    settings.NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE = 0
    assert mailbox_budget(provider_for(smtp_link.integration)) is None
