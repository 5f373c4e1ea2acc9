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

import logging
import smtplib
import socket
import ssl
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from django.conf import settings

from integrations.exceptions import (
    AuthenticationFailed,
    ConfigurationError,
    ConnectionFailed,
    IntegrationError,
    RecipientRejected,
    SenderRejected,
    ServiceUnavailable,
    Throttled,
    UnexpectedResponse,
)
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


def error_from_reply(code: int, text: bytes | str, *, stage: str) -> IntegrationError:
    """Translate one SMTP reply (code and text) at `stage` into the error hierarchy."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    text = " ".join(text.split())[:300]
    detail = f"{stage}: {code} {text}"
    reply = f"{code} {text}"[:120]
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


def _cte(text: str) -> str:
    return (
        "7bit"
        if text.isascii() and max(map(len, text.splitlines() or [""])) < 990
        else "quoted-printable"
    )


def build_message(email, *, sender: str, sender_name: str = "") -> EmailMessage:
    """A MIME message for an `OutgoingEmail`: text, with an HTML alternative if any."""
    message = EmailMessage(policy=email_policy.SMTP)
    message["Subject"] = email.subject
    local, _, domain = sender.rpartition("@")
    # headerregistry quotes and RFC 2047-encodes the display name; it refuses CR and
    # LF, which a name saved before the form checked it could hold: made spaces.
    message["From"] = Address(
        display_name=single_line(sender_name, 100), username=local, domain=domain
    )
    message["To"] = ", ".join(email.to)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = email.message_id or make_msgid(domain=domain or None)
    for name, value in (email.headers or {}).items():
        if name.lower() in {"from", "to", "subject", "message-id", "date", "cc", "bcc"}:
            continue
        message[name] = value
    # Quoted-printable keeps non-ASCII text 7-bit clean for any server.
    message.set_content(email.text or "", cte=_cte(email.text or ""))
    if email.html:
        message.add_alternative(email.html, subtype="html", cte=_cte(email.html))
    return message


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
        """Open the TCP connection (TLS from the start for SSL/TLS) and say EHLO."""
        timeout = self._tick()
        try:
            if self.security == Security.SSL:
                client = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    timeout=timeout,
                    context=ssl_context(self.minimum_tls),
                )
                self.tls_version = client.sock.version() or ""
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=timeout)
            self.client = client
            self._tick()
            code, text = client.ehlo()
            if code != 250:
                code, text = client.helo()
                if code != 250:
                    raise error_from_reply(code, text, stage="ehlo")
        except Exception as exc:
            self.close()
            raise error_from_smtp_exception(exc, stage="connect")
        return f"{self.host}:{self.port}"

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
        return f"{code} {text.decode('utf-8', 'replace')[:80]}"

    def rcpt_to(self, recipients) -> None:
        refused = []
        for recipient in recipients:
            self._tick()
            try:
                code, text = self.client.rcpt(recipient)
            except Exception as exc:
                raise error_from_smtp_exception(exc, stage="rcpt")
            if code not in (250, 251):
                refused.append((code, text))
        if refused and len(refused) == len(list(recipients)):
            self._reset()
            raise error_from_reply(*refused[0], stage="rcpt")

    def data(self, message: EmailMessage) -> str:
        self._tick()
        try:
            code, text = self.client.data(message.as_bytes())
        except Exception as exc:
            raise error_from_smtp_exception(exc, stage="data")
        if code != 250:
            raise error_from_reply(code, text, stage="data")
        return f"{code} {text.decode('utf-8', 'replace')[:120]}"

    def send(self, message: EmailMessage, *, sender: str, recipients) -> str:
        """MAIL FROM, RCPT TO each recipient, DATA: the server's final reply."""
        self.mail_from(sender)
        self.rcpt_to(recipients)
        return self.data(message)

    # --- housekeeping -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.sock is not None

    def _reset(self):
        try:
            self.client.rset()
        except (smtplib.SMTPException, OSError):
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
