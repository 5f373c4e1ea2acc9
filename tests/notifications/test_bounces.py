"""Reading the sender mailbox: bounces, delay notices and automatic replies, proved on
real samples (tests/fixtures/dsn/README.md says where each comes from), on reports the
standard library builds, and on hostile input."""

import base64
import time
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

import pytest

from notifications.bounces import (
    MailKind,
    MailReport,
    RecipientStatus,
    report_parse,
    status_meaning,
)

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "dsn"


def sample(name: str) -> MailReport:
    return report_parse((SAMPLES / name).read_bytes())


# --- real samples -------------------------------------------------------------


def test_exchange_online_ndr_is_a_bounce_with_5_1_10():
    report = sample("exchange-online-ndr-5.1.10.eml")
    assert report.kind == MailKind.BOUNCE
    assert report.recipients == (
        RecipientStatus(
            "kijitora-nyaan@neko.kyoto.example.jp",
            "failed",
            "5.1.10",
            "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        ),
    )
    assert report.subject == "Undeliverable: にゃーん"
    # Its returned message has no Message-ID and the NDR no In-Reply-To.
    assert report.original_message_ids == ()


def test_exchange_delay_notice_is_a_delay_with_4_4_7():
    report = sample("exchange-delay-4.4.7.eml")
    assert report.kind == MailKind.DELAY
    (recipient,) = report.recipients
    assert recipient.recipient == "recipient@licence.example"
    assert (recipient.action, recipient.status) == ("delayed", "4.4.7")
    assert recipient.diagnostic == "400 4.4.7 Message delayed"
    # From the text/rfc822-headers part.
    assert report.original_message_ids == (
        "<73ade2cb375f4f39b9e210a57d087900@ABMAIL13.city.example>",
    )


def test_postfix_bounce_names_the_recipient_status_and_returned_message():
    report = sample("postfix-5.1.1.eml")
    assert report.kind == MailKind.BOUNCE
    (recipient,) = report.recipients
    assert (recipient.recipient, recipient.status) == ("kijitora@gmail.com", "5.1.1")
    assert recipient.diagnostic.startswith("550-5.1.1 The email account that you tried")
    assert "\n" not in recipient.diagnostic and len(recipient.diagnostic) <= 300
    assert report.original_message_ids == ("<ffffff-eeeeee-22@neko.example.com>",)


def test_gmail_bounce_orders_returned_message_id_before_references():
    report = sample("gmail-5.1.1.eml")
    assert report.kind == MailKind.BOUNCE
    (recipient,) = report.recipients
    assert (recipient.recipient, recipient.status) == (
        "safety-list@groups.example",
        "5.1.1",
    )
    assert report.original_message_ids == (
        "<60627444-420d-42a1-b7b6-d74dec2479e0@sender.example>",
        "<9c1169345d916cb542bf3f28ddf854f6308a402a.1753279365.git.author@patches.example>",
    )
    assert report.subject == "Delivery Status Notification (Failure)"


def test_exchange_out_of_office_is_an_automatic_reply():
    report = sample("exchange-out-of-office.eml")
    assert report.kind == MailKind.AUTO_REPLY
    assert report.recipients == ()
    assert report.original_message_ids == (
        "<1111111111.1111111.1111111111111.JavaMail.app@lor1-app3586.prod.linkedin.com>",
    )


def test_generic_automatic_reply_is_recognised():
    assert sample("auto-reply-generic.eml").kind == MailKind.AUTO_REPLY


def test_every_sample_survives_crlf_line_endings():
    for path in SAMPLES.glob("*.eml"):
        lf = report_parse(path.read_bytes())
        crlf = report_parse(path.read_bytes().replace(b"\n", b"\r\n"))
        assert (crlf.kind, crlf.recipients) == (lf.kind, lf.recipients), path.name


# --- reports the standard library builds --------------------------------------


def block(**fields: str) -> Message:
    part = Message()
    for name, value in fields.items():
        part[name.replace("_", "-")] = value
    return part


def stdlib_dsn(*recipients: Message, headers: dict[str, str] | None = None) -> bytes:
    """A DSN as Python's email package writes one: multipart/report with a text
    part, a message/delivery-status part of blocks, and the returned headers."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = "MAILER-DAEMON@mx.example.net"
    report["To"] = "notifications@contoso.example"
    report["Subject"] = "Undelivered Mail Returned to Sender"
    for name, value in (headers or {}).items():
        report[name] = value
    report.attach(MIMEText("Your message could not be delivered.\n"))
    status = Message()
    status.set_type("message/delivery-status")
    status.set_payload([block(Reporting_MTA="dns; mx.example.net"), *recipients])
    report.attach(status)
    returned = Message()
    returned.set_type("text/rfc822-headers")
    returned.set_payload("Message-ID: <delivery-7@contoso.example>\nSubject: Finding\n")
    report.attach(returned)
    return report.as_bytes()


def test_stdlib_built_dsn_lists_only_the_failed_recipients():
    raw = stdlib_dsn(
        block(
            Final_Recipient="rfc822; ok@fabrikam.example",
            Action="delivered",
            Status="2.0.0",
        ),
        block(
            Final_Recipient="rfc822; Gone@Fabrikam.example",
            Action="failed",
            Status="5.2.2",
            Diagnostic_Code="smtp; 552 5.2.2 Mailbox full",
        ),
        block(
            Final_Recipient="rfc822; slow@fabrikam.example",
            Action="delayed",
            Status="4.4.7",
        ),
    )
    report = report_parse(raw)
    assert report.kind == MailKind.BOUNCE
    assert report.recipients == (
        RecipientStatus(
            "gone@fabrikam.example", "failed", "5.2.2", "552 5.2.2 Mailbox full"
        ),
    )
    assert report.original_message_ids == ("<delivery-7@contoso.example>",)


def test_delayed_only_is_a_delay_and_delivered_only_is_other():
    delayed = stdlib_dsn(
        block(
            Final_Recipient="rfc822; slow@fabrikam.example",
            Action="delayed",
            Status="4.4.7",
        )
    )
    assert report_parse(delayed).kind == MailKind.DELAY
    delivered = stdlib_dsn(
        block(
            Final_Recipient="rfc822; ok@fabrikam.example",
            Action="delivered",
            Status="2.0.0",
        ),
        block(
            Final_Recipient="rfc822; on@fabrikam.example",
            Action="relayed",
            Status="2.0.0",
        ),
    )
    report = report_parse(delivered)
    assert (report.kind, report.recipients) == (MailKind.OTHER, ())


def test_temporary_status_with_action_failed_is_still_a_bounce():
    raw = stdlib_dsn(
        block(
            Final_Recipient="rfc822; a@fabrikam.example",
            Action="failed",
            Status="4.4.7",
        )
    )
    report = report_parse(raw)
    assert report.kind == MailKind.BOUNCE
    assert report.recipients[0].status == "4.4.7"


def test_original_recipient_is_used_when_final_recipient_is_missing():
    raw = stdlib_dsn(
        block(
            Original_Recipient="rfc822;<Who@Fabrikam.example>",
            Action="failed",
            Status="5.1.1",
        )
    )
    assert report_parse(raw).recipients[0].recipient == "who@fabrikam.example"


def test_dsn_is_checked_before_auto_submitted():
    raw = stdlib_dsn(
        block(
            Final_Recipient="rfc822; a@fabrikam.example",
            Action="failed",
            Status="5.1.1",
        ),
        headers={"Auto-Submitted": "auto-replied"},
    )
    assert report_parse(raw).kind == MailKind.BOUNCE


def test_original_message_id_only_in_in_reply_to_is_found():
    raw = (
        b"From: postmaster@fabrikam.example\r\n"
        b"Subject: Undeliverable: New finding\r\n"
        b"In-Reply-To: <delivery-42@contoso.example>\r\n"
        b"References: <thread-1@contoso.example> <delivery-42@contoso.example>\r\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.fabrikam.example\r\n\r\n"
        b"Final-Recipient: rfc822; nobody@fabrikam.example\r\n"
        b"Action: failed\r\nStatus: 5.1.10\r\n\r\n--b--\r\n"
    )
    report = report_parse(raw)
    assert report.kind == MailKind.BOUNCE
    assert report.original_message_ids == (
        "<delivery-42@contoso.example>",
        "<thread-1@contoso.example>",
    )


def test_delivery_status_sent_base64_encoded_is_read():
    fields = (
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        "Final-Recipient: rfc822; b64@fabrikam.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    )
    raw = (
        b"From: MAILER-DAEMON@mx.example.net\r\nSubject: failure notice\r\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(fields.encode())
        + b"\r\n--b--\r\n"
    )
    report = report_parse(raw)
    assert report.kind == MailKind.BOUNCE
    assert report.recipients[0].recipient == "b64@fabrikam.example"


# --- NDRs with only a human-readable body ---------------------------------------


def test_exchange_ndr_without_machine_part_is_read_from_its_text():
    raw = (
        b"From: Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.example>\r\n"
        b"Subject: Undeliverable: New finding\r\n"
        b"X-MS-Exchange-Message-Is-Ndr:\r\n"
        b"In-Reply-To: <delivery-9@contoso.example>\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        b"Delivery has failed to these recipients or groups:\r\n\r\n"
        b"Nobody (nobody@fabrikam.example)\r\n"
        b"The email address you entered couldn't be found.\r\n\r\n"
        b"Diagnostic information for administrators:\r\n\r\n"
        b"Generating server: EX01.contoso.example\r\n\r\n"
        b"nobody@fabrikam.example\r\n"
        b"Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'\r\n"
    )
    report = report_parse(raw)
    assert report.kind == MailKind.BOUNCE
    assert report.recipients == (
        RecipientStatus(
            "nobody@fabrikam.example",
            "failed",
            "5.1.1",
            "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found",
        ),
    )
    assert report.original_message_ids == ("<delivery-9@contoso.example>",)


def test_mailer_daemon_failure_subject_uses_x_failed_recipients():
    raw = (
        b"From: Mail Delivery System <Mailer-Daemon@mx.fabrikam.example>\r\n"
        b"Subject: Mail delivery failed: returning message to sender\r\n"
        b"X-Failed-Recipients: gone@fabrikam.example\r\n\r\n"
        b"  gone@fabrikam.example\r\n    SMTP error from remote mail server after RCPT TO:\r\n"
        b"    550 5.1.1 <gone@fabrikam.example>: Recipient address rejected\r\n"
    )
    report = report_parse(raw)
    assert report.kind == MailKind.BOUNCE
    assert report.recipients[0].recipient == "gone@fabrikam.example"
    assert report.recipients[0].status == "5.1.1"


def test_a_person_writing_about_a_bounce_is_left_alone():
    raw = (
        b"From: Ana <ana@fabrikam.example>\r\nSubject: Re: New finding\r\n"
        b"In-Reply-To: <delivery-1@contoso.example>\r\n\r\n"
        b"Final-Recipient: rfc822; x@fabrikam.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    )
    report = report_parse(raw)
    assert (report.kind, report.recipients) == (MailKind.OTHER, ())
    assert report.original_message_ids == ("<delivery-1@contoso.example>",)


# --- automatic replies ----------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "Auto-Submitted: auto-generated",
        "Auto-Submitted: auto-replied; owner-email=a@b.example",
        "X-Auto-Response-Suppress: All",
        "X-MS-Exchange-Inbox-Rules-Loop: ana@fabrikam.example",
        "X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent",
        "X-Autoreply: yes",
        "Precedence: auto_reply",
        "Precedence: junk",
    ],
)
def test_automatic_reply_headers(header):
    raw = f"From: ana@fabrikam.example\r\nSubject: Re: hi\r\n{header}\r\n\r\nAway\r\n"
    assert report_parse(raw.encode()).kind == MailKind.AUTO_REPLY


@pytest.mark.parametrize(
    "header", ["Auto-Submitted: no", "Precedence: bulk", "Precedence: list"]
)
def test_headers_that_do_not_make_an_automatic_reply(header):
    raw = f"From: ana@fabrikam.example\r\nSubject: Weekly news\r\n{header}\r\n\r\nHello\r\n"
    assert report_parse(raw.encode()).kind == MailKind.OTHER


@pytest.mark.parametrize(
    "subject",
    ["Automatic reply: New finding", "Auto: New finding", "Out of Office: New finding"],
)
def test_auto_reply_subject_counts_only_on_a_reply(subject):
    reply = f"From: ana@fabrikam.example\r\nSubject: {subject}\r\nIn-Reply-To: <d-1@contoso.example>\r\n\r\nAway\r\n"
    fresh = f"From: ana@fabrikam.example\r\nSubject: {subject}\r\n\r\nAway\r\n"
    assert report_parse(reply.encode()).kind == MailKind.AUTO_REPLY
    assert report_parse(fresh.encode()).kind == MailKind.OTHER


# --- hostile input --------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff" * 5000,
        bytes(range(256)) * 50,
        b"Subject: =?utf-8?b?////?=\r\nContent-Type: multipart/report; boundary=\r\n\r\n--\r\n",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n"
        b"--x\r\nContent-Type: message/delivery-status; charset=no-such-charset\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\r\n--x--\r\n",
        b"Subject: " + b"A" * 100_000 + b"\r\n\r\nbody",
        b"Content-Type: text/plain; charset=x-unknown\r\nX-MS-Exchange-Message-Is-Ndr:\r\n\r\n\xff\xfe",
    ],
)
def test_garbage_never_raises(raw):
    report = report_parse(raw)
    assert isinstance(report, MailReport)
    assert len(report.subject) <= 200 and "\n" not in report.subject


def test_a_five_megabyte_message_is_cut_and_answered_quickly():
    raw = stdlib_dsn(
        block(
            Final_Recipient="rfc822; big@fabrikam.example",
            Action="failed",
            Status="5.3.4",
        )
    )
    big = raw + b"x" * (5 * 1024 * 1024)
    started = time.monotonic()
    report = report_parse(big)
    assert time.monotonic() - started < 10
    assert report.kind == MailKind.BOUNCE
    huge_header = b"Subject: " + b"A" * (5 * 1024 * 1024) + b"\r\n\r\n"
    assert report_parse(huge_header).subject == "A" * 200


def test_deep_nesting_never_raises():
    depth = 3000
    head = b"".join(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
        for i in range(depth)
    )
    raw = b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n" + head
    assert report_parse(raw).kind == MailKind.OTHER


def test_many_parts_are_bounded():
    parts = b"".join(
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Final-Recipient: rfc822; r%d@fabrikam.example\r\nAction: failed\r\n\r\n" % i
        for i in range(2000)
    )
    raw = b"Content-Type: multipart/report; boundary=b\r\n\r\n" + parts + b"--b--\r\n"
    report = report_parse(raw)
    assert report.kind == MailKind.BOUNCE
    assert len(report.recipients) < 2000


@pytest.mark.parametrize(
    "value",
    [
        "rfc822; evil@fabrikam.example\r\nBcc: x@y.example",
        "rfc822; <script>alert(1)</script>@fabrikam.example",
        "rfc822; two words@fabrikam.example",
        "rfc822; a@b.example, c@d.example",
        "rfc822; " + "a" * 330 + "@fabrikam.example",
        "rfc822; no-at-sign",
        "rfc822; ctl\x07@fabrikam.example",
    ],
)
def test_implausible_recipients_are_skipped(value):
    recipient = Message()
    recipient["Action"] = "failed"
    recipient["Status"] = "5.1.1"
    raw = stdlib_dsn(recipient).replace(
        b"Action: failed", b"Final-Recipient: " + value.encode() + b"\nAction: failed"
    )
    report = report_parse(raw)
    assert all("@" in r.recipient and " " not in r.recipient for r in report.recipients)
    assert all(
        "<" not in r.recipient and "\n" not in r.recipient for r in report.recipients
    )
    assert all(len(r.recipient) <= 320 for r in report.recipients)
    assert "evil@fabrikam.example\r\nbcc" not in [
        r.recipient for r in report.recipients
    ]


def test_html_and_control_characters_in_the_diagnostic_are_removed():
    raw = stdlib_dsn(
        block(
            Final_Recipient="rfc822; a@fabrikam.example",
            Action="failed",
            Status="5.7.1",
            Diagnostic_Code="smtp; 550 5.7.1 <b>denied</b><script>x()</script> for <a@fabrikam.example>\x1b[31m "
            + "z" * 1000,
        )
    )
    (recipient,) = report_parse(raw).recipients
    assert "<b>" not in recipient.diagnostic and "<script>" not in recipient.diagnostic
    assert "<a@fabrikam.example>" in recipient.diagnostic
    assert "\x1b" not in recipient.diagnostic
    assert len(recipient.diagnostic) <= 300
    assert recipient.diagnostic.startswith("550 5.7.1 denied")


def test_message_ids_with_control_characters_are_dropped():
    raw = (
        b"From: a@b.example\r\nIn-Reply-To: <ok@contoso.example> <bad\x01id@x>\r\n\r\n"
    )
    assert report_parse(raw).original_message_ids == ("<ok@contoso.example>",)


# --- status codes in words ------------------------------------------------------


@pytest.mark.parametrize(
    "code, words",
    [
        ("5.1.10", "the recipient's address does not exist (recipient not found)"),
        ("5.1.1", "the address does not exist (bad mailbox)"),
        ("5.2.2", "the recipient's mailbox is full"),
        ("5.7.1", "the sender is not authorized to send to this recipient"),
        ("5.4.1", "the recipient's server refused to relay (relay access denied)"),
        ("5.2.1", "the recipient's mailbox is disabled"),
        ("5.4.14", "hop count exceeded"),
        ("5.7.509", "DMARC"),
        ("5.7.133", "group"),
        ("5.7.134", "mailbox accepts mail only from inside"),
        ("4.4.7", "delivery is delayed: the message has not been delivered yet"),
        ("5.7.620", "banned"),
        ("5.6.9", "permanent failure: problem with the message's content"),
        ("4.1.9", "temporary failure: addressing problem"),
        (
            "550 5.3.9 whatever",
            "permanent failure: problem with the recipient's mail system",
        ),
    ],
)
def test_status_meaning_in_words(code, words):
    assert words in str(status_meaning(code))


@pytest.mark.parametrize("code", ["", "nonsense", "9.9.9", None])
def test_unknown_status_has_a_generic_meaning(code):
    assert (
        str(status_meaning(code))
        == "the delivery failed for a reason the report does not say"
    )


def test_dsn_without_per_message_block_still_names_the_recipient():
    raw = (
        b"From: MAILER-DAEMON@mx.example.net\r\nSubject: Returned mail\r\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Final-Recipient: rfc822; only@fabrikam.example\r\nAction: failed\r\n"
        b"Status: 5.1.1\r\n\r\n--b--\r\n"
    )
    assert report_parse(raw).recipients[0].recipient == "only@fabrikam.example"
