"""Exchange Online IMAP4rev1 (outlook.office365.com:993) on Twisted's imap4 server.

Implicit TLS with the sandbox's server certificate; ``LOGIN`` with the user's
password and ``AUTHENTICATE XOAUTH2`` (or ``PLAIN``), refused with Exchange
Online's texts; SELECT/EXAMINE, STATUS, (UID) SEARCH and (UID) FETCH of the
mailbox's inbox and of its Sent Items (the copies of what it sent by Graph or SMTP),
read-only (nothing is ever deleted).

Twisted runs on the sandbox's asyncio loop through an ``AsyncioSelectorReactor``
instance that is never installed as the global reactor, so several sandboxes can
start and stop in one process. The few places where Twisted would reach for the
global reactor (idle timeouts, the response scheduler, TLS write aggregation,
pull producers) are given this reactor instead.

https://learn.microsoft.com/en-us/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth
https://learn.microsoft.com/en-us/exchange/clients-and-mobile-in-exchange-online/pop3-and-imap4/pop3-and-imap4
"""

import base64
import binascii
import copy
import email
import email.policy
import email.utils
import io

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet import defer, protocol
from twisted.internet import ssl as twisted_ssl
from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.mail import imap4
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from sandbox.bearer import check_bearer
from sandbox.scopes import EXCHANGE
from sandbox.tokens import TokenError

# Exchange Online's answers.
IDENT = b"The Microsoft Exchange IMAP4 service is ready."
LOGIN_FAILED = b"LOGIN failed."
AUTHENTICATE_FAILED = b"AUTHENTICATE failed."
NOT_CONNECTED = b"User is authenticated but not connected."
DEFAULT_FAULT_REPLY = "NO [UNAVAILABLE] Server busy. Please try again later."
DEFAULT_CONNECT_FAULT_REPLY = "BYE Connection is closed. 13"
INBOX = "INBOX"
SENT_ITEMS = "Sent Items"  # Exchange Online's name for it over IMAP
FLAGS = [r"\Seen", r"\Answered", r"\Flagged", r"\Deleted", r"\Draft"]


def _scheduler(reactor):
    """Twisted's ``iterateInReactor`` on this reactor: one step per loop turn."""

    def iterate(iterator):
        done = defer.Deferred()

        def step(last):
            try:
                result = next(iterator)
            except StopIteration:
                done.callback(last)
            except BaseException:
                done.errback()
            else:
                if isinstance(result, defer.Deferred):
                    result.addCallback(step)
                else:
                    reactor.callLater(0, step, result)

        step(None)
        return done

    return iterate


def _literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


@implementer(imap4.IMessage, imap4.IMessageFile)
class Message:
    """One inbox item: its raw bytes, UID and arrival time."""

    def __init__(self, item: dict):
        self.raw = item["raw"]
        self.uid = item["uid"]
        self.received_at = item["received_at"]
        self._parsed = None

    @property
    def parsed(self):
        if self._parsed is None:
            self._parsed = email.message_from_bytes(
                self.raw, policy=email.policy.compat32
            )
        return self._parsed

    def body(self) -> bytes:
        normalized = self.raw.replace(b"\r\n", b"\n")
        return (
            normalized.split(b"\n\n", 1)[1].replace(b"\n", b"\r\n")
            if (b"\n\n" in normalized)
            else b""
        )

    # IMessageFile
    def open(self):
        return io.BytesIO(self.raw)

    # IMessage
    def getUID(self):
        return self.uid

    def getFlags(self):
        return []

    def getInternalDate(self):
        return email.utils.formatdate(self.received_at, localtime=False)

    def getHeaders(self, negate, *names):
        wanted = {name.lower() for name in names}
        headers = {}
        for name, value in self.parsed.items():
            key = name.lower()
            if not names or (key in wanted) != negate:
                headers.setdefault(key, str(value))
        return headers

    def getBodyFile(self):
        return io.BytesIO(self.body())

    def getSize(self):
        return len(self.raw)

    def isMultipart(self):
        return False

    def getSubPart(self, part):
        raise TypeError("The sandbox serves whole messages only.")


@implementer(imap4.IMailbox, imap4.ISearchableMailbox)
class Mailbox:
    """A folder (INBOX or Sent Items) of one mailbox, as a snapshot refreshed on
    SELECT and NOOP."""

    def __init__(self, server, address: str, writeable: bool, folder: str = INBOX):
        self.server = server
        self.address = address
        self.writeable = writeable
        self.folder = folder
        self.listeners = []
        self.refresh()

    def refresh(self) -> None:
        state = self.server.ctx.state
        if self.folder == SENT_ITEMS:
            snapshot = state.sent_items_snapshot(self.address)
        else:
            snapshot = state.inbox_snapshot(self.address)
        self.uidvalidity = snapshot["uidvalidity"]
        self.uidnext = snapshot["uidnext"]
        self.messages = [Message(item) for item in snapshot["items"]]

    # IMailboxInfo
    def getFlags(self):
        return list(FLAGS)

    def getHierarchicalDelimiter(self):
        return "/"

    # IMailbox
    def getUIDValidity(self):
        return self.uidvalidity

    def getUIDNext(self):
        return self.uidnext

    def getUID(self, message):
        return self.messages[message - 1].uid

    def getMessageCount(self):
        return len(self.messages)

    def getRecentCount(self):
        return 0

    def getUnseenCount(self):
        return len(self.messages)

    def isWriteable(self):
        # Reported READ-WRITE so that a plain SELECT works (imaplib refuses a
        # READ-ONLY one); STORE, APPEND and EXPUNGE change nothing all the same.
        return self.writeable

    def destroy(self):
        raise imap4.MailboxException("The sandbox does not delete mailboxes.")

    def requestStatus(self, names):
        return imap4.statusRequestHelper(self, names)

    def addListener(self, listener):
        self.listeners.append(listener)

    def removeListener(self, listener):
        if listener in self.listeners:
            self.listeners.remove(listener)

    def addMessage(self, message, flags=(), date=None):
        raise imap4.MailboxException("The sandbox's mailboxes are read-only.")

    def expunge(self):
        return []  # nothing is ever deleted

    def fetch(self, messages, uid):
        last = self.uidnext - 1 if uid else len(self.messages)
        try:
            messages.last = max(last, 1)
        except ValueError:
            pass  # "*" already resolved
        found = []
        for sequence, message in enumerate(self.messages, start=1):
            if (message.uid if uid else sequence) in messages:
                found.append((sequence, message))
        return found

    def store(self, messages, flags, mode, uid):
        raise imap4.MailboxException("The sandbox's mailboxes are read-only.")

    # ISearchableMailbox: Twisted's own search keys, applied to the snapshot
    def search(self, query, uid):
        if not self.messages:
            return []
        query = _search_text(query)
        last_sequence = len(self.messages)
        last_uid = self.messages[-1].uid
        matches = []
        for sequence, message in enumerate(self.messages, start=1):
            if self.server._searchFilter(
                copy.deepcopy(query), sequence, message, last_sequence, last_uid
            ):
                matches.append(sequence)
        return matches


DATE_KEYS = {b"BEFORE", b"ON", b"SINCE", b"SENTBEFORE", b"SENTON", b"SENTSINCE"}


def _search_text(query: list) -> list:
    """The parsed search query with what Twisted's search compares as str made
    str: the date after BEFORE/ON/SINCE/... (its parseTime matches a str
    pattern) and the header name and value after HEADER (the headers are str)."""
    converted = []
    as_text = 0
    for token in query:
        if isinstance(token, list):
            converted.append(_search_text(token))
            as_text = 0
            continue
        if as_text and isinstance(token, bytes):
            converted.append(token.decode("utf-8", "replace"))
            as_text -= 1
            continue
        converted.append(token)
        word = token.upper() if isinstance(token, bytes) else b""
        as_text = 1 if word in DATE_KEYS else 2 if word == b"HEADER" else 0
    return converted


@implementer(imap4.IAccount)
class Account:
    """The signed-in mailbox: two folders, INBOX and Sent Items."""

    def __init__(self, server, address: str):
        self.server = server
        self.address = address

    @staticmethod
    def folder(name) -> str | None:
        """The folder a name means (INBOX in any case; Sent Items as Exchange
        spells it, in any case), or None."""
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        if name.upper() == INBOX:
            return INBOX
        if name.lower() == SENT_ITEMS.lower():
            return SENT_ITEMS
        return None

    def select(self, name, rw=True):
        folder = self.folder(name)
        if folder is None:
            return None
        return Mailbox(self.server, self.address, bool(rw), folder)

    def listMailboxes(self, ref, wildcard):
        pattern = imap4.wildcardToRegexp((ref or "") + (wildcard or ""), "/")
        return [
            (folder, Mailbox(self.server, self.address, False, folder))
            for folder in (INBOX, SENT_ITEMS)
            if pattern.fullmatch(folder)
        ]

    def isSubscribed(self, name):
        return self.folder(name) is not None

    def subscribe(self, name):
        return True

    def unsubscribe(self, name):
        raise imap4.MailboxException("The Inbox cannot be unsubscribed.")

    def addMailbox(self, name, mbox=None):
        raise imap4.MailboxException("The sandbox keeps only its two folders.")

    def create(self, pathspec):
        raise imap4.MailboxException("The sandbox keeps only its two folders.")

    def delete(self, name):
        raise imap4.MailboxException("The sandbox does not delete mailboxes.")

    def rename(self, oldname, newname):
        raise imap4.MailboxException("The sandbox does not rename mailboxes.")


class ExchangeIMAP4Server(imap4.IMAP4Server):
    """Twisted's IMAP4rev1 server with Exchange Online's sign-in rules."""

    IDENT = IDENT
    MAX_LENGTH = 65536  # an AUTHENTICATE XOAUTH2 line carries a whole JWT

    def __init__(self, ctx, reactor):
        super().__init__(scheduler=_scheduler(reactor))
        self.ctx = ctx
        self.reactor = reactor

    def callLater(self, period, func):
        """Idle timeouts on the sandbox's reactor (TimeoutMixin hook)."""
        return self.reactor.callLater(period, func)

    def capabilities(self):
        return {b"AUTH": [b"PLAIN", b"XOAUTH2"], b"SASL-IR": None, b"NAMESPACE": None}

    def connectionMade(self):
        self.ctx.imap_protocols.add(self)
        self.tags = {}
        fault = self.ctx.state.take_fault("imap", "connect")
        if fault:
            self._apply_fault(fault, None, self._greet, connect=True)
            return
        self._greet()

    def _greet(self):
        self.setTimeout(self.timeOut)
        self.sendServerGreeting()

    def connectionLost(self, reason):
        self.ctx.imap_protocols.discard(self)
        super().connectionLost(reason)

    # -- faults --------------------------------------------------------------------

    def _apply_fault(self, fault, tag, proceed, connect=False):
        """Drop, answer the fault's reply, or (``delay`` only) go on later."""

        def fire():
            if self.transport is None or self.transport.disconnecting:
                return
            if fault.get("drop") or fault.get("reset"):
                self.transport.abortConnection()
                return
            reply = fault.get("imap_reply")
            if reply is None and fault.get("delay"):
                proceed()
                return
            reply = reply or (
                DEFAULT_CONNECT_FAULT_REPLY if connect else DEFAULT_FAULT_REPLY
            )
            self.sendLine((b"* " if connect else tag + b" ") + reply.encode())
            if connect or reply.upper().startswith("BYE"):
                self.transport.loseConnection()

        if fault.get("delay"):
            self.reactor.callLater(float(fault["delay"]), fire)
        else:
            fire()

    def _with_fault(self, stage, tag, proceed):
        fault = self.ctx.state.take_fault("imap", stage)
        if fault:
            self._apply_fault(fault, tag, proceed)
        else:
            proceed()

    # -- sign-in -------------------------------------------------------------------

    def do_LOGIN(self, tag, user, passwd):
        def proceed():
            mailbox = self._check_password(user, passwd)
            if mailbox is None:
                self._refuse(tag, LOGIN_FAILED)
            else:
                self._open(tag, mailbox, b"LOGIN completed.")

        self._with_fault("auth", tag, proceed)

    unauth_LOGIN = (
        do_LOGIN,
        imap4.IMAP4Server.arg_astring,
        imap4.IMAP4Server.arg_finalastring,
    )

    def do_AUTHENTICATE(self, tag, line):
        mechanism, _, initial = line.strip().partition(b" ")
        mechanism = mechanism.upper()
        if mechanism not in (b"XOAUTH2", b"PLAIN"):
            self.sendNegativeResponse(tag, b"AUTHENTICATE method unsupported.")
            return

        def answer(blob):
            if blob.strip() == b"*":
                self.sendBadResponse(tag, b"AUTHENTICATE aborted.")
                return
            try:
                decoded = base64.b64decode(blob.strip(), validate=True)
            except (binascii.Error, ValueError):
                self._refuse(tag, AUTHENTICATE_FAILED)
                return
            if mechanism == b"XOAUTH2":
                mailbox = self._check_xoauth2(decoded)
            else:
                parts = decoded.split(b"\x00")
                mailbox = (
                    self._check_password(parts[1], parts[2])
                    if len(parts) == 3
                    else None
                )
            if mailbox is None:
                self._refuse(tag, AUTHENTICATE_FAILED)
            else:
                self._open(tag, mailbox, b"AUTHENTICATE completed.")

        def proceed():
            if initial.strip() and initial.strip() != b"=":
                answer(initial)
                return
            # Ask for the SASL response on the next line, as Exchange does ("+ ").
            self.parseState = "pending"
            self._pendingLiteral = defer.Deferred()
            self._pendingLiteral.addCallback(answer)
            self.sendLine(b"+ ")

        self._with_fault("auth", tag, proceed)

    unauth_AUTHENTICATE = (do_AUTHENTICATE, imap4.IMAP4Server.arg_line)

    def _check_password(self, login: bytes, password: bytes):
        """The mailbox user for LOGIN / AUTHENTICATE PLAIN, or None."""
        state = self.ctx.state
        login = login.decode("utf-8", "replace")
        password = password.decode("utf-8", "replace")
        tenant = state.tenant(login.rpartition("@")[2]) if "@" in login else None
        if tenant is None or tenant.basic_auth_disabled:
            return None
        user = state.user(tenant, login)
        if user is None or not user.has_mailbox or user.password is None:
            return None
        if user.password != password or not user.account_enabled:
            return None
        return user

    def _check_xoauth2(self, decoded: bytes):
        """The mailbox a SASL XOAUTH2 response may open, or None."""
        text = decoded.decode("utf-8", "replace")
        fields = dict(part.split("=", 1) for part in text.split("\x01") if "=" in part)
        scheme, _, token = fields.get("auth", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        try:
            caller = check_bearer(self.ctx, token.strip(), EXCHANGE)
        except TokenError:
            return None
        mailbox = self.ctx.state.user(caller.tenant, fields.get("user", ""))
        if mailbox is None or not mailbox.has_mailbox:
            return None
        address = mailbox.user_principal_name.lower()
        if caller.delegated:
            allowed = (
                "IMAP.AccessAsUser.All" in caller.permissions
                and caller.user.user_principal_name.lower() == address
            )
        else:
            granted = {a.lower() for a in caller.app.mailbox_permissions}
            allowed = (
                "IMAP.AccessAsApp" in caller.permissions
                and address in granted
                and caller.app.may_use_mailbox(address)
            )
        return mailbox if allowed else None

    def _refuse(self, tag, message: bytes):
        self.ctx.state.count("imap_auth_failures")
        self.sendNegativeResponse(tag, message)

    def _open(self, tag, user, message: bytes):
        if not user.imap_enabled:
            # Exchange signs the user in, then finds IMAP disabled for the mailbox.
            self._refuse(tag, NOT_CONNECTED)
            return
        self.ctx.state.count("imap_logins")
        self.account = Account(self, user.user_principal_name)
        self.state = "auth"
        self.sendPositiveResponse(tag, message)
        self.setTimeout(self.POSTAUTH_TIMEOUT)

    # -- the mailbox -----------------------------------------------------------------

    def _selectWork(self, tag, name, rw, cmdName):
        self._with_fault(
            "select",
            tag,
            lambda: imap4.IMAP4Server._selectWork(self, tag, name, rw, cmdName),
        )

    auth_SELECT = (_selectWork, imap4.IMAP4Server.arg_astring, 1, b"SELECT")
    select_SELECT = auth_SELECT
    auth_EXAMINE = (_selectWork, imap4.IMAP4Server.arg_astring, 0, b"EXAMINE")
    select_EXAMINE = auth_EXAMINE

    def do_FETCH(self, tag, messages, query, uid=0):
        def proceed():
            self.ctx.state.count("imap_fetches")
            imap4.IMAP4Server.do_FETCH(self, tag, messages, query, uid=uid)

        self._with_fault("fetch", tag, proceed)

    select_FETCH = (
        do_FETCH,
        imap4.IMAP4Server.arg_seqset,
        imap4.IMAP4Server.arg_fetchatt,
    )

    def do_NOOP(self, tag):
        if self.state == "select" and isinstance(self.mbox, Mailbox):
            before = self.mbox.getMessageCount()
            self.mbox.refresh()
            if self.mbox.getMessageCount() != before:
                self.sendUntaggedResponse(b"%d EXISTS" % self.mbox.getMessageCount())
        self.sendPositiveResponse(tag, b"NOOP completed.")

    unauth_NOOP = (do_NOOP,)
    auth_NOOP = unauth_NOOP
    select_NOOP = unauth_NOOP
    logout_NOOP = unauth_NOOP

    # Whole messages are in memory: written as one literal, without Twisted's
    # pull producers (which would run on the global reactor's cooperator).
    def spew_rfc822(self, id, msg, _w=None, _f=None):
        _w(b"RFC822 " + _literal(msg.raw))

    def spew_rfc822text(self, id, msg, _w=None, _f=None):
        _w(b"RFC822.TEXT " + _literal(msg.body()))

    def spew_body(self, part, id, msg, _w=None, _f=None):
        if part.part:
            if any(p > 0 for p in part.part):
                raise TypeError("Requested subpart of non-multipart message")
        if part.empty and not part.part:
            data = msg.raw
        elif part.text or part.empty:
            data = msg.body()
        else:
            return imap4.IMAP4Server.spew_body(self, part, id, msg, _w, _f)
        if part.partialBegin is not None:
            data = data[part.partialBegin : part.partialBegin + part.partialLength]
        _w(part.getBytes(length=len(data)) + b" " + _literal(data))


class IMAPFactory(protocol.ServerFactory):
    def __init__(self, ctx, reactor):
        self.ctx = ctx
        self.reactor = reactor

    def buildProtocol(self, addr):
        self.ctx.state.count("tcp_connections", "imap")
        server = ExchangeIMAP4Server(self.ctx, self.reactor)
        server.factory = self
        return server


class IMAPService:
    """The IMAP listener on the sandbox's asyncio loop."""

    def __init__(self, ctx, loop):
        self.ctx = ctx
        self.reactor = AsyncioSelectorReactor(loop)
        self.port = None

    def listen(self, host: str, port: int) -> int:
        tls = self.ctx.tls
        options = twisted_ssl.CertificateOptions(
            privateKey=serialization.load_pem_private_key(
                tls.key_path.read_bytes(), None
            ),
            certificate=x509.load_pem_x509_certificate(tls.cert_path.read_bytes()),
        )
        factory = TLSMemoryBIOFactory(
            options,
            False,
            IMAPFactory(self.ctx, self.reactor),
            clock=self.reactor,
        )
        self.port = self.reactor.listenTCP(port, factory, backlog=256, interface=host)
        return self.port.getHost().port

    async def close(self, loop) -> None:
        """Stop listening, drop every connection and release the reactor's
        file descriptors (its waker), so nothing is left once the loop closes."""
        if self.port is not None:
            await defer.maybeDeferred(self.port.stopListening).asFuture(loop)
            self.port = None
        for server in list(self.ctx.imap_protocols):
            if server.transport is not None:
                server.transport.abortConnection()
        for _ in range(3):  # connectionLost runs on the next turns of the loop
            await defer.succeed(None).asFuture(loop)
            await _next_turn(loop)
        reactor = self.reactor
        reactor.removeAll()
        waker = reactor.waker
        if waker is not None:
            reactor.removeReader(waker)
            waker.connectionLost(None)
            reactor.waker = None


async def _next_turn(loop) -> None:
    future = loop.create_future()
    loop.call_soon(future.set_result, None)
    await future
