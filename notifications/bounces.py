"""Read a message from the sender mailbox: a bounce, a delay notice, an automatic
reply, or something else.

Pure: bytes in, a `MailReport` out, no database and no network. The mailbox reader
matches `original_message_ids` to its deliveries and records the recipients.

What is recognised, in this order:

1. A delivery status notification (RFC 3464): a `message/delivery-status` part,
   with or without `multipart/report` around it (older Exchange and some MTAs leave
   the report type out). Its per-recipient blocks decide: any `Action: failed` is a
   bounce, else any `Action: delayed` a delay, else (delivered, relayed, expanded)
   nothing to act on.
2. A non-delivery report with no machine-readable part, known by Exchange's
   `X-MS-Exchange-Message-Is-Ndr` header, or by a daemon sender (MAILER-DAEMON,
   postmaster, Microsoft Outlook) with a failure or delay subject: the recipient
   and the enhanced status code are read from its text ("Remote Server returned
   '550 5.1.1 ...'").
3. An automatic reply (out-of-office and the like), recognised and ignored.
   Checked after the DSN on purpose: NDRs carry `Auto-Submitted: auto-replied`.

Anything else is `MailKind.OTHER`. Hostile input never raises: a message that
cannot be read is OTHER too. Only the first `MAX_BYTES` are read and at most
`MAX_PARTS` MIME parts are looked at.
"""

import base64
import email
import email.policy
import enum
import logging
import quopri
import re
import unicodedata
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser

from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

logger = logging.getLogger(__name__)

MAX_BYTES = 2 * 1024 * 1024
MAX_PARTS = 50
MAX_DEPTH = 10
MAX_IDS = 20
SUBJECT_LENGTH = 200
DIAGNOSTIC_LENGTH = 300
ADDRESS_LENGTH = 320


class MailKind(enum.StrEnum):
    BOUNCE = "bounce"
    DELAY = "delay"
    AUTO_REPLY = "auto_reply"
    OTHER = "other"


@dataclass(frozen=True)
class RecipientStatus:
    recipient: str  # lower-cased address
    action: str  # failed | delayed | delivered | relayed | expanded
    status: str  # enhanced status code such as "5.1.10", "" when none was found
    diagnostic: str  # the remote server's words, one line, at most 300 characters


@dataclass(frozen=True)
class MailReport:
    kind: MailKind
    original_message_ids: tuple[str, ...]
    recipients: tuple[RecipientStatus, ...]
    subject: str


ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")
STATUS_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
MESSAGE_ID_RE = re.compile(r"<([^<>\s]{1,250})>")
ADDRESS_RE = re.compile(
    r"[^\s@<>()\[\]\\,;:\"]{1,64}@"
    r"[^\W_](?:[\w-]{0,62}[^\W_])?(?:\.[^\W_](?:[\w-]{0,62}[^\W_])?)+"
)
HTML_TAG_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9-]{0,30}(?:\s[^<>@]{0,2000})?/?>")
DELIVERY_STATUS_TYPES = ("message/delivery-status", "message/global-delivery-status")
RETURNED_MESSAGE_TYPES = ("message/rfc822", "message/global")
RETURNED_HEADERS_TYPES = (
    "text/rfc822-headers",
    "message/rfc822-headers",
    "message/global-headers",
)
DAEMON_FROM_RE = re.compile(
    r"mailer-daemon|postmaster|microsoft\s*outlook|mail\s+delivery\s+(?:sub)?system",
    re.IGNORECASE,
)
FAILURE_SUBJECT_RE = re.compile(
    r"^\s*(?:undeliverable|undelivered mail|delivery status notification \(failure\)"
    r"|mail delivery failed|delivery failure|returned mail|failure notice"
    r"|non[- ]?delivery|unzustellbar|non remis)",
    re.IGNORECASE,
)
DELAY_SUBJECT_RE = re.compile(
    r"^\s*(?:delivery delayed|delayed mail|delivery status notification \(delay\)"
    r"|warning: message .* delayed|mail delivery delayed)",
    re.IGNORECASE,
)
AUTO_REPLY_SUBJECT_RE = re.compile(
    r"^\s*(?:automatic reply\s*:|auto\s*:|out of (?:the )?office|autoreply\s*:"
    r"|auto-reply\s*:)",
    re.IGNORECASE,
)


def report_parse(raw: bytes) -> MailReport:
    """What `raw` (a whole message as fetched from the mailbox) is.

    Never raises: unreadable or hostile input gives `MailKind.OTHER`.
    """
    try:
        return _report_parse(bytes(raw[:MAX_BYTES]))
    except Exception:  # hostile input must never stop the mailbox reader
        logger.info("mail_report_unreadable", exc_info=True)
        return MailReport(MailKind.OTHER, (), (), "")


def _report_parse(raw: bytes) -> MailReport:
    # compat32 is the policy that never raises on malformed headers; every
    # header is decoded below by `_header`, which tolerates what it cannot read.
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    subject = _one_line(_header(message, "Subject"), SUBJECT_LENGTH)
    parts = _parts(message)

    returned_ids, blocks = [], []
    for part in parts:
        content_type = part.get_content_type()
        if content_type in DELIVERY_STATUS_TYPES:
            blocks.extend(_delivery_status_blocks(part))
        elif content_type in RETURNED_MESSAGE_TYPES + RETURNED_HEADERS_TYPES:
            returned_ids.extend(_returned_message_ids(part))
    for block in blocks:
        returned_ids.extend(_message_ids(block.get("x-original-message-id", ""), 1))
    ids = _unique(
        returned_ids
        + _message_ids(_header(message, "In-Reply-To"), MAX_IDS)
        + _message_ids(_header(message, "References"), MAX_IDS)
    )

    # Per-recipient blocks are the ones naming a recipient: some MTAs leave the
    # per-message block out, and a report may hold several delivery-status parts.
    statuses = [s for s in map(_recipient_status, blocks) if s is not None]
    if statuses:
        failed = tuple(s for s in statuses if s.action == "failed")
        if failed:
            return MailReport(MailKind.BOUNCE, ids, failed, subject)
        delayed = tuple(s for s in statuses if s.action == "delayed")
        if delayed:
            return MailReport(MailKind.DELAY, ids, delayed, subject)
        return MailReport(MailKind.OTHER, ids, (), subject)

    if _looks_like_ndr(message, subject):
        text = _text_of(parts)
        ids = _unique(list(ids) + _message_ids_in_text(text))
        kind, recipients = _ndr_from_text(message, subject, text)
        return MailReport(kind, ids, recipients, subject)

    if _is_auto_reply(message, subject):
        return MailReport(MailKind.AUTO_REPLY, ids, (), subject)
    return MailReport(MailKind.OTHER, ids, (), subject)


# --- MIME ---------------------------------------------------------------------


def _parts(message: Message) -> list[Message]:
    """The message's parts, breadth first, without looking inside a returned
    message (its parts are the original's, not the report's), bounded in number
    and depth."""
    found: list[Message] = []
    queue: list[tuple[Message, int]] = [(message, 0)]
    while queue and len(found) < MAX_PARTS:
        part, depth = queue.pop(0)
        found.append(part)
        if depth >= MAX_DEPTH or not part.is_multipart():
            continue
        if part.get_content_maintype() == "message":
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            queue.extend((child, depth + 1) for child in payload[:MAX_PARTS])
    return found


def _payload_text(part: Message) -> str:
    """A non-multipart part's content as text, whatever its transfer encoding
    and charset claim."""
    payload = part.get_payload(decode=True)
    if payload is None:
        payload = part.get_payload()
        if isinstance(payload, str):
            return payload
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:  # an unknown charset name
        return payload.decode("utf-8", errors="replace")


def _text_of(parts: list[Message]) -> str:
    """The report's human-readable text: its text/plain parts, or its HTML parts
    stripped of markup when there is no plain text."""
    plain = [p for p in parts if p.get_content_type() == "text/plain"]
    if plain:
        return "\n".join(_payload_text(p) for p in plain)[:MAX_BYTES]
    html = [p for p in parts if p.get_content_type() == "text/html"]
    text = "\n".join(_payload_text(p) for p in html)[:MAX_BYTES]
    text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", text)
    text = re.sub(r"(?i)<br\s*/?>|</p\s*>|</tr\s*>|</div\s*>", "\n", text)
    text = re.sub(r"<[^>]{0,2000}>", " ", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


# --- RFC 3464 -----------------------------------------------------------------


def _delivery_status_blocks(part: Message) -> list[dict[str, str]]:
    """The per-message block, then the per-recipient blocks, as {field: value}
    with lower-case field names (the first occurrence of each field wins).

    The email package parses the part into one sub-message per block; a part
    sent base64- or quoted-printable-encoded (or left as text) is decoded and
    split into blocks here.
    """
    payload = part.get_payload()
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if isinstance(payload, list) and encoding not in ("base64", "quoted-printable"):
        return [_fields(block.items()) for block in payload[:MAX_PARTS]]
    if isinstance(payload, list):
        text = "\n\n".join(block.as_string() for block in payload[:MAX_PARTS])
        data = text.encode("ascii", "replace")
        if encoding == "base64":
            data = base64.b64decode(re.sub(rb"[^A-Za-z0-9+/]", b"", data) + b"==")
        else:
            data = quopri.decodestring(data)
        text = data.decode("utf-8", "replace")
    else:
        text = _payload_text(part)
    blocks = []
    parser = HeaderParser(policy=email.policy.compat32)
    for chunk in re.split(r"\r?\n[ \t]*\r?\n", text.strip())[:MAX_PARTS]:
        blocks.append(_fields(parser.parsestr(chunk.strip() + "\n").items()))
    return blocks


def _fields(items) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, value in items:
        key = str(name).strip().lower()
        if key and key not in fields:
            fields[key] = re.sub(r"\s+", " ", str(value)).strip()
    return fields


def _recipient_status(block: dict[str, str]) -> RecipientStatus | None:
    """One per-recipient block, or None when it names no plausible address."""
    recipient = _address(
        _typed_value(block.get("final-recipient", ""))
        or _typed_value(block.get("original-recipient", ""))
    )
    if not recipient:
        return None
    action = (block.get("action", "").split() or [""])[0].lower()
    action = next((a for a in ACTIONS if action.startswith(a)), action[:20])
    diagnostic = _diagnostic(block.get("diagnostic-code", ""))
    status = _status_code(block.get("status", "")) or _status_code(diagnostic)
    return RecipientStatus(recipient, action, status, diagnostic)


def _typed_value(value: str) -> str:
    """`rfc822; a@b.example` -> `a@b.example` (RFC 3464's address-type prefix)."""
    head, sep, tail = value.partition(";")
    if sep and re.fullmatch(r"\s*[A-Za-z0-9][A-Za-z0-9.+-]{0,40}\s*", head):
        return tail
    return value


def _diagnostic(value: str) -> str:
    """Diagnostic-Code text without its type, markup removed (an address in
    angle brackets stays), one line, at most 300 characters."""
    text = HTML_TAG_RE.sub(" ", _typed_value(value)[: DIAGNOSTIC_LENGTH * 20])
    return _one_line(text, DIAGNOSTIC_LENGTH)


def _status_code(text: str) -> str:
    match = STATUS_RE.search(text or "")
    return ".".join(match.groups()) if match else ""


# --- NDRs without a machine-readable part ------------------------------------


def _looks_like_ndr(message: Message, subject: str) -> bool:
    if message.get("X-MS-Exchange-Message-Is-Ndr") is not None:
        return True
    content_type = message.get_content_type()
    report_type = (message.get_param("report-type") or "").lower()
    if content_type == "multipart/report" and report_type == "delivery-status":
        return True
    sender = _header(message, "From")
    return bool(DAEMON_FROM_RE.search(sender)) and bool(
        FAILURE_SUBJECT_RE.search(subject) or DELAY_SUBJECT_RE.search(subject)
    )


# Exchange: "kijitora@example.com\r\nRemote Server returned '550 5.1.1 ...'",
# and for a delay "Remote Server at host (ip) returned '400 4.4.7 ...'".
EXCHANGE_RETURNED_RE = re.compile(
    r"(?:^|\n)[ \t]*(?P<address>\S+@\S+)[ \t]*\r?\n[ \t]*Remote Server"
    r"(?: at [^\n]{0,200}?)? returned '(?P<reply>[^']{1,1000})'",
    re.IGNORECASE,
)
RECIPIENT_LINE_RES = (
    re.compile(r"Recipient Address:\s*(\S+@\S+)", re.IGNORECASE),
    re.compile(r"Your message to (\S+@\S+) couldn't be delivered", re.IGNORECASE),
    re.compile(r"wasn't delivered to (\S+@\S+)", re.IGNORECASE),
    re.compile(
        r"(?:Delivery has failed|Delivery is delayed) to these recipients or groups:"
        r"\s*(?:[^\n]*\()?<?(\S+@[^\s)>]+)",
        re.IGNORECASE,
    ),
    re.compile(r"(?:^|\n)\s*<(\S+@[^\s>]+)>:", re.IGNORECASE),
)


def _ndr_from_text(
    message: Message, subject: str, text: str
) -> tuple[MailKind, tuple[RecipientStatus, ...]]:
    delayed = bool(DELAY_SUBJECT_RE.search(subject)) or bool(
        re.search(r"delivery is delayed|hasn't been delivered yet", text, re.I)
    )
    action = "delayed" if delayed else "failed"
    kind = MailKind.DELAY if delayed else MailKind.BOUNCE

    match = EXCHANGE_RETURNED_RE.search(text)
    if match and _address(match.group("address")):
        diagnostic = _one_line(match.group("reply"), DIAGNOSTIC_LENGTH)
        recipient = _address(match.group("address"))
        return kind, (
            RecipientStatus(recipient, action, _status_code(diagnostic), diagnostic),
        )

    status, diagnostic = _status_in_text(text)
    if status.startswith("5."):
        kind, action = MailKind.BOUNCE, "failed"
    recipients = []
    for candidate in _failed_recipients(message, text):
        if candidate not in recipients:
            recipients.append(candidate)
    return kind, tuple(
        RecipientStatus(r, action, status, diagnostic) for r in recipients[:MAX_IDS]
    )


def _status_in_text(text: str) -> tuple[str, str]:
    """The enhanced status code a report's text gives, and the line around it.

    Exchange's own words come first ("Reported error: 550 5.1.10 ...",
    "Status code: 550 5.1.10"), then any SMTP reply with an enhanced code.
    """
    for pattern in (
        r"Reported error:\s*([^\n]+)",
        r"Status code:\s*([^\n]+)",
        r"Diagnostic-Code:\s*([^\n]+)",
        r"(?:^|\n)([^\n]*\b[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}\b[^\n]*)",
    ):
        match = re.search(pattern, text, re.IGNORECASE)
        if match and _status_code(match.group(1)):
            line = _diagnostic(match.group(1))
            return _status_code(line), line
    return "", ""


def _failed_recipients(message: Message, text: str):
    header = _header(message, "X-Failed-Recipients")
    for candidate in re.split(r"[,\s]+", header):
        if _address(candidate):
            yield _address(candidate)
    for pattern in RECIPIENT_LINE_RES:
        for match in pattern.finditer(text):
            if _address(match.group(1)):
                yield _address(match.group(1))
                break


def _message_ids_in_text(text: str) -> list[str]:
    """The Message-ID in the "Original message headers" an Exchange NDR quotes."""
    match = re.search(
        r"Original message headers:?(.{0,20000})", text, re.IGNORECASE | re.DOTALL
    )
    if not match:
        return []
    found = re.search(
        r"(?im)^Message-ID:\s*\r?\n?\s*(<[^<>\s]{1,250}>)", match.group(1)
    )
    return _message_ids(found.group(1), 1) if found else []


# --- automatic replies --------------------------------------------------------


def _is_auto_reply(message: Message, subject: str) -> bool:
    """RFC 3834's Auto-Submitted, Exchange's markers on an out-of-office reply,
    the de-facto X-Autoreply headers and Precedence; the subject only as a last
    hint, and only on a reply (In-Reply-To or References)."""
    auto_submitted = _header(message, "Auto-Submitted").split(";")[0].strip().lower()
    if auto_submitted and auto_submitted != "no":
        return True
    # Exchange's out-of-office reply ("Mailbox Rules Agent") carries
    # X-Auto-Response-Suppress: All and X-MS-Exchange-Inbox-Rules-Loop.
    for name in (
        "X-Auto-Response-Suppress",
        "X-MS-Exchange-Inbox-Rules-Loop",
        "X-Autoreply",
        "X-Autorespond",
    ):
        if message.get(name) is not None:
            return True
    source = _header(message, "X-MS-Exchange-Generated-Message-Source").lower()
    if "mailbox rules agent" in source:
        return True
    precedence = _header(message, "Precedence").strip().lower()
    if precedence in ("auto_reply", "auto-reply", "junk"):
        return True
    is_reply = bool(_header(message, "In-Reply-To") or _header(message, "References"))
    return is_reply and bool(AUTO_REPLY_SUBJECT_RE.search(subject))


# --- values from hostile headers ----------------------------------------------


def _header(message: Message, name: str) -> str:
    """A header's decoded text ("" when absent); RFC 2047 words that cannot be
    decoded are kept as they are."""
    value = message.get(name)
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except Exception:
        return str(value)


def _returned_message_ids(part: Message) -> list[str]:
    payload = part.get_payload()
    if isinstance(payload, list) and payload:
        returned = payload[0]
    else:
        returned = HeaderParser(policy=email.policy.compat32).parsestr(
            _payload_text(part)[:MAX_BYTES]
        )
    if not isinstance(returned, Message):
        return []
    return _message_ids(_header(returned, "Message-ID"), 1)


def _message_ids(value: str, limit: int) -> list[str]:
    ids = []
    for match in MESSAGE_ID_RE.finditer(value or ""):
        inner = match.group(1)
        if _printable(inner):
            ids.append(f"<{inner}>")
        if len(ids) >= limit:
            break
    return ids


def _address(value: str) -> str:
    """A plausible lower-cased address, or "" (markup, spaces, control characters,
    more than one address, over 320 characters)."""
    candidate = (value or "").strip()
    if candidate.startswith("<") and candidate.endswith(">"):
        candidate = candidate[1:-1].strip()
    candidate = candidate.rstrip(".")
    if not candidate or len(candidate) > ADDRESS_LENGTH or not _printable(candidate):
        return ""
    candidate = candidate.lower()
    return candidate if ADDRESS_RE.fullmatch(candidate) else ""


def _printable(text: str) -> bool:
    return not any(
        ch.isspace() or unicodedata.category(ch).startswith("C") for ch in text
    )


def _one_line(text: str, limit: int) -> str:
    cleaned = "".join(
        " " if ch.isspace() else ch
        for ch in text or ""
        if ch.isspace() or not unicodedata.category(ch).startswith("C")
    )
    return re.sub(r" {2,}", " ", cleaned).strip()[:limit]


def _unique(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))[:MAX_IDS]


# --- status codes in words ----------------------------------------------------

# RFC 3463 and Microsoft's "Email non-delivery reports and SMTP errors in Exchange
# Online": https://learn.microsoft.com/en-us/exchange/troubleshoot/email-delivery/ndr/non-delivery-reports-in-exchange-online
STATUS_MEANINGS = {
    "4.2.2": _("the recipient's mailbox is full for now"),
    "4.3.2": _("the recipient's mailbox is receiving too many messages right now"),
    "4.4.1": _("the recipient's server did not answer"),
    "4.4.2": _("the connection to the recipient's server was lost"),
    "4.4.7": _("delivery is delayed: the message has not been delivered yet"),
    "4.4.316": _("the recipient's server refused the connection"),
    "4.5.3": _("the message has too many recipients"),
    "5.0.350": _("the recipient's organization rejected the message"),
    "5.1.0": _("the address was rejected or could not be resolved"),
    "5.1.1": _("the address does not exist (bad mailbox)"),
    "5.1.2": _("the recipient's domain does not exist or does not accept mail"),
    "5.1.3": _("the address is not valid"),
    "5.1.6": _("the recipient has moved and left no forwarding address"),
    "5.1.8": _("the sending account is blocked for sending spam (bad outbound sender)"),
    "5.1.10": _("the recipient's address does not exist (recipient not found)"),
    "5.1.90": _("the sender reached its daily limit of recipients"),
    "5.2.1": _("the recipient's mailbox is disabled"),
    "5.2.2": _(
        "the recipient's mailbox is full (from Exchange Online it can also mean the sender exceeded its sending limits)"
    ),
    "5.2.3": _("the message is too large for the recipient's mailbox"),
    "5.2.121": _("the recipient accepts no more messages from this sender this hour"),
    "5.2.122": _("the recipient accepts no more messages this hour"),
    "5.3.4": _("the message is too large for the recipient's server"),
    "5.4.1": _("the recipient's server refused to relay (relay access denied)"),
    "5.4.4": _("the recipient's domain could not be reached (unable to route)"),
    "5.4.6": _("the message looped between servers (routing loop)"),
    "5.4.14": _("hop count exceeded: the message looped between servers"),
    "5.4.300": _("the message expired before it could be delivered"),
    "5.4.310": _("the recipient's domain does not exist in DNS"),
    "5.4.312": _("the message expired: the recipient's domain could not be looked up"),
    "5.4.316": _("the message expired: the recipient's server refused the connection"),
    "5.5.0": _("the recipient's mailbox is unavailable"),
    "5.6.11": _("the message contains invalid characters"),
    "5.7.1": _("the sender is not authorized to send to this recipient"),
    "5.7.12": _("the recipient accepts mail only from inside its organization"),
    "5.7.13": _("the public folder accepts mail only from inside its organization"),
    "5.7.23": _("the message failed the sender's SPF check"),
    "5.7.57": _("the sending app was not authenticated (SMTP relay)"),
    "5.7.64": _("relay access denied for the sending organization (connector)"),
    "5.7.124": _("the sender is not on the group's allowed senders list"),
    "5.7.133": _("the group accepts mail only from inside its organization"),
    "5.7.134": _("the mailbox accepts mail only from inside its organization"),
    "5.7.135": _("the public folder accepts mail only from inside its organization"),
    "5.7.136": _("the mail user accepts mail only from inside its organization"),
    "5.7.501": _("the sending account is banned for spam"),
    "5.7.502": _("the sending account is banned for spam"),
    "5.7.503": _("the sending account is banned for spam"),
    "5.7.504": _("the recipient's address was rejected (access denied)"),
    "5.7.505": _("the recipient is banned"),
    "5.7.509": _(
        "the sender's domain failed DMARC and its policy is reject (DMARC reject)"
    ),
    "5.7.520": _("the organization does not allow automatic forwarding outside it"),
    "5.7.703": _("the recipient is blocked by the organization's block list"),
    "5.7.705": _("the sending organization is banned for suspicious traffic"),
    "5.7.708": _("traffic from the sending IP address is not accepted"),
    "5.7.750": _("the sender's domain is not registered in the organization"),
}

CLASS_MEANINGS = {
    "2": _("delivered"),
    "4": _("temporary failure"),
    "5": _("permanent failure"),
}
SUBJECT_MEANINGS = {
    "0": _("undefined problem"),
    "1": _("addressing problem"),
    "2": _("problem with the recipient's mailbox"),
    "3": _("problem with the recipient's mail system"),
    "4": _("network or routing problem"),
    "5": _("mail protocol problem"),
    "6": _("problem with the message's content"),
    "7": _("security or policy problem"),
}


def status_meaning(code: str) -> str:
    """An enhanced status code (RFC 3463, Exchange Online's own codes) in words
    for people; a generic phrase when the code is unknown or empty."""
    code = _status_code(code or "")
    if code in STATUS_MEANINGS:
        return STATUS_MEANINGS[code]
    status_class, subject, detail = code.split(".") if code else ("", "", "")
    if status_class == "5" and subject == "7" and 500 <= int(detail) <= 699:
        return _("the sending IP address or account is banned for spam")
    if status_class == "5" and subject == "7" and 700 <= int(detail) <= 750:
        return _("the sending organization is banned for suspicious traffic")
    if status_class == "4" and subject == "7" and 500 <= int(detail) <= 899:
        return _("sending is temporarily restricted for suspicious activity")
    if status_class in CLASS_MEANINGS and subject in SUBJECT_MEANINGS:
        return format_lazy(
            "{}: {}", CLASS_MEANINGS[status_class], SUBJECT_MEANINGS[subject]
        )
    if status_class in CLASS_MEANINGS:
        return CLASS_MEANINGS[status_class]
    return _("the delivery failed for a reason the report does not say")
