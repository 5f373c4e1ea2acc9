"""Sending deliveries against the sandbox with faults injected: every delivery ends
sent or failed with a reason, none lost, none doubled (one Message-ID each)."""

import time
from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations.models import IntegrationState
from integrations.services import integration_deactivate, provider_for
from notifications.emails import email_for
from notifications.models import Delivery, DeliveryStatus, EventKind
from notifications.services import deliveries_send, delivery_resend, event_emit
from notifications.services.delivery import deliveries_claim, retry_delay
from notifications.services.events import delivery_create
from tests.notifications.conftest import settle

pytestmark = pytest.mark.django_db


def emit_scans_completed(project, count, capture):
    """`count` SCAN_COMPLETED events, committed; the immediate task sends at once."""
    with capture(execute=True):
        for i in range(count):
            event_emit(
                project=project,
                kind=EventKind.SCAN_COMPLETED,
                payload={
                    "scan_id": None,
                    "new": i,
                    "seen_again": 0,
                    "resolved": 0,
                    "reopened": 0,
                    "counts": {"high": i},
                },
            )
    return list(Delivery.objects.order_by("pk"))


def message_ids(deliveries):
    return {f"<delivery-{d.uuid}@appsec.example.test>" for d in deliveries}


def assert_each_sent_once_by_message_id(sandbox, deliveries):
    messages = sandbox.messages()
    assert {m["message_id"] for m in messages} == message_ids(deliveries)


def test_throttled_delivery_waits_for_retry_after_then_sends(
    sandbox, project, link, settings, django_capture_on_commit_callbacks
):
    # Longer than the task waits itself (tests/.../test_throttling.py has that).
    settings.NOTIFICATIONS_INLINE_RETRY_AFTER_SECONDS = 0.5
    sandbox.add_fault(target="graph", status=429, retry_after="0.6", count=1)
    started = timezone.now()
    deliveries = emit_scans_completed(project, 5, django_capture_on_commit_callbacks)

    first = Delivery.objects.get(pk=deliveries[0].pk)
    assert first.status == DeliveryStatus.PENDING
    assert first.error_code == "throttled"
    assert first.next_attempt_at >= started + timedelta(seconds=0.6)
    # The tool's other deliveries waited too instead of hammering a throttled API.
    assert sandbox.messages() == []
    assert deliveries_send().processed == 0  # nothing is due yet
    assert sandbox.messages() == []

    time.sleep(0.7)
    final = settle()
    assert [d.status for d in final] == [DeliveryStatus.SENT] * 5
    assert_each_sent_once_by_message_id(sandbox, final)
    assert len(sandbox.messages()) == 5


def test_service_unavailable_is_retried_with_backoff(
    sandbox, project, link, django_capture_on_commit_callbacks
):
    sandbox.add_fault(target="graph", status=503, count=2)
    emit_scans_completed(project, 1, django_capture_on_commit_callbacks)
    (delivery,) = settle()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.attempts == 3
    assert_each_sent_once_by_message_id(sandbox, [delivery])
    assert len(sandbox.messages()) == 1


def test_dropped_connection_is_retried_on_a_new_connection(
    sandbox, project, link, django_capture_on_commit_callbacks
):
    sandbox.add_fault(target="graph", drop=True, count=1)
    deliveries = emit_scans_completed(project, 3, django_capture_on_commit_callbacks)
    final = settle()
    assert [d.status for d in final] == [DeliveryStatus.SENT] * 3
    assert Delivery.objects.get(pk=deliveries[0].pk).attempts == 2
    assert_each_sent_once_by_message_id(sandbox, final)
    assert len(sandbox.messages()) == 3


def test_gateway_timeout_after_accept_resends_the_same_message_id(
    sandbox, project, link, django_capture_on_commit_callbacks
):
    sandbox.add_fault(target="graph", accept_then_status=504, count=1)
    emit_scans_completed(project, 2, django_capture_on_commit_callbacks)
    final = settle()
    assert [d.status for d in final] == [DeliveryStatus.SENT] * 2
    messages = sandbox.messages()
    # Graph stored the first attempt before answering 504: the retry is the same
    # message (same Message-ID), which mail clients show once.
    assert len(messages) == 3
    assert_each_sent_once_by_message_id(sandbox, final)
    first_id = f"<delivery-{final[0].uuid}@appsec.example.test>"
    assert [m["message_id"] for m in messages].count(first_id) == 2


def grant_mail_read_basic(sandbox):
    """Give the seeded Graph app the optional Mail.ReadBasic.All permission."""
    from sandbox.seed import APPLICATION_PERMISSIONS

    seed = sandbox.seed
    sandbox.control(
        "PATCH",
        f"/_sandbox/tenants/{seed['tenant_id']}/apps/{seed['client_id']}",
        {"application_permissions": [*APPLICATION_PERMISSIONS, "Mail.ReadBasic.All"]},
    )


def test_a_504_after_accept_is_looked_up_in_sent_items_and_not_sent_twice(
    sandbox, project, link, django_capture_on_commit_callbacks
):
    grant_mail_read_basic(sandbox)
    sandbox.add_fault(target="graph", accept_then_status=504, count=1)
    emit_scans_completed(project, 2, django_capture_on_commit_callbacks)
    final = settle()

    assert [d.status for d in final] == [DeliveryStatus.SENT] * 2
    # Graph kept the first attempt: found in Sent Items, so no second copy.
    assert len(sandbox.messages()) == 2
    assert_each_sent_once_by_message_id(sandbox, final)
    assert final[0].request_id == "found in the sender's Sent Items"
    assert not any(d.resent_unconfirmed for d in final)


def test_a_resend_the_lookup_did_not_find_is_still_marked(
    sandbox, project, link, django_capture_on_commit_callbacks
):
    # The connection drops before Graph takes the message: the lookup finds
    # nothing, so it is sent again; Exchange files Sent Items a little after it
    # accepts, so "not found" cannot rule out a double: the log says so.
    grant_mail_read_basic(sandbox)
    sandbox.add_fault(target="graph", drop=True, count=1)
    emit_scans_completed(project, 1, django_capture_on_commit_callbacks)
    (delivery,) = settle()

    assert delivery.status == DeliveryStatus.SENT
    assert len(sandbox.messages()) == 1
    assert delivery.resent_unconfirmed


def test_a_message_the_transport_sent_twice_is_marked(
    sandbox, project, link, django_capture_on_commit_callbacks
):
    # The keep-alive connection of the first message drops before Graph answers
    # the second; libcurl sends it again by itself: it may have gone twice (here
    # the sandbox reset before taking it), and the log says so.
    (first,) = emit_scans_completed(project, 1, django_capture_on_commit_callbacks)
    sandbox.add_fault(target="graph", reset=True, count=1)
    emit_scans_completed(project, 1, django_capture_on_commit_callbacks)
    first, second = settle()

    assert (first.status, second.status) == (DeliveryStatus.SENT, DeliveryStatus.SENT)
    assert not first.resent_unconfirmed
    assert second.resent_unconfirmed and second.attempts == 1
    assert_each_sent_once_by_message_id(sandbox, [first, second])


def test_a_lost_answer_is_still_looked_up_after_a_throttled_lookup(
    sandbox, project, link, django_capture_on_commit_callbacks, settings
):
    settings.NOTIFICATIONS_INLINE_RETRY_AFTER_SECONDS = 0.1
    grant_mail_read_basic(sandbox)
    sandbox.add_fault(target="graph", accept_then_status=504, count=1)
    # The first look in Sent Items is throttled: the delivery waits, then looks again.
    sandbox.add_fault(
        target="graph",
        graph_operation="listMessages",
        status=429,
        retry_after="0.3",
        count=1,
    )
    emit_scans_completed(project, 1, django_capture_on_commit_callbacks)
    (delivery,) = settle()

    assert delivery.status == DeliveryStatus.SENT
    assert delivery.request_id == "found in the sender's Sent Items"
    assert len(sandbox.messages()) == 1
    assert (delivery.answer_lost, delivery.resent_unconfirmed) == (False, False)


def test_a_lost_answer_is_looked_up_in_the_mailbox_it_was_sent_from(
    sandbox, project, link, django_capture_on_commit_callbacks
):
    grant_mail_read_basic(sandbox)
    sandbox.add_fault(target="graph", accept_then_status=504, count=1)
    emit_scans_completed(project, 1, django_capture_on_commit_callbacks)
    # An admin changes the From address before the retry (to one with no mailbox:
    # looking there, or sending from it, would fail).
    integration = link.integration
    integration.config = {**integration.config, "sender": "nobody@contoso.test"}
    integration.save(update_fields=["config"])

    (delivery,) = settle()

    assert delivery.status == DeliveryStatus.SENT
    assert delivery.request_id == "found in the sender's Sent Items"
    assert len(sandbox.messages()) == 1


def test_without_the_lookup_permission_a_resend_is_marked_on_the_delivery_log(
    sandbox, project, link, django_capture_on_commit_callbacks, client, owner
):
    sandbox.add_fault(target="graph", accept_then_status=504, count=1)
    emit_scans_completed(project, 2, django_capture_on_commit_callbacks)
    final = settle()

    assert [d.status for d in final] == [DeliveryStatus.SENT] * 2
    assert len(sandbox.messages()) == 3  # the first one twice: counted and shown
    assert [d.resent_unconfirmed for d in final] == [True, False]
    client.force_login(owner)
    page = client.get(f"/projects/{project.slug}/deliveries/").content.decode()
    assert page.count("the recipients may have it twice") == 1


def sent_by_a_dead_worker(project, capture) -> Delivery:
    """One scan-completed delivery that a worker claimed, sent, and died before
    recording (its lease already run out)."""
    with capture(execute=False):
        event_emit(
            project=project,
            kind=EventKind.SCAN_COMPLETED,
            payload={"scan_id": None, "new": 1, "seen_again": 0, "resolved": 0},
        )
    (claimed,) = deliveries_claim(worker="dead-worker")
    with provider_for(claimed.integration).open() as connection:
        connection.send(email_for(claimed))
    Delivery.objects.filter(pk=claimed.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    return claimed


@pytest.mark.parametrize("tool", ["graph", "smtp"])
@pytest.mark.parametrize("can_look", [True, False])
def test_a_dead_workers_delivery_is_looked_up_before_it_is_sent_again(
    sandbox, project, django_capture_on_commit_callbacks, request, tool, can_look
):
    """Graph looks in Sent Items with Mail.ReadBasic.All; the SMTP tool through its
    Email box (IMAP), since Exchange files what it submits there too."""
    if tool == "graph":
        request.getfixturevalue("link")
        if can_look:
            grant_mail_read_basic(sandbox)
    else:
        smtp_tool = request.getfixturevalue("smtp_link").integration
        smtp_tool.config = {**smtp_tool.config, "email_box": can_look}
        smtp_tool.save(update_fields=["config"])
    claimed = sent_by_a_dead_worker(project, django_capture_on_commit_callbacks)

    deliveries_send()

    delivery = Delivery.objects.get(pk=claimed.pk)
    assert delivery.status == DeliveryStatus.SENT
    assert len(sandbox.messages()) == (1 if can_look else 2)
    assert delivery.resent_unconfirmed is not can_look
    if can_look:
        assert delivery.request_id == "found in the sender's Sent Items"
    if tool == "smtp":
        assert sandbox.counters()["imap_logins"] == (1 if can_look else 0)


def test_a_dead_workers_resend_after_a_from_change_is_marked(
    sandbox, project, link, django_capture_on_commit_callbacks
):
    # The killed worker recorded nothing, not even the mailbox it sent from; the
    # From changes before recovery, so the lookup (in the new mailbox) cannot
    # vouch for the old one: the resend is shown as a possible double.
    grant_mail_read_basic(sandbox)
    claimed = sent_by_a_dead_worker(project, django_capture_on_commit_callbacks)
    integration = link.integration
    other = sandbox.seed["user"]  # a mailbox of the tenant that sent nothing
    integration.config = {**integration.config, "sender": other}
    integration.save(update_fields=["config"])

    deliveries_send()

    delivery = Delivery.objects.get(pk=claimed.pk)
    assert delivery.status == DeliveryStatus.SENT
    assert len(sandbox.messages()) == 2
    assert delivery.resent_unconfirmed


def test_a_dead_workers_message_is_looked_up_in_the_mailbox_it_went_from(
    sandbox, project, link, django_capture_on_commit_callbacks
):
    from notifications.services.delivery import _Run

    grant_mail_read_basic(sandbox)
    with django_capture_on_commit_callbacks(execute=False):
        event_emit(
            project=project,
            kind=EventKind.SCAN_COMPLETED,
            payload={"scan_id": None, "new": 1, "seen_again": 0, "resolved": 0},
        )
    # A run claims it (recording the mailbox it sends from), sends it, and dies
    # before recording the answer; then an admin changes the From.
    run = _Run()
    (claimed,) = deliveries_claim(worker=run.worker)
    run.record_senders([claimed])
    provider_for(claimed.integration).open().send(email_for(claimed))
    Delivery.objects.filter(pk=claimed.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    integration = link.integration
    integration.config = {**integration.config, "sender": sandbox.seed["user"]}
    integration.save(update_fields=["config"])

    deliveries_send()

    delivery = Delivery.objects.get(pk=claimed.pk)
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.request_id == "found in the sender's Sent Items"
    assert len(sandbox.messages()) == 1
    assert not delivery.resent_unconfirmed


def test_the_claim_writes_the_senders_it_knows_and_keeps_a_lost_answers_mailbox(
    project, link, django_capture_on_commit_callbacks
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from notifications.services.delivery import _Claim, _Run

    with django_capture_on_commit_callbacks(execute=False):
        for i in range(3):
            event_emit(
                project=project,
                kind=EventKind.SCAN_COMPLETED,
                payload={"scan_id": None, "new": i, "seen_again": 0, "resolved": 0},
            )
    plain, lost, timed_out = Delivery.objects.order_by("pk")
    Delivery.objects.filter(pk=lost.pk).update(
        answer_lost=True, answer_lost_from="before@contoso.example"
    )
    Delivery.objects.filter(pk=timed_out.pk).update(
        error_code="timeout", answer_lost_from="earlier@contoso.example"
    )
    run = _Run()
    sender = run.pacing(link.integration)[0]  # the tool's, looked up once per run

    with CaptureQueriesContext(connection) as queries:
        batch, _emails = run.claim_batch(
            _Claim(own=None, tools=None, limit=10), [], run.senders()
        )

    assert len(batch) == 3
    # In the claim's own UPDATE: no second one to record the senders.
    updates = [q["sql"] for q in queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1, updates
    assert dict(Delivery.objects.values_list("pk", "answer_lost_from")) == {
        plain.pk: sender,
        lost.pk: "before@contoso.example",
        timed_out.pk: "earlier@contoso.example",
    }


def test_mixed_faults_lose_nothing_and_double_nothing(
    sandbox, project, link, django_capture_on_commit_callbacks, settings
):
    settings.NOTIFICATIONS_MAX_ATTEMPTS = 12
    sandbox.add_fault(target="graph", status=429, retry_after="0.2", count=2)
    sandbox.add_fault(target="graph", status=503, probability=0.2, count=5)
    sandbox.add_fault(target="graph", drop=True, probability=0.2, count=5)
    emit_scans_completed(project, 20, django_capture_on_commit_callbacks)
    final = settle(timeout=60)
    assert len(final) == 20
    assert {d.status for d in final} == {DeliveryStatus.SENT}
    assert_each_sent_once_by_message_id(sandbox, final)
    assert len(sandbox.messages()) == 20  # none of these faults stores a message


def test_retries_stop_after_the_last_attempt_with_a_reason(
    sandbox, project, link, django_capture_on_commit_callbacks, settings
):
    settings.NOTIFICATIONS_MAX_ATTEMPTS = 3
    sandbox.add_fault(target="graph", status=503, count=10)
    emit_scans_completed(project, 1, django_capture_on_commit_callbacks)
    (delivery,) = settle()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == 3
    assert delivery.error_code == "service_unavailable"
    assert delivery.request_id  # Graph's request-id, for support


def test_permission_error_marks_the_tool_and_the_deliveries_wait(
    sandbox, project, link, graph_tool, django_capture_on_commit_callbacks
):
    # Issue 14: the tool is broken, not the message: the delivery waits for it
    # (tests/notifications/test_incidents.py follows it to the end).
    sandbox.add_fault(
        target="graph", status=403, error_code="ErrorAccessDenied", count=1
    )
    sandbox.add_fault(
        target="graph", status=403, error_code="ErrorAccessDenied", count=1
    )
    deliveries = emit_scans_completed(project, 3, django_capture_on_commit_callbacks)
    first = Delivery.objects.get(pk=deliveries[0].pk)
    assert first.status == DeliveryStatus.PENDING
    assert first.attempts == 0
    assert first.error_code == "tool_needs_attention"
    graph_tool.refresh_from_db()
    assert graph_tool.state == IntegrationState.NEEDS_ATTENTION
    assert graph_tool.attention_code == "permission_missing"
    # The others were not tried against a tool that just failed for good.
    assert Delivery.objects.filter(status=DeliveryStatus.PENDING).count() == 3
    assert Delivery.objects.get(pk=deliveries[1].pk).attempts == 0


def test_resend_sends_a_failed_delivery_again_as_the_same_message(
    sandbox, project, link, django_capture_on_commit_callbacks, settings
):
    settings.NOTIFICATIONS_MAX_ATTEMPTS = 1
    sandbox.add_fault(target="graph", status=503, count=1)
    (delivery,) = emit_scans_completed(project, 1, django_capture_on_commit_callbacks)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    with django_capture_on_commit_callbacks(execute=True):
        delivery_resend(delivery=delivery)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert_each_sent_once_by_message_id(sandbox, [delivery])


def test_same_event_and_link_never_yield_two_deliveries(project, link):
    with transaction.atomic():
        event = event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
        assert Delivery.objects.count() == 1
        again = delivery_create(
            event=event, link=link, dedupe_key=f"event:{event.pk}:link:{link.pk}"
        )
    assert again is None
    assert Delivery.objects.count() == 1
    delivery = Delivery.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        Delivery.objects.create(
            dedupe_key=delivery.dedupe_key,
            project=project,
            event=event,
            link=link,
            integration=link.integration,
            recipients=["a@example.com"],
            next_attempt_at=timezone.now(),
        )


def test_rolled_back_change_sends_nothing(
    sandbox, project, link, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
            raise RuntimeError("the import failed")
    assert callbacks == []
    assert Delivery.objects.count() == 0
    assert sandbox.messages() == []


def test_deactivated_tool_makes_links_inactive_and_sends_nothing(
    sandbox, project, link, graph_tool, django_capture_on_commit_callbacks
):
    # a delivery written before the admin deactivated the tool
    with transaction.atomic():
        event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
    integration_deactivate(provider_key=graph_tool.provider, actor=None)
    emit_scans_completed(project, 1, django_capture_on_commit_callbacks)
    (delivery,) = settle()
    assert delivery.status == DeliveryStatus.SKIPPED
    assert delivery.error_code == "tool_inactive"
    assert sandbox.messages() == []


def test_expired_lease_is_claimed_again_and_live_one_is_not(project, link):
    with transaction.atomic():
        event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
    (claimed,) = deliveries_claim(worker="dead-worker")
    assert claimed.status == DeliveryStatus.SENDING
    assert deliveries_claim(worker="other") == []  # the lease is still running
    Delivery.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    (again,) = deliveries_claim(worker="other")
    assert again.claimed_by == "other"
    assert again.attempts == 2


def test_retry_delay_honours_retry_after_and_backs_off_exponentially(settings):
    settings.NOTIFICATIONS_RETRY_BASE_SECONDS = 10
    settings.NOTIFICATIONS_RETRY_MAX_SECONDS = 3600
    assert 30 <= retry_delay(attempts=1, retry_after=30) <= 31
    delays = [retry_delay(attempts=n) for n in (1, 2, 3, 4)]
    for n, delay in enumerate(delays, start=1):
        ceiling = 10 * 2 ** (n - 1)
        assert ceiling / 2 <= delay <= ceiling
    assert retry_delay(attempts=30) <= 3600


def test_retry_delays_are_jittered_within_their_bounds(settings):
    """Between half the backoff and the backoff, and not the same twice: deliveries
    that failed together do not come back together."""
    settings.NOTIFICATIONS_RETRY_BASE_SECONDS = 10
    settings.NOTIFICATIONS_RETRY_MAX_SECONDS = 3600
    for attempts in (1, 2, 3, 4, 30):
        ceiling = min(3600, 10 * 2 ** (attempts - 1))
        delays = [retry_delay(attempts=attempts) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays), delays
        assert len(set(delays)) > 1
        assert max(delays) - min(delays) > ceiling / 20  # spread, not one value
    after = [retry_delay(attempts=1, retry_after=30) for _ in range(50)]
    assert all(30 <= delay <= 31 for delay in after), after
    assert len(set(after)) > 1


def test_retry_delay_survives_an_absurd_attempt_count(settings):
    settings.NOTIFICATIONS_RETRY_BASE_SECONDS = 10
    settings.NOTIFICATIONS_RETRY_MAX_SECONDS = 3600
    assert 1800 <= retry_delay(attempts=10_000) <= 3600


@pytest.mark.parametrize("retry_after", [3601.0, 1e9, float("inf"), float("nan")])
def test_retry_after_is_capped_by_a_setting(settings, retry_after):
    settings.NOTIFICATIONS_RETRY_BASE_SECONDS = 10
    settings.NOTIFICATIONS_RETRY_AFTER_MAX_SECONDS = 3600
    assert 3600 <= retry_delay(attempts=1, retry_after=retry_after) <= 3601
    settings.NOTIFICATIONS_RETRY_AFTER_MAX_SECONDS = 60
    assert 60 <= retry_delay(attempts=1, retry_after=retry_after) <= 61


def test_retry_after_cap_defaults_to_an_hour(settings):
    assert settings.NOTIFICATIONS_RETRY_AFTER_MAX_SECONDS == 3600
    settings.NOTIFICATIONS_RETRY_BASE_SECONDS = 10
    assert 3600 <= retry_delay(attempts=1, retry_after=1e9) <= 3601


@pytest.mark.parametrize(
    "retry_after", ["99999999", "1e308", "inf", "Fri, 31 Dec 9999 23:59:59 GMT"]
)
def test_a_hostile_retry_after_parks_a_delivery_no_longer_than_the_cap(
    sandbox, project, link, settings, django_capture_on_commit_callbacks, retry_after
):
    settings.NOTIFICATIONS_RETRY_AFTER_MAX_SECONDS = 5
    sandbox.add_fault(target="graph", status=429, retry_after=retry_after, count=1)
    started = timezone.now()
    (delivery,) = emit_scans_completed(project, 1, django_capture_on_commit_callbacks)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.error_code == "throttled"
    assert started + timedelta(seconds=5) <= delivery.next_attempt_at
    assert delivery.next_attempt_at <= timezone.now() + timedelta(seconds=5.5)


def test_graph_messages_are_rendered_html_only_and_smtp_ones_with_both_parts(
    sandbox, project, link, smtp_link, monkeypatch, django_capture_on_commit_callbacks
):
    # sendMail takes one body (the HTML one): rendering the text part for it was a
    # third of the rendering thrown away. SMTP sends both parts.
    from django.template.backends.jinja2 import Template

    rendered = []
    render = Template.render

    def spy(self, *args, **kwargs):
        rendered.append(self.template.name)
        return render(self, *args, **kwargs)

    monkeypatch.setattr(Template, "render", spy)
    deliveries = emit_scans_completed(project, 1, django_capture_on_commit_callbacks)
    assert len(deliveries) == 2  # one through each tool
    assert {d.status for d in settle()} == {DeliveryStatus.SENT}

    assert sorted(rendered) == [
        "notifications/email/message.html",
        "notifications/email/message.html",
        "notifications/email/message.txt",
    ]
    by_tool = {
        d.integration.provider: m
        for d in deliveries
        for m in sandbox.messages()
        if m["message_id"] == f"<delivery-{d.uuid}@appsec.example.test>"
    }
    assert by_tool["microsoft_azure_mail"]["html"]
    assert by_tool["microsoft_azure_mail"]["text"] is None
    assert by_tool["smtp"]["html"] and "scan" in by_tool["smtp"]["text"].lower()
