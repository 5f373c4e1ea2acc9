"""Delivery through the SMTP tool (Exchange Online SMTP, OAuth 2.0 application)."""

import pytest

from notifications.models import Delivery, DeliveryStatus, EventKind
from notifications.services import event_emit
from projects.models import ScanSource
from projects.services import scan_import
from tests.notifications.conftest import settle
from tests.projects.sarif_documents import sarif_bytes, sarif_result

pytestmark = pytest.mark.django_db


def emit_scans(project, capture, count=3):
    """`count` scan-completed events, one transaction; their task runs at once."""
    with capture(execute=True):
        for _ in range(count):
            event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})


def test_smtp_email_has_text_and_html_parts_and_our_message_id(
    sandbox, project, smtp_link, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        scan_import(
            project=project,
            sarif=sarif_bytes([sarif_result("B602", uri="<b>app</b>.py", line=7)]),
            source=ScanSource.API,
        )
    deliveries = list(Delivery.objects.order_by("pk"))
    assert [d.status for d in deliveries] == [DeliveryStatus.SENT] * 2
    assert all(d.request_id for d in deliveries)  # the server's reply to DATA
    messages = sandbox.messages()
    assert {m["message_id"] for m in messages} == {
        f"<delivery-{d.uuid}@appsec.example.test>" for d in deliveries
    }
    new = next(m for m in messages if "new vulnerabilit" in m["subject"])
    assert new["subject"] == "[High] 1 new vulnerability in Shop"
    assert "<b>app</b>.py:7" in new["text"]
    assert "&lt;b&gt;app&lt;/b&gt;.py:7" in new["html"]
    # one SMTP session, one token, for both messages of the scan
    counters = sandbox.counters()
    assert counters["smtp_sessions"] == 1
    assert counters["token_requests"]["client_credentials"] == 1


def test_smtp_451_4_3_2_is_retried(
    sandbox, project, smtp_link, django_capture_on_commit_callbacks
):
    sandbox.add_fault(
        target="smtp",
        smtp_reply="451 4.3.2 Message submission rate for this client has exceeded the configured limit",
        smtp_stage="data",
        count=1,
    )
    emit_scans(project, django_capture_on_commit_callbacks)
    first = Delivery.objects.order_by("pk").first()
    assert first.status == DeliveryStatus.PENDING
    assert "4.3.2" in first.request_id or first.error_code
    final = settle()
    assert [d.status for d in final] == [DeliveryStatus.SENT] * 3
    messages = sandbox.messages()
    assert len(messages) == 3
    assert {m["message_id"] for m in messages} == {
        f"<delivery-{d.uuid}@appsec.example.test>" for d in final
    }


def test_a_session_that_drops_mid_run_is_reopened_and_the_message_sent_at_once(
    sandbox, project, smtp_link, django_capture_on_commit_callbacks
):
    """When the server drops the session between messages, the connection opens
    a new one and sends the message again at once, in the same attempt, instead of
    leaving it for a retry."""
    sandbox.add_fault(target="smtp", smtp_stage="mail", drop=True, count=1)
    emit_scans(project, django_capture_on_commit_callbacks)

    deliveries = list(Delivery.objects.order_by("pk"))
    assert [d.status for d in deliveries] == [DeliveryStatus.SENT] * 3
    assert [d.attempts for d in deliveries] == [1, 1, 1]
    assert len(sandbox.messages()) == 3
    assert sandbox.counters()["smtp_sessions"] == 2


def test_messages_go_out_in_order_one_at_a_time_on_one_session(
    sandbox, project, smtp_link, django_capture_on_commit_callbacks
):
    """One submission in flight at a time (Exchange Online SMTP allows one per
    session): the sandbox receives the batch in the order it was claimed."""
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(6):
            event_emit(
                project=project,
                kind=EventKind.SCAN_COMPLETED,
                payload={"new": i},
            )

    deliveries = list(Delivery.objects.order_by("pk"))
    assert [d.status for d in deliveries] == [DeliveryStatus.SENT] * 6
    assert [m["message_id"] for m in sandbox.messages()] == [
        f"<delivery-{d.uuid}@appsec.example.test>" for d in deliveries
    ]
    assert sandbox.counters()["smtp_sessions"] == 1


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-by-one"])
def test_the_next_message_is_prepared_while_the_server_takes_the_last_one(
    sandbox,
    project,
    smtp_link,
    monkeypatch,
    django_capture_on_commit_callbacks,
    pipelining,
):
    """The server's reply to a message's content is read when the run comes back
    for the session, after it got the next message ready; each reply is still
    recorded on its own delivery, a refusal included. With PIPELINING or not."""
    from integrations.providers.smtp import SmtpConnection
    from integrations.providers.smtp_client import SmtpSession
    from tests.sandbox.m365 import Control, trusted_session

    with trusted_session(sandbox.ca_path) as http:
        Control(sandbox, http)("PUT", "smtp", {"pipelining": pipelining})

    calls = []
    prepare, final_reply = SmtpConnection.prepare, SmtpSession._final_reply

    def spy_prepare(self, email):
        calls.append(("prepare", email.message_id))
        return prepare(self, email)

    def spy_reply(self):
        calls.append(("reply", None))
        return final_reply(self)

    monkeypatch.setattr(SmtpConnection, "prepare", spy_prepare)
    monkeypatch.setattr(SmtpSession, "_final_reply", spy_reply)
    sandbox.add_fault(
        target="smtp",
        smtp_stage="data",
        smtp_reply="550 5.7.1 Message rejected as spam by Content Filtering",
        count=1,
    )
    emit_scans(project, django_capture_on_commit_callbacks)

    first, *others = Delivery.objects.order_by("pk")
    assert [c[0] for c in calls] == [
        "prepare",
        "prepare",
        "reply",
        "prepare",
        "reply",
        "reply",
    ]
    assert [c[1] for c in calls if c[0] == "prepare"] == [
        f"<delivery-{d.uuid}@appsec.example.test>" for d in [first, *others]
    ]
    assert first.status == DeliveryStatus.FAILED
    assert "5.7.1" in first.request_id
    for delivery in others:
        assert delivery.status == DeliveryStatus.SENT
        # The reply to its own message: the server names the Message-ID.
        assert f"<delivery-{delivery.uuid}@" in delivery.request_id
    assert len(sandbox.messages()) == 2
    assert sandbox.counters()["smtp_sessions"] == 1


def test_a_session_dropped_before_its_reply_is_reopened_and_the_message_sent_at_once(
    sandbox, project, smtp_link, django_capture_on_commit_callbacks
):
    # The server hangs up after the content, before accepting it (no reply): the
    # message goes again on a new session, in the same attempt, once.
    sandbox.add_fault(target="smtp", smtp_stage="data", drop=True, count=1)
    emit_scans(project, django_capture_on_commit_callbacks)

    deliveries = list(Delivery.objects.order_by("pk"))
    assert [d.status for d in deliveries] == [DeliveryStatus.SENT] * 3
    assert [d.attempts for d in deliveries] == [1, 1, 1]
    assert sorted(m["message_id"] for m in sandbox.messages()) == sorted(
        f"<delivery-{d.uuid}@appsec.example.test>" for d in deliveries
    )
    assert sandbox.counters()["smtp_sessions"] == 2


def test_a_bug_preparing_the_next_message_keeps_the_last_ones_reply(
    sandbox, project, smtp_link, monkeypatch, django_capture_on_commit_callbacks
):
    # Building the second message fails (a bug) while the first one's reply is
    # still to be read: the session is dropped only after reading it, so the
    # first is recorded sent (not sent again) and the bug costs the second an
    # attempt.
    from integrations.providers.smtp import SmtpProvider

    mime_message = SmtpProvider.mime_message
    built = []

    def failing_second(self, email):
        built.append(email.message_id)
        if len(built) == 2:
            raise RuntimeError("a bug")
        return mime_message(self, email)

    monkeypatch.setattr(SmtpProvider, "mime_message", failing_second)
    emit_scans(project, django_capture_on_commit_callbacks)

    first, second, third = Delivery.objects.order_by("pk")
    assert (first.status, third.status) == (DeliveryStatus.SENT, DeliveryStatus.SENT)
    assert second.status == DeliveryStatus.PENDING
    assert second.attempts == 1
    ids = [m["message_id"] for m in sandbox.messages()]
    assert sorted(ids) == sorted(
        f"<delivery-{d.uuid}@appsec.example.test>" for d in (first, third)
    )
