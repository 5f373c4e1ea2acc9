"""Exchange Online SMTP client submission (smtp.office365.com:587) on aiosmtpd.

https://learn.microsoft.com/en-us/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth
https://learn.microsoft.com/en-us/exchange/clients-and-mobile-in-exchange-online/authenticated-client-smtp-submission
https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online
"""

import asyncio
import base64
import binascii
import collections
import email
import email.policy
import email.utils
import uuid

from aiosmtpd.smtp import SMTP, AuthResult, Session

from sandbox import mime
from sandbox.bearer import check_bearer
from sandbox.delivery import deliver
from sandbox.identity import reset_transport
from sandbox.scopes import EXCHANGE
from sandbox.tokens import TokenError

HOSTNAME = "sandbox.outlook.office365.com"
IDENT = "Microsoft ESMTP MAIL Service ready"
SIZE_LIMIT = 37748736

# Exchange Online's reply texts.
NOT_AUTHENTICATED = "530 5.7.57 Client not authenticated to send mail."
AUTH_FAILED = "535 5.7.3 Authentication unsuccessful"
BASIC_DISABLED = (
    "535 5.7.139 Authentication unsuccessful, basic authentication is disabled."
)
SMTP_AUTH_DISABLED = (
    "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
    "for the Tenant."
)
SEND_AS_DENIED_MAIL = (
    "550 5.7.60 SMTP; Client does not have permissions to send as this sender"
)
SEND_AS_DENIED_DATA = (
    "554 5.2.252 SendAsDenied; {mailbox} not allowed to send as {sender}; "
    "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied;"
    " Failed to process message due to a permanent exception with message [Cannot "
    "submit message.]"
)
RATE_EXCEEDED = (
    "451 4.3.2 Message submission rate for this client has exceeded the configured "
    "limit"
)
DEFAULT_FAULT_REPLY = "451 4.3.0 Temporary server error. Please try again later."
DEFAULT_CONNECT_FAULT_REPLY = (
    "421 4.3.2 Service not available, closing transmission channel"
)
# aiosmtpd's wording -> Exchange Online's.
REPLACED_REPLIES = {
    "530 Must issue a STARTTLS command first": NOT_AUTHENTICATED,
    "503 Error: send HELO first": "503 5.5.2 Send hello first",
    "503 Error: send EHLO first": "503 5.5.2 Send hello first",
}
ACCEPTED = "250 2.0.0 OK {message_id} [Hostname=SANDBOX.prod.outlook.com]"


class QuietSession(Session):
    """aiosmtpd's Session without the deprecation warning on ``login_data``."""

    @property
    def login_data(self):
        return self._login_data

    @login_data.setter
    def login_data(self, value):
        self._login_data = value


class ExchangeSMTP(SMTP):
    """aiosmtpd's SMTP with Exchange Online's replies and injected faults."""

    # The stream reader must take an AUTH XOAUTH2 line with a whole JWT in it;
    # DATA lines keep RFC 5321's limit (set per instance below).
    line_length_limit = 65536

    def __init__(self, ctx, handler, **kwargs):
        super().__init__(handler, **kwargs)
        self.ctx = ctx
        self.line_length_limit = 1001
        self.command_size_limit = 32768  # before EHLO, so AUTH gets "send hello"
        # aiosmtpd keeps these limits on the class; keep ours per session.
        self.command_size_limits = collections.defaultdict(
            lambda: SMTP.command_size_limit, {"AUTH": 32768}
        )

    def _create_session(self):
        return QuietSession(self.loop)

    def connection_made(self, transport):
        first = self.transport is None
        super().connection_made(transport)
        if first:
            self.ctx.smtp_protocols.add(self)

    def connection_lost(self, error):
        self.ctx.smtp_protocols.discard(self)
        super().connection_lost(error)

    async def push(self, status):
        status = REPLACED_REPLIES.get(status, status)
        await super().push(status)
        code = (
            status[:3]
            if isinstance(status, str)
            else status[:3].decode("ascii", "replace")
        )
        if code == "421" and self.transport is not None:
            # 421: the server closes the transmission channel (RFC 5321 3.8).
            self.transport.close()

    async def check_auth_needed(self, caller_method: str) -> bool:
        if self._auth_required and not self.session.authenticated:
            await self.push(NOT_AUTHENTICATED)
            return True
        return False

    async def fault(self, stage: str) -> str | None:
        """The reply of an injected fault for ``stage``, if one fires.

        A ``drop`` fault closes the connection (``reset``: with a TCP reset) and
        cancels the session.
        """
        fault = self.ctx.state.take_fault("smtp", stage)
        if not fault:
            return None
        if fault.get("delay"):
            await asyncio.sleep(float(fault["delay"]))
        if fault.get("reset"):
            reset_transport(self.transport)
            raise asyncio.CancelledError()
        if fault.get("drop"):
            if self.transport is not None:
                self.transport.abort()
            raise asyncio.CancelledError()
        if stage == "connect":
            return fault.get("smtp_reply") or DEFAULT_CONNECT_FAULT_REPLY
        return fault.get("smtp_reply") or DEFAULT_FAULT_REPLY

    async def _handle_client(self):
        reply = await self.fault("connect")
        if reply:
            await self.push(reply)
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    async def smtp_AUTH(self, arg):
        if not self.session.authenticated and self._tls_protocol:
            reply = await self.fault("auth")
            if reply:
                await self.push(reply)
                return
        await super().smtp_AUTH(arg)

    async def smtp_MAIL(self, arg):
        reply = await self.fault("mail") if self.session.authenticated else None
        if reply:
            await self.push(reply)
            return
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg):
        reply = await self.fault("rcpt") if self.session.authenticated else None
        if reply:
            await self.push(reply)
            return
        await super().smtp_RCPT(arg)


class Identity:
    """Who authenticated an SMTP session and for which mailbox."""

    def __init__(self, kind, tenant, mailbox, client_id=None):
        self.kind = kind
        self.tenant = tenant
        self.mailbox = mailbox
        self.client_id = client_id

    def may_send_as(self, address: str) -> bool:
        return self.mailbox.may_send_as(address)

    def authenticated_as(self) -> dict:
        data = {"kind": self.kind, "user": self.mailbox.user_principal_name}
        if self.client_id:
            data["client_id"] = self.client_id
        return data

    @property
    def key(self) -> str:
        return f"{self.client_id or '-'}:{self.mailbox.user_principal_name.lower()}"


class ExchangeHandler:
    """aiosmtpd handler: AUTH checks, send-as rules and storing messages."""

    def __init__(self, ctx):
        self.ctx = ctx

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        """EHLO as aiosmtpd answers it, plus PIPELINING (RFC 2920), which Exchange
        Online offers: aiosmtpd reads one command line at a time, so commands sent
        together are answered in order."""
        session.host_name = hostname
        if not self.ctx.state.smtp_offers["pipelining"]:
            return responses
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    # -- authentication -------------------------------------------------------

    async def auth_XOAUTH2(self, server, args):
        """SASL XOAUTH2: ``user={upn}^Aauth=Bearer {token}^A^A``."""
        if len(args) > 1:
            blob = args[1]
        else:
            response = await server.challenge_auth("", encode_to_b64=False)
            if not isinstance(response, bytes):
                return AuthResult(success=False, handled=True)
            blob = base64.b64encode(response).decode()
        try:
            decoded = base64.b64decode(blob, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return self._fail(AUTH_FAILED)
        fields = dict(
            part.split("=", 1) for part in decoded.split("\x01") if "=" in part
        )
        user = fields.get("user", "")
        scheme, _, token = fields.get("auth", "").partition(" ")
        if scheme.lower() != "bearer":
            return self._fail(AUTH_FAILED)
        try:
            caller = check_bearer(self.ctx, token.strip(), EXCHANGE)
        except TokenError:
            return self._fail(AUTH_FAILED)
        if caller.tenant.smtp_auth_disabled:
            return self._fail(SMTP_AUTH_DISABLED)
        state = self.ctx.state
        mailbox = state.user(caller.tenant, user)
        if mailbox is None or not mailbox.has_mailbox:
            return self._fail(AUTH_FAILED)
        if caller.delegated:
            allowed = "SMTP.Send" in caller.permissions and caller.user.may_send_as(
                mailbox.user_principal_name
            )
            kind = "user"
        else:
            granted = {a.lower() for a in caller.app.mailbox_permissions}
            allowed = (
                "SMTP.SendAsApp" in caller.permissions
                and mailbox.user_principal_name.lower() in granted
            )
            kind = "app"
        if not allowed:
            return self._fail(AUTH_FAILED)
        return self._success(
            Identity(kind, caller.tenant, mailbox, caller.app.client_id)
        )

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        """aiosmtpd authenticator for the built-in PLAIN and LOGIN mechanisms."""
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        state = self.ctx.state
        tenant = state.tenant(login.rpartition("@")[2]) if "@" in login else None
        if tenant is None:
            return self._fail(AUTH_FAILED)
        if tenant.smtp_auth_disabled:
            return self._fail(SMTP_AUTH_DISABLED)
        if tenant.basic_auth_disabled:
            return self._fail(BASIC_DISABLED)
        user = state.user(tenant, login)
        if user is None or user.password is None or user.password != password:
            return self._fail(AUTH_FAILED)
        if not user.account_enabled:
            return self._fail(AUTH_FAILED)
        return self._success(Identity("basic", tenant, user))

    def _fail(self, message: str) -> AuthResult:
        return AuthResult(success=False, handled=False, message=message)

    def _success(self, identity: Identity) -> AuthResult:
        self.ctx.state.count("smtp_sessions")
        return AuthResult(
            success=True,
            auth_data=identity,
            message="235 2.7.0 Authentication successful",
        )

    # -- envelope -------------------------------------------------------------------

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        identity = session.auth_data
        if not identity.tenant.send_as_denied_at_data and not identity.may_send_as(
            address
        ):
            return SEND_AS_DENIED_MAIL
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server, session, envelope):
        reply = await server.fault("data")
        if reply:
            return reply
        identity = session.auth_data
        state = self.ctx.state
        parsed = email.message_from_bytes(
            envelope.original_content or b"", policy=email.policy.default
        )
        header_from = _first_address(parsed.get("From")) or envelope.mail_from
        if identity.tenant.send_as_denied_at_data:
            for sender in (envelope.mail_from, header_from):
                if not identity.may_send_as(sender):
                    return SEND_AS_DENIED_DATA.format(
                        mailbox=identity.mailbox.user_principal_name, sender=sender
                    )
        if not state.smtp_rate_check(identity.key):
            return RATE_EXCEEDED
        message_id = str(parsed.get("Message-ID") or "").strip() or (
            f"<{uuid.uuid4().hex.upper()}@{HOSTNAME}>"
        )
        text, html = _bodies(parsed)
        headers = {}
        for name, value in parsed.items():
            headers.setdefault(name, str(value))
        stored = {
            "from": header_from,
            "mail_from": envelope.mail_from,
            "to": _addresses(parsed.get_all("To")),
            "cc": _addresses(parsed.get_all("Cc")),
            "subject": str(parsed.get("Subject") or ""),
            "message_id": message_id,
            "headers": headers,
            "text": text,
            "html": html,
            "transport": "smtp",
            "authenticated_as": identity.authenticated_as(),
        }
        state.store_message(stored, list(envelope.rcpt_tos))
        raw = mime.ensure_message_id(envelope.original_content or b"", message_id)
        # Exchange Online files what a mailbox submits by SMTP AUTH in that
        # mailbox's Sent Items, as it does for Graph's sendMail.
        state.save_sent_item(
            identity.mailbox.user_principal_name,
            dict(stored, bcc=[]),
            delay=identity.tenant.sent_items_delay,
            raw=raw,
        )
        deliver(
            state,
            raw=raw,
            fields=stored,
            recipients=list(envelope.rcpt_tos),
            sender=envelope.mail_from,
            fallback_sender=identity.mailbox.user_principal_name,
        )
        state.count("smtp_messages")
        return ACCEPTED.format(message_id=message_id)


def _first_address(value) -> str | None:
    if not value:
        return None
    pairs = email.utils.getaddresses([str(value)])
    return pairs[0][1] if pairs and pairs[0][1] else None


def _addresses(values) -> list:
    if not values:
        return []
    pairs = email.utils.getaddresses([str(v) for v in values])
    return [address for _, address in pairs if address]


def _bodies(parsed) -> tuple:
    text = html = None
    try:
        part = parsed.get_body(preferencelist=("plain",))
        if part is not None:
            text = part.get_content()
        part = parsed.get_body(preferencelist=("html",))
        if part is not None:
            html = part.get_content()
    except (LookupError, ValueError, AttributeError):
        payload = parsed.get_payload(decode=True) or b""
        text = payload.decode("utf-8", "replace")
    return text, html


def smtp_factory(ctx, tls_context):
    """The protocol factory for ``loop.create_server``; counts connections."""
    handler = ExchangeHandler(ctx)

    def factory():
        ctx.state.count("tcp_connections", "smtp")
        return ExchangeSMTP(
            ctx,
            handler,
            hostname=HOSTNAME,
            ident=IDENT,
            data_size_limit=SIZE_LIMIT,
            tls_context=tls_context,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=handler.authenticate,
            loop=ctx.loop,
        )

    return factory
