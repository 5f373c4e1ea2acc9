"""RFC 5322 messages the sandbox files in inboxes: Graph messages as MIME, and
the reports Exchange Online writes (non-delivery, delay, automatic replies).

Built with the standard library's ``email`` package. The reports follow RFC 3464
(``multipart/report; report-type=delivery-status``) as Exchange Online writes
them:
https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online
https://www.rfc-editor.org/rfc/rfc3464
https://www.rfc-editor.org/rfc/rfc3834 (Auto-Submitted)
"""

import email
import email.policy
import email.utils
import html
import uuid
from email.message import EmailMessage, Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

# The host names Exchange Online writes into reports (sandbox-flavoured).
REPORTING_MTA = "SANDBOX.prod.outlook.com"
RECEIVED_FROM_MTA = "SANDBOX0PR01MB0001.prod.outlook.com"
REMOTE_MTA = "SANDBOX0PR01MB0002.prod.outlook.com"
# Exchange Online's system mailbox that signs reports ("Microsoft Outlook").
SYSTEM_MAILBOX = "MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e"

NDR_STATUS = "5.1.10"
NDR_DIAGNOSTIC = (
    "smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP "
    "address lookup"
)
DELAY_STATUS = "4.4.7"
DELAY_DIAGNOSTIC = (
    "smtp;451 4.4.7 Message delayed; the sandbox keeps trying to deliver it"
)
# Hours Exchange Online keeps retrying a delayed message.
RETRY_HOURS = 24
KINDS = ("ndr", "delay", "auto_reply", "oof")

POLICY = email.policy.SMTP  # CRLF line endings, as on the wire


def _as_bytes(message) -> bytes:
    """The message with CRLF line ends; headers that cannot be written in ASCII
    (a non-ASCII Message-ID, say) are written in UTF-8 (RFC 6532)."""
    try:
        return message.as_bytes(policy=POLICY)
    except (UnicodeEncodeError, UnicodeError):
        return message.as_bytes(policy=email.policy.SMTPUTF8)


def new_message_id() -> str:
    return f"<{uuid.uuid4().hex.upper()}@{REPORTING_MTA}>"


def _date(ts: float) -> str:
    return email.utils.formatdate(ts, localtime=False)


def graph_message(message: dict, ts: float) -> bytes:
    """The MIME form of a Graph ``sendMail`` message, as the recipient gets it.

    ``message`` is the stored form (``from``, ``to``, ``cc``, ``reply_to``,
    ``subject``, ``message_id``, ``headers``, ``text``, ``html``).
    """
    mime = EmailMessage(policy=email.policy.default)
    mime["From"] = message["from"]
    if message.get("to"):
        mime["To"] = ", ".join(message["to"])
    if message.get("cc"):
        mime["Cc"] = ", ".join(message["cc"])
    if message.get("reply_to"):
        mime["Reply-To"] = ", ".join(message["reply_to"])
    mime["Subject"] = message.get("subject") or ""
    mime["Date"] = _date(ts)
    mime["Message-ID"] = message["message_id"]
    standard = {"from", "to", "cc", "reply-to", "subject", "message-id"}
    for name, value in (message.get("headers") or {}).items():
        if name.lower() not in standard:
            mime[name] = value
    mime["Content-Language"] = "en-US"
    if message.get("html") is not None:
        mime.set_content(message["html"] or "", subtype="html")
    else:
        mime.set_content(message.get("text") or "")
    return _as_bytes(mime)


def ensure_message_id(raw: bytes, message_id: str) -> bytes:
    """``raw`` with a Message-ID header in front when it has none (Exchange adds
    one to every message it accepts)."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    for line in head.splitlines():
        if line.lower().startswith(b"message-id:"):
            return raw
    return f"Message-ID: {message_id}\r\n".encode("ascii", "replace") + raw


def original_headers(raw: bytes | None, message_id: str, subject: str) -> str:
    """The header block of the original message (for text/rfc822-headers)."""
    if raw:
        head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
        text = head.decode("utf-8", "replace").strip("\n")
        if text:
            return text.replace("\n", "\r\n") + "\r\n"
    return f"Message-ID: {message_id}\r\nSubject: {subject}\r\n"


def _report_headers(
    report, *, sender: str, domain: str, subject: str, original_id: str, ts: float
):
    report["From"] = f"Microsoft Outlook <{SYSTEM_MAILBOX}@{domain}>"
    report["To"] = f"<{sender}>"
    report["Date"] = _date(ts)
    report["Subject"] = subject
    report["Message-ID"] = new_message_id()
    if original_id:
        report["In-Reply-To"] = original_id
        report["References"] = original_id
    report["Content-Language"] = "en-US"
    report["X-MS-Exchange-Message-Is-Ndr"] = ""
    report["Auto-Submitted"] = "auto-replied"


def _delivery_status(fields: list, recipients: list) -> Message:
    """A message/delivery-status part: per-message fields, then per recipient."""
    part = Message()
    part["Content-Type"] = "message/delivery-status"
    for group in [fields] + recipients:
        block = Message()
        for name, value in group:
            block[name] = value
        part.attach(block)
    return part


def delivery_report(
    *,
    kind: str,
    sender: str,
    domain: str,
    recipient: str,
    original_id: str,
    original_subject: str,
    original_raw: bytes | None = None,
    status: str | None = None,
    diagnostic: str | None = None,
    subject: str | None = None,
    arrival: float,
    ts: float,
) -> bytes:
    """Exchange Online's non-delivery report (``kind="ndr"``) or delay notice
    (``kind="delay"``) for ``recipient``, addressed to ``sender``."""
    delayed = kind == "delay"
    status = status or (DELAY_STATUS if delayed else NDR_STATUS)
    diagnostic = diagnostic or (DELAY_DIAGNOSTIC if delayed else NDR_DIAGNOSTIC)
    if not diagnostic.lower().startswith("smtp;"):
        diagnostic = "smtp;" + diagnostic
    reason = diagnostic.split(";", 1)[1].strip()
    prefix = "Delivery delayed" if delayed else "Undeliverable"
    subject = subject or f"{prefix}: {original_subject}"

    report = MIMEMultipart("report", report_type="delivery-status")
    _report_headers(
        report,
        sender=sender,
        domain=domain,
        subject=subject,
        original_id=original_id,
        ts=ts,
    )

    if delayed:
        plain = (
            f"Delivery is delayed to these recipients or groups:\r\n\r\n{recipient}"
            f"\r\n\r\nSubject: {original_subject}\r\n\r\nThis message hasn't been "
            "delivered yet. Delivery will continue to be attempted.\r\n\r\nThe "
            f"server will keep trying to deliver this message for the next "
            f"{RETRY_HOURS} hours. You'll be notified if the message can't be "
            "delivered by that time.\r\n"
        )
    else:
        plain = (
            f"Your message to {recipient} couldn't be delivered.\r\n\r\n"
            f"{recipient.split('@')[0]} wasn't found at "
            f"{recipient.rpartition('@')[2]}.\r\n\r\n"
            "Diagnostic information for administrators:\r\n\r\n"
            f"Generating server: {REPORTING_MTA}\r\n\r\n{recipient}\r\n"
            f"Remote server returned '{reason}'\r\n"
        )
    body = html.escape(plain).replace("\r\n", "<br>\r\n")
    alternative = MIMEMultipart("alternative")
    alternative.attach(MIMEText(plain, "plain", "utf-8"))
    alternative.attach(
        MIMEText(f"<html><body><p>{body}</p></body></html>\r\n", "html", "utf-8")
    )
    report.attach(alternative)

    per_message = [
        ("Reporting-MTA", f"dns;{REPORTING_MTA}"),
        ("Received-From-MTA", f"dns;{RECEIVED_FROM_MTA}"),
        ("Arrival-Date", _date(arrival)),
    ]
    per_recipient = [
        ("Original-Recipient", f"rfc822;{recipient}"),
        ("Final-Recipient", f"rfc822;{recipient}"),
        ("Action", "delayed" if delayed else "failed"),
        ("Status", status),
        ("Diagnostic-Code", diagnostic),
        ("Remote-MTA", f"dns;{REMOTE_MTA}"),
    ]
    if delayed:
        per_recipient.append(("Will-Retry-Until", _date(ts + RETRY_HOURS * 3600)))
    report.attach(_delivery_status(per_message, [per_recipient]))

    block = original_headers(original_raw, original_id, original_subject)
    ascii_only = block.isascii()
    headers = MIMEText(block, "rfc822-headers", "us-ascii" if ascii_only else "utf-8")
    if ascii_only:
        del headers["Content-Transfer-Encoding"]
        headers["Content-Transfer-Encoding"] = "7bit"
    report.attach(headers)
    return _as_bytes(report)


def automatic_reply(
    *,
    kind: str,
    sender: str,
    responder: str,
    original_id: str,
    original_subject: str,
    subject: str | None = None,
    ts: float,
) -> bytes:
    """An automatic reply from ``responder`` to ``sender``.

    ``kind="auto_reply"``: a plain-text automatic reply (an inbox rule or
    another system) with ``Auto-Submitted: auto-replied``. ``kind="oof"``:
    Exchange's out-of-office reply, HTML, ``Auto-Submitted: auto-generated``,
    ``X-MS-Exchange-Inbox-Rules-Loop`` and ``X-Auto-Response-Suppress: All``.
    """
    oof = kind == "oof"
    reply = EmailMessage(policy=email.policy.default)
    reply["From"] = responder
    reply["To"] = sender
    reply["Subject"] = subject or f"Automatic reply: {original_subject}"
    reply["Thread-Topic"] = original_subject
    reply["Date"] = _date(ts)
    reply["Message-ID"] = new_message_id()
    if original_id:
        reply["In-Reply-To"] = original_id
        reply["References"] = original_id
    reply["Auto-Submitted"] = "auto-generated" if oof else "auto-replied"
    reply["X-Auto-Response-Suppress"] = "All"
    if oof:
        reply["X-MS-Has-Attach"] = ""
        reply["X-MS-Exchange-Inbox-Rules-Loop"] = responder
        reply["X-MS-TNEF-Correlator"] = ""
    reply["Content-Language"] = "en-US"
    text = (
        "I am out of the office and will reply when I am back."
        if oof
        else "Thank you for your message. This is an automatic reply."
    )
    if oof:
        reply.set_content(
            f'<html><head><meta http-equiv="Content-Type" content="text/html; '
            f'charset=utf-8"></head><body><p>{html.escape(text)}</p></body></html>',
            subtype="html",
        )
    else:
        reply.set_content(text)
    return _as_bytes(reply)


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def summary(raw: bytes) -> dict:
    """The Graph-facing fields of an RFC 5322 message: ``message_id``,
    ``subject``, ``from``, ``to``, ``cc``, ``reply_to``, ``headers``, ``text``
    and ``html``."""
    parsed = parse(raw)

    def addresses(name):
        values = parsed.get_all(name) or []
        pairs = email.utils.getaddresses([str(v) for v in values])
        return [address for _, address in pairs if address]

    headers = {}
    for name, value in parsed.items():
        headers.setdefault(name, str(value))
    senders = addresses("From")
    text = html_body = None
    try:
        part = parsed.get_body(preferencelist=("plain",))
        if part is not None:
            text = part.get_content()
        part = parsed.get_body(preferencelist=("html",))
        if part is not None:
            html_body = part.get_content()
    except (LookupError, ValueError, AttributeError):
        text = None
    if text is None and html_body is None:
        text = ""
    return {
        "message_id": str(parsed.get("Message-ID") or "").strip(),
        "subject": str(parsed.get("Subject") or ""),
        "from": senders[0] if senders else "",
        "to": addresses("To"),
        "cc": addresses("Cc"),
        "reply_to": addresses("Reply-To"),
        "headers": headers,
        "text": text,
        "html": html_body,
    }
