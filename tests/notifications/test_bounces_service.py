"""Email box reading end to end against the sandbox: a notification to an address
that does not exist comes back as Exchange's non-delivery report in the sender
mailbox, the worker's read finds it, and the delivery log says Bounced with the
reason in words. Through Microsoft Graph (Microsoft Azure Mail, Mail.Read) and IMAP
(SMTP, OAuth 2.0 application)."""

import threading

import pytest
from django.db import connection

from integrations.models import Integration
from notifications.models import (
    BouncedRecipient,
    Delivery,
    DeliveryReport,
    DeliveryStatus,
    EventKind,
    MailboxReading,
    ReportKind,
)
from notifications.services import event_emit
from notifications.services.bounces import mailbox_read, mailboxes_read
from tests.notifications.conftest import settle
from tests.tools import activate_azure_mail, grant_application_permissions

GHOST = "ghost@contoso.onmicrosoft.com"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def reading_tool(sandbox):
    """Microsoft Azure Mail with its Email box on, allowed to read (Mail.Read)."""
    grant_application_permissions(sandbox, "Mail.Read")
    return activate_azure_mail(sandbox.seed, email_box=True)


def send_to(project, link, recipients):
    link.recipients = recipients
    link.save()
    event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
    deliveries = settle()
    assert deliveries, "nothing was queued"
    return deliveries[-1]


def wait_for_ndrs(sandbox, mailbox, count, timeout=20.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = sandbox.inbox(mailbox)
        if len(items) >= count:
            return items
        time.sleep(0.05)
    raise AssertionError(f"{count} messages never reached {mailbox}'s inbox")


def tool_link(project, tool):
    from notifications.models import ToolLink

    return ToolLink.objects.create(
        project=project, integration=tool, notify_scan_completed=True
    )


def test_a_notification_to_an_unknown_address_is_bounced_with_words(
    sandbox, project, reading_tool
):
    link = tool_link(project, reading_tool)
    delivery = send_to(project, link, [GHOST, sandbox.seed["recipient"]])
    assert delivery.status == DeliveryStatus.SENT
    wait_for_ndrs(sandbox, sandbox.seed["sender"], 1)

    summary = mailbox_read(integration=reading_tool)

    assert summary.error_code == ""
    assert summary.bounced == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.BOUNCED
    report = DeliveryReport.objects.get(delivery=delivery)
    assert (report.recipient, report.kind, report.status_code) == (
        GHOST,
        ReportKind.BOUNCED,
        "5.1.10",
    )
    assert "RecipientNotFound" in report.diagnostic
    bounced = BouncedRecipient.objects.get(link=link)
    assert (bounced.address, bounced.bounce_count, bounced.suppressed_at) == (
        GHOST,
        1,
        None,
    )

    # A second read finds nothing new and changes nothing.
    again = mailbox_read(integration=reading_tool)
    assert (again.messages, again.bounced) == (0, 0)
    assert DeliveryReport.objects.count() == 1
    assert BouncedRecipient.objects.get(link=link).bounce_count == 1


def test_delay_notice_is_a_warning_and_auto_replies_are_ignored(
    sandbox, project, reading_tool
):
    link = tool_link(project, reading_tool)
    recipient = sandbox.seed["recipient"]
    delivery = send_to(project, link, [recipient])
    message_id = f"<delivery-{delivery.uuid}@appsec.example.test>"
    mailbox = sandbox.seed["sender"]
    for kind in ("delay", "auto_reply", "oof"):
        sandbox.control(
            "POST",
            f"/mailboxes/{mailbox}/messages",
            json={
                "kind": kind,
                "original_message_id": message_id,
                "recipient": recipient,
            },
        )
    # A report about a message that is not ours is left alone.
    sandbox.control(
        "POST",
        f"/mailboxes/{mailbox}/messages",
        json={
            "kind": "ndr",
            "original_message_id": "<somebody-else@elsewhere.example>",
            "recipient": recipient,
        },
    )

    summary = mailbox_read(integration=reading_tool)

    assert summary.delayed == 1
    assert summary.bounced == 0
    assert summary.ignored_auto_replies == 2
    assert summary.unmatched == 1
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    report = DeliveryReport.objects.get(delivery=delivery)
    assert (report.kind, report.status_code) == (ReportKind.DELAYED, "4.4.7")
    assert not BouncedRecipient.objects.exists()


def test_an_address_is_suppressed_after_the_threshold_until_cleared(
    sandbox, project, reading_tool, settings
):
    settings.NOTIFICATIONS_BOUNCE_SUPPRESS_AFTER = 2
    link = tool_link(project, reading_tool)
    recipient = sandbox.seed["recipient"]
    for n in (1, 2):
        send_to(project, link, [GHOST, recipient])
        wait_for_ndrs(sandbox, sandbox.seed["sender"], n)
        mailbox_read(integration=reading_tool)
    bounced = BouncedRecipient.objects.get(link=link, address=GHOST)
    assert bounced.bounce_count == 2
    assert bounced.suppressed_at is not None

    # The next notification leaves the address out.
    delivery = send_to(project, link, [GHOST, recipient])
    assert delivery.recipients == [recipient]

    # Only the suppressed address: recorded as not sent, and why.
    link.recipients = [GHOST]
    link.save()
    event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
    last = Delivery.objects.latest("pk")
    assert (last.status, last.error_code) == (
        DeliveryStatus.FAILED,
        "recipients_suppressed",
    )


def test_the_periodic_job_reads_every_enabled_mailbox_and_skips_others(
    sandbox, project, reading_tool
):
    link = tool_link(project, reading_tool)
    send_to(project, link, [GHOST])
    wait_for_ndrs(sandbox, sandbox.seed["sender"], 1)

    results = mailboxes_read()

    assert results["microsoft_azure_mail"]["bounced"] == 1
    Integration.objects.filter(pk=reading_tool.pk).update(
        config={**reading_tool.config, "email_box": False}
    )
    assert mailboxes_read() == {}


def test_two_workers_never_read_one_mailbox_at_once(sandbox, project, reading_tool):
    """The lease: of two readers started together, one reads and the other is
    told the mailbox is taken; the reports are recorded once."""
    link = tool_link(project, reading_tool)
    send_to(project, link, [GHOST])
    wait_for_ndrs(sandbox, sandbox.seed["sender"], 1)
    MailboxReading.objects.create(integration=reading_tool)

    barrier = threading.Barrier(2)
    results = []

    def read():
        try:
            barrier.wait()
            results.append(mailbox_read(integration=reading_tool))
        finally:
            connection.close()

    threads = [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    skipped = sorted(r.skipped for r in results)
    assert skipped in (["", "locked"], ["", ""]), skipped
    assert sum(r.bounced for r in results) == 1
    assert DeliveryReport.objects.count() == 1
    assert BouncedRecipient.objects.get(link=link).bounce_count == 1


def test_a_lease_held_by_a_live_reader_is_respected_and_a_dead_ones_taken_over(
    sandbox, project, reading_tool
):
    from datetime import timedelta

    from django.utils import timezone

    MailboxReading.objects.create(
        integration=reading_tool,
        lease_owner="another-worker",
        lease_expires_at=timezone.now() + timedelta(seconds=60),
    )
    assert mailbox_read(integration=reading_tool).skipped == "locked"
    MailboxReading.objects.filter(integration=reading_tool).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    summary = mailbox_read(integration=reading_tool)
    assert summary.skipped == ""
    reading = MailboxReading.objects.get(integration=reading_tool)
    assert reading.lease_owner == ""
    assert reading.last_read_at is not None
    assert reading.cursor  # where it stopped


def test_a_reading_error_is_kept_for_the_card(sandbox, project):
    """Without Mail.Read the read fails with words, and nothing is lost: the cursor
    stays empty so the next read starts where it should."""
    tool = activate_azure_mail(sandbox.seed, email_box=True)
    summary = mailbox_read(integration=tool)
    assert summary.error_code == "mail_read_missing"
    reading = MailboxReading.objects.get(integration=tool)
    assert reading.last_error_code == "mail_read_missing"
    assert reading.cursor == {}
    assert reading.lease_owner == ""


@pytest.fixture
def imap_link(sandbox, project):
    """The SMTP tool (OAuth 2.0 application) with its Email box on, read over IMAP
    (IMAP.AccessAsApp and the app's mailbox permission, both seeded)."""
    from integrations.forms.smtp import SmtpForm
    from integrations.services import integration_save
    from notifications.models import ToolLink
    from tests.integrations.smtp_support import drawer_data

    form = SmtpForm(
        drawer_data(sandbox, "oauth_app", email_box="on", imap_host="", imap_port="")
    )
    assert form.is_valid(), form.errors
    tool = integration_save(
        provider_key="smtp", cleaned_data=form.cleaned_data, actor=None
    )
    return ToolLink.objects.create(
        project=project, integration=tool, notify_scan_completed=True
    )


def test_over_imap_a_bounce_is_read_once_and_a_new_uidvalidity_reads_again_safely(
    sandbox, project, imap_link
):
    tool = imap_link.integration
    delivery = send_to(project, imap_link, [GHOST])
    assert delivery.status == DeliveryStatus.SENT
    sender = sandbox.seed["sender"]
    wait_for_ndrs(sandbox, sender, 1)

    summary = mailbox_read(integration=tool)
    assert (summary.error_code, summary.bounced) == ("", 1)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.BOUNCED
    reading = MailboxReading.objects.get(integration=tool)
    assert set(reading.cursor) >= {"uidvalidity", "last_uid"}
    assert reading.mailbox == sender

    assert mailbox_read(integration=tool).messages == 0

    # The server rebuilt its index: every UID changed. The reader starts again from
    # the first-read window, and the report it meets again changes nothing.
    sandbox.control("POST", f"/mailboxes/{sender}/uidvalidity")
    again = mailbox_read(integration=tool)
    assert again.reset is True
    assert again.messages >= 1
    assert again.bounced == 0
    assert DeliveryReport.objects.count() == 1
    assert BouncedRecipient.objects.get(link=imap_link).bounce_count == 1

    # A new bounce after the change is read as usual.
    second = send_to(project, imap_link, [GHOST])
    wait_for_ndrs(sandbox, sender, 2)
    assert mailbox_read(integration=tool).bounced == 1
    second.refresh_from_db()
    assert second.status == DeliveryStatus.BOUNCED
    assert BouncedRecipient.objects.get(link=imap_link).bounce_count == 2
