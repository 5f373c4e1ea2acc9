"""
SMTP transport shared by every provider that submits mail over SMTP: one session per
batch, certificate-verified TLS (STARTTLS or implicit), a minimum TLS version, time
limits, AUTH PLAIN/LOGIN or XOAUTH2, and the translation of every reply and socket
failure into the error hierarchy.

XOAUTH2 as Microsoft documents it:
https://learn.microsoft.com/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth
Exchange Online reply codes:
https://learn.microsoft.com/exchange/mail-flow-best-practices/non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online
"""

import binascii
import io
import logging
import re
import secrets
import smtplib
import socket
import ssl
from collections.abc import Callable
from email.charset import QP, Charset
from email.generator import NLCRE, BytesGenerator
from email.header import Header
from email.message import Message
from email.policy import Compat32
from email.utils import formataddr, formatdate, make_msgid

from django.conf import settings

from integrations.exceptions import (
    AddressRefused,
    AuthenticationFailed,
    ConfigurationError,
    ConnectionFailed,
    IntegrationError,
    RecipientRejected,
    SenderRejected,
    ServiceUnavailable,
    Throttled,
    TlsError,
    UnexpectedResponse,
)
from integrations.providers import outbound
from integrations.providers.http import (
    error_from_exception,
    remaining_time,
    ssl_context,
)
from integrations.providers.smtp_choices import MinimumTls, Security
from integrations.text import single_line

logger = logging.getLogger(__name__)


TLS_VERSIONS = {
    MinimumTls.TLS_1_2: ssl.TLSVersion.TLSv1_2,
    MinimumTls.TLS_1_3: ssl.TLSVersion.TLSv1_3,
}

# Enhanced status code (or reply code) -> (exception class, our code). Checked in
# order; the first match wins.
_REPLIES = (
    ("5.7.139", AuthenticationFailed, "smtp_auth_disabled"),
    ("5.7.30", AuthenticationFailed, "basic_auth_unsupported"),
    ("5.7.57", AuthenticationFailed, "relay_denied"),
    ("5.7.60", SenderRejected, "send_as_denied"),
    ("5.2.252", SenderRejected, "send_as_denied"),
    ("5.7.3", AuthenticationFailed, "smtp_auth_failed"),
    # Exchange Online's submission limit (30 messages a minute per mailbox): the
    # same failure as Graph's 429, so the same code.
    ("4.3.2", Throttled, "throttled"),
)


#: An enhanced status code (RFC 3463) in a reply's text.
_ENHANCED_STATUS = re.compile(r"\b[245]\.\d{1,3}\.\d{1,3}\b")


def reply_codes(code: int, text: str) -> str:
    """What of a reply may be shown: its code and enhanced status code, digits only
    (the text is the peer's and goes only to logs and the audit log)."""
    enhanced = _ENHANCED_STATUS.search(text)
    return f"{code} {enhanced.group(0)}" if enhanced else str(code)


def error_from_reply(code: int, text: bytes | str, *, stage: str) -> IntegrationError:
    """Translate one SMTP reply (code and text) at `stage` into the error hierarchy.

    The reply's text is kept in `detail` only (cut, on one line); `request_id`, which
    pages show, holds its codes. A line that is not an SMTP reply at all (smtplib
    reads it as code -1: an SSH or HTTP banner) did not come from an SMTP server.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = single_line(text, 300)
    detail = f"{stage}: {code} {text}"
    if not 200 <= code <= 599:
        return ConnectionFailed(
            f"{stage}: not an SMTP reply: {text}", code="smtp_no_answer"
        )
    reply = reply_codes(code, text)
    for needle, cls, our_code in _REPLIES:
        if needle in text:
            return cls(detail, code=our_code, request_id=reply, status=code)
    if code == 421:
        return Throttled(detail, request_id=reply, status=code)
    if code == 535:
        return AuthenticationFailed(
            detail, code="smtp_auth_failed", request_id=reply, status=code
        )
    if code == 530:
        return AuthenticationFailed(
            detail, code="relay_denied", request_id=reply, status=code
        )
    if 400 <= code < 500:
        return ServiceUnavailable(detail, request_id=reply, status=code)
    if stage == "rcpt":
        return RecipientRejected(detail, request_id=reply, status=code)
    if stage == "mail":
        return SenderRejected(
            detail, code="sender_rejected", request_id=reply, status=code
        )
    return UnexpectedResponse(detail, request_id=reply, status=code)


def error_from_smtp_exception(exc: BaseException, *, stage: str) -> IntegrationError:
    """Translate an smtplib, socket or ssl exception raised at `stage`."""
    if isinstance(exc, IntegrationError):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()), (550, b""))
        return error_from_reply(code, text, stage="rcpt")
    if isinstance(exc, smtplib.SMTPResponseException):
        return error_from_reply(exc.smtp_code, exc.smtp_error, stage=stage)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return ConfigurationError(f"{stage}: {exc}", code="smtp_not_supported")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        # smtplib turns a read timeout into "Connection unexpectedly closed: timed out"
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, (socket.timeout, TimeoutError)) or "timed out" in str(exc):
            return ConnectionFailed(f"{stage}: timed out", code="timeout")
        if isinstance(cause, ssl.SSLError):
            return error_from_exception(cause)
        return ConnectionFailed(f"{stage}: server disconnected")
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        return error_from_exception(exc)
    if isinstance(exc, (OSError, smtplib.SMTPException)):
        return error_from_exception(exc)
    return UnexpectedResponse(f"{stage}: {type(exc).__name__}")


def xoauth2_string(user: str, access_token: str) -> str:
    """The SASL XOAUTH2 initial response, before base64 (smtplib encodes it)."""
    return f"user={user}\x01auth=Bearer {access_token}\x01\x01"


_SPACE = re.compile(r"\s")
#: A line starting with a dot, doubled in the content after DATA (RFC 5321 4.5.2).
_LEADING_DOT = re.compile(rb"(?m)^\.")


class _SmtpCompat32(Compat32):
    """compat32 (headers kept as strings, as Django's mail builds them) with CRLF
    line ends, and no folding work for an ASCII header that fits on its line (it is
    written as is, as compat32 writes it) or that has no space to fold at (a long
    Message-ID: compat32 would only break the line after the colon)."""

    def _fold(self, name, value, sanitize):
        if (
            isinstance(value, str)
            and value.isascii()
            and (
                len(name) + 2 + len(value) <= self.max_line_length
                or (len(name) + 2 + len(value) <= 998 and not _SPACE.search(value))
            )
            and "\r" not in value
            and "\n" not in value
        ):
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)


_POLICY = _SmtpCompat32(linesep="\r\n")
# Non-ASCII header text as RFC 2047 "Q" encoded words, as the SMTP policy of the
# email package wrote it (a Charset of our own: the package's shared one is left be).
_UTF8_Q = Charset("utf-8")
_UTF8_Q.header_encoding = QP
_OWN_HEADERS = {"from", "to", "subject", "message-id", "date", "cc", "bcc"}


def _one_line(value: str) -> str:
    # A line break would start a new header: refused, as the SMTP policy refused it.
    if "\r" in value or "\n" in value:
        raise ValueError("Header values may not contain linefeed or carriage return")
    return value


def _header(value: str, *, text: bool = True) -> str | Header:
    """A header value ready to write: ASCII as is, other text encoded. In `text`
    (an unstructured value: Subject, X-...) what looks like an encoded word
    ("=?...?=") is encoded too, so that it reads as written."""
    if _one_line(value).isascii() and not (text and "=?" in value):
        return value
    return Header(value, _UTF8_Q)


def _from_header(sender: str, sender_name: str) -> str | Header:
    # A name saved before the form checked it may hold CR or LF: made spaces.
    # formataddr quotes a name with specials; a non-ASCII name is encoded.
    name = single_line(sender_name, 100)
    if name.isascii() and "=?" not in name:
        return _header(formataddr((name, sender)), text=False)
    header = Header(name, _UTF8_Q, header_name="From")
    header.append(f" <{_one_line(sender)}>", "us-ascii")
    return header


def _text_part(text: str, subtype: str) -> Message:
    """A text/<subtype> part in UTF-8: 7bit when the text allows, else
    quoted-printable (7-bit clean for any server). Line breaks are made one kind and
    the body ends with one, as `EmailMessage.set_content` did."""
    lines = text.encode("utf-8").splitlines()
    body = b"\n".join(lines) + b"\n"
    part = Message(policy=_POLICY)
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    # 7bit: ASCII in lines SMTP allows (under 998 octets; 990 leaves room).
    if text.isascii() and max(map(len, lines), default=0) < 990:
        part["Content-Transfer-Encoding"] = "7bit"
        part.set_payload(body.decode("ascii"))
    else:
        part["Content-Transfer-Encoding"] = "quoted-printable"
        # binascii's encoder (C) rather than the email package's (Python).
        part.set_payload(binascii.b2a_qp(body, istext=True).decode("ascii"))
    return part


def _boundary(parts: list[Message]) -> str:
    # "=_" never occurs in quoted-printable text; 7bit text is checked.
    while True:
        boundary = f"=_{secrets.token_hex(16)}"
        if not any(boundary in part.get_payload() for part in parts):
            return boundary


def build_message(email, *, sender: str, sender_name: str = "") -> Message:
    """A MIME message for an `OutgoingEmail`: text, with an HTML alternative if any.

    Built with the email package's compat32 API, as Django's mail builds messages
    (several times cheaper than `EmailMessage.set_content` under the SMTP policy),
    and with the structure, headers and encodings that produced: a text part and an
    HTML part in `multipart/alternative`, each UTF-8 in 7bit or quoted-printable.
    `as_bytes()` has CRLF line ends.
    """
    message = Message(policy=_POLICY)
    message["Subject"] = _header(email.subject)
    message["From"] = _from_header(sender, sender_name)
    message["To"] = _header(", ".join(email.to), text=False)
    message["Date"] = formatdate(localtime=False)
    domain = sender.rpartition("@")[2]
    message["Message-ID"] = _header(
        email.message_id or make_msgid(domain=domain or None), text=False
    )
    for name, value in (email.headers or {}).items():
        if name.lower() in _OWN_HEADERS:
            continue
        message[name] = _header(value)
    text = _text_part(email.text or "", "plain")
    if not email.html:
        for name, value in text.items():
            message[name] = value
        message["MIME-Version"] = "1.0"
        message.set_payload(text.get_payload())
        return message
    html = _text_part(email.html, "html")
    html["MIME-Version"] = "1.0"
    message["MIME-Version"] = "1.0"
    message["Content-Type"] = (
        f'multipart/alternative; boundary="{_boundary([text, html])}"'
    )
    message.set_payload([text, html])
    return message


class _BytesGenerator(BytesGenerator):
    """The email package's generator, writing each text payload in one piece
    instead of a write per line (most of what flattening a message cost): the
    same bytes."""

    def _write_lines(self, lines):
        if lines:
            self.write(NLCRE.sub(self._NL, lines))


def message_bytes(message: Message) -> bytes:
    """The same bytes as `message.as_bytes()`, in a fraction of the time."""
    out = io.BytesIO()
    _BytesGenerator(out, mangle_from_=False, policy=message.policy).flatten(
        message, unixfrom=False
    )
    return out.getvalue()


def _connect_error(error: IntegrationError, destination) -> IntegrationError:
    """What a failure to reach an SMTP server says, in our words.

    For an address an admin typed, a closed port, a dropped or timed-out connection
    and a peer that is not an SMTP server (or does not speak TLS on an SSL/TLS port)
    all read the same ("did not answer as an SMTP server"), so Test Connection does
    not tell open, closed and filtered ports apart; what happened is in `detail`
    (logs and the audit log). A real SMTP server's reply, a refused address and a
    certificate that does not verify keep their own words. The operator's own host
    (M365_SMTP_HOST) keeps the precise codes.
    """
    if destination.trusted or isinstance(error, AddressRefused):
        return error
    tls_refused = isinstance(error, TlsError) and "CERTIFICATE_VERIFY_FAILED" in (
        error.detail
    )
    if error.code in _UNREACHABLE and not tls_refused:
        # The audit log shows `detail`: what the peer said, when it said something,
        # but not whether the port was closed, silent or dropped the connection.
        said = (
            error.detail if error.status or "not an SMTP reply" in error.detail else ""
        )
        return ConnectionFailed(
            f"{destination.label}: no SMTP answer" + (f"; {said}" if said else ""),
            code="smtp_no_answer",
            address=destination.label,
        )
    return error


_UNREACHABLE = frozenset(
    {
        "smtp_no_answer",
        "connection_failed",
        "connection_refused",
        "timeout",
        "tls_error",
        "unexpected",
    }
)


class _PinnedSMTP(smtplib.SMTP):
    """smtplib.SMTP connecting to the checked addresses only (no second lookup)."""

    def __init__(self, destination, **kwargs):
        self._destination = destination
        super().__init__(**kwargs)
        # What smtplib verifies the certificate for (STARTTLS, SSL/TLS): the name.
        self._host = destination.host

    def _get_socket(self, host, port, timeout):
        return outbound.connect(self._destination, timeout)


class _PinnedSMTPSSL(smtplib.SMTP_SSL):
    """smtplib.SMTP_SSL to the checked addresses; the certificate is verified for
    the host name (`server_hostname`), as smtplib does."""

    def __init__(self, destination, **kwargs):
        self._destination = destination
        super().__init__(**kwargs)
        # What smtplib verifies the certificate for (STARTTLS, SSL/TLS): the name.
        self._host = destination.host

    def _get_socket(self, host, port, timeout):
        sock = outbound.connect(self._destination, timeout)
        try:
            return self.context.wrap_socket(sock, server_hostname=self._host)
        except BaseException:
            sock.close()
            raise


class SmtpSession:
    """One SMTP connection, driven step by step (Test) or message by message (send).

    Every step raises only `IntegrationError`s. The socket timeout is clamped to the
    overall deadline (`providers.http.time_limit`) before each step.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        security: str = Security.STARTTLS,
        minimum_tls: str = MinimumTls.TLS_1_2,
        timeout: float | None = None,
    ):
        if security == Security.NONE and not settings.SMTP_ALLOW_INSECURE:
            raise ConfigurationError(
                "plain-text SMTP is not allowed", code="smtp_insecure_not_allowed"
            )
        self.host = host
        self.port = port
        self.security = security
        self.minimum_tls = TLS_VERSIONS.get(minimum_tls, ssl.TLSVersion.TLSv1_2)
        self.timeout = timeout or settings.SMTP_TIMEOUT
        self.client: smtplib.SMTP | None = None
        self.tls_version = ""

    # --- steps --------------------------------------------------------------------

    def _tick(self):
        """Clamp the socket timeout to what is left of the deadline."""
        seconds = remaining_time(self.timeout)
        if self.client is not None and self.client.sock is not None:
            self.client.sock.settimeout(seconds)
        return seconds

    def connect(self) -> str:
        """Check the address (`outbound`), open the TCP connection to the checked
        address (TLS from the start for SSL/TLS, verified for the host name) and say
        EHLO."""
        timeout = self._tick()
        try:
            destination = outbound.smtp_destination(self.host, self.port)
        except OSError as exc:  # the name does not resolve
            raise error_from_exception(exc)
        # Before connecting: an unreadable M365_CA_BUNDLE is not the peer's doing.
        context = (
            ssl_context(self.minimum_tls) if self.security == Security.SSL else None
        )
        try:
            if self.security == Security.SSL:
                client = _PinnedSMTPSSL(destination, timeout=timeout, context=context)
            else:
                client = _PinnedSMTP(destination, timeout=timeout)
            self.client = client
            code, text = client.connect(self.host, self.port)
            if code != 220:
                raise error_from_reply(code, text, stage="connect")
            if self.security == Security.SSL:
                self.tls_version = client.sock.version() or ""
            self._tick()
            code, text = client.ehlo()
            if code != 250:
                code, text = client.helo()
                if code != 250:
                    raise error_from_reply(code, text, stage="ehlo")
        except Exception as exc:
            self.close()
            raise _connect_error(
                error_from_smtp_exception(exc, stage="connect"), destination
            )
        return destination.label

    def starttls(self) -> str:
        """Upgrade to TLS (STARTTLS), verifying the certificate and the version."""
        if self.security == Security.SSL:
            return self.tls_version
        if self.security == Security.NONE:
            return ""
        self._tick()
        try:
            if not self.client.has_extn("starttls"):
                raise ConnectionFailed(
                    "server does not offer STARTTLS", code="starttls_unavailable"
                )
            self.client.starttls(context=ssl_context(self.minimum_tls))
            self.tls_version = self.client.sock.version() or ""
            self._tick()
            self.client.ehlo()
        except Exception as exc:
            self.close()
            raise error_from_smtp_exception(exc, stage="starttls")
        return self.tls_version

    def login(self, username: str, password: str) -> None:
        """AUTH PLAIN, or LOGIN when PLAIN is not offered: one attempt only.

        (smtplib's `login()` would try the next mechanism after a refusal, doubling
        failed sign-ins against the account's lockout policy.)
        """
        self._tick()
        client = self.client
        try:
            if not client.has_extn("auth"):
                raise AuthenticationFailed(
                    "server does not offer AUTH", code="smtp_auth_unavailable"
                )
            offered = client.esmtp_features["auth"].upper().split()
            mechanism = (
                "PLAIN" if "PLAIN" in offered or "LOGIN" not in offered else "LOGIN"
            )
            client.user, client.password = username, password
            try:
                handler = (
                    client.auth_plain if mechanism == "PLAIN" else client.auth_login
                )
                client.auth(mechanism, handler, initial_response_ok=True)
            finally:
                client.user = client.password = None
        except Exception as exc:
            raise error_from_smtp_exception(exc, stage="auth")

    def authenticate_xoauth2(self, user: str, access_token: str) -> None:
        """AUTH XOAUTH2 with the access token, as the mailbox `user`."""
        self._tick()
        initial = xoauth2_string(user, access_token)

        def respond(challenge=None):
            # A 334 challenge carries a JSON error; the client answers empty and
            # the server then sends the final 5xx reply.
            return initial if challenge is None else ""

        try:
            if not self.client.has_extn("auth"):
                raise AuthenticationFailed(
                    "server does not offer AUTH", code="smtp_auth_unavailable"
                )
            self.client.auth("XOAUTH2", respond, initial_response_ok=True)
        except Exception as exc:
            raise error_from_smtp_exception(exc, stage="auth")

    def mail_from(self, sender: str) -> str:
        self._tick()
        try:
            code, text = self.client.mail(sender)
        except Exception as exc:
            raise error_from_smtp_exception(exc, stage="mail")
        if code != 250:
            self._reset()
            raise error_from_reply(code, text, stage="mail")
        return f"{code} {single_line(text.decode('utf-8', 'replace'), 80)}"

    def rcpt_to(self, recipients) -> None:
        replies = []
        for recipient in recipients:
            self._tick()
            try:
                replies.append(self.client.rcpt(recipient))
            except Exception as exc:
                raise error_from_smtp_exception(exc, stage="rcpt")
        try:
            self._recipients_answered(replies)
        except IntegrationError:
            self._reset()
            raise

    def _recipients_answered(self, replies: list[tuple[int, bytes]]) -> None:
        """The RCPT TO replies: an error when the server refused every recipient
        (the message goes to those it accepted)."""
        refused = [reply for reply in replies if reply[0] not in (250, 251)]
        if refused and len(refused) == len(replies):
            raise error_from_reply(*refused[0], stage="rcpt")

    def data(self, message: Message) -> str:
        """DATA and the content: the server's final reply."""
        self._data_command()
        self._write_content(message)
        return self._final_reply()

    def _data_command(self) -> None:
        """DATA, answered 354: the server waits for the content."""
        self._tick()
        try:
            code, text = self.client.docmd("DATA")
        except Exception as exc:
            raise error_from_smtp_exception(exc, stage="data")
        if code != 354:
            self._reset()
            raise error_from_reply(code, text, stage="data")

    def submit(self, message: Message, *, sender: str, recipients) -> Callable[[], str]:
        """MAIL FROM, RCPT TO each recipient, DATA; returns what reads the server's
        final reply (call it before the session's next command).

        When the server offers PIPELINING (RFC 2920; Exchange Online does), MAIL
        FROM, every RCPT TO and DATA go in one write and their replies are read
        after (`_pipelined_envelope`): two round trips a message instead of one
        per command. Either way the content's reply is left to read, so the
        caller works while the server takes the message. The same replies and
        errors either way.
        """
        recipients = list(recipients)
        if self.client.has_extn("pipelining"):
            self._pipelined_envelope(sender, recipients)
        else:
            self.mail_from(sender)
            self.rcpt_to(recipients)
            self._data_command()
        self._write_content(message)
        return self._final_reply

    def _pipelined_envelope(self, sender: str, recipients: list) -> None:
        """MAIL FROM, RCPT TO each recipient and DATA in one write (DATA may end a
        group, RFC 2920 section 3.1), then their replies: on return the server
        waits for the content. A refusal raises what `mail_from`, `rcpt_to` or
        `data` would."""
        self._tick()
        try:
            self.client.send(
                f"MAIL FROM:{smtplib.quoteaddr(sender)}\r\n"
                + "".join(f"RCPT TO:{smtplib.quoteaddr(r)}\r\n" for r in recipients)
                + "DATA\r\n"
            )
            mail = self.client.getreply()
        except Exception as exc:
            raise error_from_smtp_exception(exc, stage="mail")
        replies = []
        try:
            for _recipient in recipients:
                replies.append(self.client.getreply())
        except Exception as exc:
            raise error_from_smtp_exception(exc, stage="rcpt")
        try:
            data = self.client.getreply()
        except Exception as exc:
            raise error_from_smtp_exception(exc, stage="data")
        try:
            if mail[0] != 250:
                raise error_from_reply(*mail, stage="mail")
            self._recipients_answered(replies)
            if data[0] != 354:
                raise error_from_reply(*data, stage="data")
        except IntegrationError:
            if data[0] == 354:
                # The server took DATA without a sender or recipient it accepted:
                # nothing may be sent, and only the content's end would leave the
                # DATA state. The connection is dropped instead (an unfinished
                # DATA delivers nothing); the next message opens a session.
                self._abandon()
            else:
                self._reset()
            raise

    def _write_content(self, message: Message) -> None:
        """The message after DATA's 354: dot-stuffed, ending CRLF.CRLF, as
        smtplib's `data` sends it."""
        self._tick()
        content = message_bytes(message)
        if content.startswith(b".") or b"\n." in content:
            content = _LEADING_DOT.sub(b"..", content)
        if not content.endswith(b"\r\n"):
            content += b"\r\n"
        try:
            self.client.send(content + b".\r\n")
        except Exception as exc:
            raise error_from_smtp_exception(exc, stage="data")

    def _final_reply(self) -> str:
        """The server's reply to the content."""
        self._tick()
        try:
            code, text = self.client.getreply()
        except Exception as exc:
            raise error_from_smtp_exception(exc, stage="data")
        if code != 250:
            raise error_from_reply(code, text, stage="data")
        return f"{code} {single_line(text.decode('utf-8', 'replace'), 120)}"

    # --- housekeeping -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.sock is not None

    def _reset(self):
        try:
            self.client.rset()
        except (smtplib.SMTPException, OSError):
            pass

    def _abandon(self) -> None:
        """Drop the connection without QUIT (which would be read as content)."""
        client, self.client = self.client, None
        try:
            client.close()
        except OSError:
            pass

    def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            if client.sock is not None:
                client.sock.settimeout(2)
                client.quit()
        except (TimeoutError, smtplib.SMTPException, OSError):
            pass
        finally:
            try:
                client.close()
            except OSError:
                pass
