"""
Reading a tool's sender mailbox (the drawer's "Email box"): IMAP for the SMTP tool,
Microsoft Graph for Microsoft Azure Mail (and for SMTP delegated with the API
communication type). Nothing is ever deleted or marked read.

A provider whose Email box is on returns a `MailboxReader` from
`NotificationToolProvider.mailbox_reader()`; `notifications.services.bounces` reads
new messages with it and keeps the cursor between reads.

The contract:

- `check()` signs in, opens the inbox and says how many messages it holds (Test
  Connection's "Mailbox readable" step); failures raise `IntegrationError`s.
- `holds_sent(message_id)` says whether the mailbox's Sent Items holds a message
  with that Internet Message-ID (None: cannot tell). Exchange Online files there
  what the mailbox sends by Graph or by SMTP AUTH, so after an attempt whose answer
  was lost the SMTP tool looks before sending again (`Connection.already_sent`).
- `read(cursor, limit=..., since=...)` returns the next messages after `cursor`
  (a JSON-safe dict this module alone understands; `{}` the first time), oldest
  first, at most `limit`, and the cursor to store once they are processed. With an
  empty cursor it starts at messages received on or after `since`. A cursor the
  server no longer honours (IMAP UIDVALIDITY changed, Graph delta token expired)
  starts again from `since`, and the page says `reset=True`.

IMAP (RFC 3501) with the standard library's imaplib, over TLS verified for the host
name (implicit on 993, or STARTTLS), to the address the outbound policy checked;
LOGIN (Basic) or AUTHENTICATE XOAUTH2 (OAuth 2.0). The inbox is opened read-only
(EXAMINE) and messages are fetched with BODY.PEEK[], so nothing is marked read:
https://learn.microsoft.com/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth
Graph: the inbox's message delta, then each message's MIME (`$value`):
https://learn.microsoft.com/graph/api/message-delta
"""

import imaplib
import logging
import re
import ssl
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings

from integrations.exceptions import (
    AddressRefused,
    AuthenticationFailed,
    ConnectionFailed,
    IntegrationError,
    PermissionMissing,
    ServiceUnavailable,
    TlsError,
    UnexpectedResponse,
)
from integrations.providers import identity, outbound
from integrations.providers.graph import graph_client
from integrations.providers.http import (
    error_from_exception,
    remaining_time,
    ssl_context,
)
from integrations.providers.smtp_choices import ImapSecurity, MinimumTls
from integrations.providers.smtp_client import TLS_VERSIONS, xoauth2_string
from integrations.text import single_line

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MailboxMessage:
    #: Which message this is, stable for one cursor generation:
    #: "imap:<uidvalidity>:<uid>" or "graph:<message id>".
    ref: str
    #: The whole RFC 5322 message, as the server gave it.
    raw: bytes


@dataclass(frozen=True)
class MailboxPage:
    messages: tuple[MailboxMessage, ...]
    #: Store this after processing `messages`.
    cursor: dict = field(default_factory=dict)
    #: More messages are waiting now (call `read` again with `cursor`).
    more: bool = False
    #: The stored cursor was no longer valid; reading started again from `since`.
    reset: bool = False


class MailboxReader(AbstractContextManager):
    """An open (or lazily opened) session on one mailbox."""

    #: The address of the mailbox read.
    mailbox: str = ""

    def check(self) -> str:
        """Sign in, open the inbox, return words such as "Inbox: 12 messages"."""
        raise NotImplementedError

    def read(self, cursor: dict, *, limit: int, since: datetime) -> MailboxPage:
        raise NotImplementedError

    def holds_sent(self, message_id: str) -> bool | None:
        """Whether the mailbox's Sent Items holds a message with this Internet
        Message-ID; None when this reader cannot tell."""
        return None

    def close(self) -> None:
        """Log out and release the connection."""

    def __exit__(self, *exc_info):
        self.close()
        return False


# --- errors --------------------------------------------------------------------------

#: What Exchange Online answers a mailbox it will not open over IMAP (IMAP disabled
#: for it, or no permission on it), after accepting the credentials.
_NOT_CONNECTED = "authenticated but not connected"
#: Response codes of a server that is there but cannot serve now (RFC 5530).
_TRANSIENT = ("[UNAVAILABLE]", "[INUSE]", "[LIMIT]", "SERVER BUSY", "TRY AGAIN")
#: The failures of reaching a server that Test Connection does not tell apart for an
#: address an admin typed (as `smtp_client` does for SMTP).
_UNREACHABLE = frozenset(
    {"connection_failed", "connection_refused", "timeout", "tls_error", "unexpected"}
)


def _reply_text(exc: BaseException) -> str:
    """The server's words in an imaplib error (bytes or str), on one line."""
    arg = exc.args[0] if exc.args else ""
    if isinstance(arg, bytes):
        arg = arg.decode("utf-8", "replace")
    return single_line(arg, 300)


def error_from_imap(exc: BaseException, *, stage: str) -> IntegrationError:
    """Translate an imaplib, socket or ssl exception raised at `stage` ("connect",
    "login", "authenticate", "examine", "search", "fetch"). The server's text goes
    to `detail` only (logs, the audit log), never to pages.

    A refused AUTHENTICATE XOAUTH2 is the mailbox permission: a token without the
    IMAP permission is refused before signing in (`_check_claim`), and Exchange
    answers "AUTHENTICATE failed." to both alike.
    """
    if isinstance(exc, IntegrationError):
        return exc
    if isinstance(exc, imaplib.IMAP4.abort):
        # The connection broke or the peer said something that is not IMAP.
        return ConnectionFailed(f"{stage}: {_reply_text(exc)}")
    if isinstance(exc, imaplib.IMAP4.error):
        text = _reply_text(exc)
        detail = f"{stage}: {text}"
        if _NOT_CONNECTED in text.lower():
            return PermissionMissing(detail, code="imap_disabled")
        if any(needle in text.upper() for needle in _TRANSIENT):
            return ServiceUnavailable(detail)
        if stage == "login":
            return AuthenticationFailed(detail, code="mailbox_login_failed")
        if stage == "authenticate":
            return PermissionMissing(detail, code="mailbox_permission_missing")
        if stage == "connect":
            return ConnectionFailed(detail)
        return UnexpectedResponse(detail, code="mailbox_unreadable")
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError, OSError)):
        return error_from_exception(exc)
    return UnexpectedResponse(f"{stage}: {type(exc).__name__}")


def _connect_error(error: IntegrationError, destination) -> IntegrationError:
    """For an address an admin typed, a closed port, a silent one and a peer that is
    not an IMAP server read the same ("did not answer as an IMAP server"), as for
    SMTP; the operator's own host (M365_IMAP_HOST) keeps the precise codes, and a
    certificate that does not verify keeps its own words."""
    if destination is None or destination.trusted:
        return error
    if isinstance(error, (AddressRefused, PermissionMissing, AuthenticationFailed)):
        return error
    tls_refused = isinstance(error, TlsError) and "CERTIFICATE_VERIFY_FAILED" in (
        error.detail
    )
    if error.code in _UNREACHABLE and not tls_refused:
        return ConnectionFailed(
            f"{destination.label}: no IMAP answer; {error.detail}",
            code="imap_no_answer",
            address=destination.label,
        )
    return error


def _check_claim(token: str, claim: tuple[str, tuple[str, ...]] | None, code: str):
    """Refuse a token that lacks the permission reading needs, before the server is
    asked (Exchange answers "AUTHENTICATE failed." to any token it refuses). A token
    we cannot read (not a JWT: another OAuth server's) is left to the server."""
    if claim is None:
        return
    name, wanted = claim
    try:
        value = identity.token_claims(token).get(name) or []
    except UnexpectedResponse:
        return
    present = value.split() if isinstance(value, str) else list(value)
    if not set(wanted) & set(present):
        raise PermissionMissing(
            f"token {name}: {', '.join(present) or 'none'}", code=code
        )


# --- IMAP ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImapLogin:
    """Basic: LOGIN with the Email box's own Email and Password."""

    username: str
    password: str = field(repr=False)

    @property
    def mailbox(self) -> str:
        return self.username


@dataclass(frozen=True)
class ImapOAuth:
    """OAuth 2.0: AUTHENTICATE XOAUTH2 as the mailbox `user`, with the token `token()`
    returns (asked for when signing in). `claim` is what the token must carry, e.g.
    ("roles", ("IMAP.AccessAsApp",)) or ("scp", ("IMAP.AccessAsUser.All",))."""

    user: str
    token: Callable[[], str] = field(repr=False)
    claim: tuple[str, tuple[str, ...]] | None = None

    @property
    def mailbox(self) -> str:
        return self.user


class _BoundedLiterals:
    """imaplib reads a literal ({n} bytes: a message) with `read(n)`; a literal far
    beyond what was asked for ends the session instead of filling memory."""

    max_literal = 0

    def read(self, size):
        if self.max_literal and size > self.max_literal:
            raise self.abort(f"literal of {size} bytes refused")
        return super().read(size)


class _PinnedIMAP4(_BoundedLiterals, imaplib.IMAP4):
    """imaplib.IMAP4 (then STARTTLS) to the checked addresses only (no second
    lookup); `host` stays the name, which STARTTLS verifies the certificate for."""

    def __init__(self, destination, *, timeout, max_literal):
        self._destination = destination
        self.max_literal = max_literal
        super().__init__(destination.host, destination.port, timeout)

    def _create_socket(self, timeout):
        return outbound.connect(self._destination, timeout)


class _PinnedIMAP4SSL(_BoundedLiterals, imaplib.IMAP4_SSL):
    """imaplib.IMAP4_SSL (implicit TLS) to the checked addresses; the certificate is
    verified for the host name (`server_hostname`)."""

    def __init__(self, destination, *, context, timeout, max_literal):
        self._destination = destination
        self.max_literal = max_literal
        super().__init__(
            destination.host, destination.port, ssl_context=context, timeout=timeout
        )

    def _create_socket(self, timeout):
        sock = outbound.connect(self._destination, timeout)
        try:
            return self.ssl_context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


_MONTHS = ("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec").split()
_UID = re.compile(rb"\bUID (\d+)")
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
#: Messages fetched with one UID FETCH.
FETCH_BATCH = 10


def imap_date(when: datetime) -> str:
    """An IMAP date (RFC 3501 date-text, "1-Feb-1994"), in UTC, locale-free."""
    day = when.astimezone(UTC).date() if when.tzinfo else when.date()
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


def uid_set(uids) -> str:
    """UIDs as an IMAP sequence set, runs as ranges: [1, 2, 3, 7] -> "1:3,7"."""
    parts, run = [], []
    for uid in sorted(set(uids)):
        if run and uid == run[-1] + 1:
            run.append(uid)
            continue
        if run:
            parts.append(f"{run[0]}:{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [uid]
    if run:
        parts.append(f"{run[0]}:{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)


#: Exchange Online's name for the folder that keeps a copy of what a mailbox sent.
SENT_ITEMS = "Sent Items"
#: A Message-ID the lookup can put in a quoted IMAP string as it is: printable
#: ASCII without spaces, quotes or backslashes.
_SEARCHABLE = re.compile(r"<[!#-\[\]-~]+>")


class ImapReader(MailboxReader):
    """The inbox of one mailbox over IMAP. The cursor is `{"uidvalidity": n,
    "last_uid": n}`: the next read asks for UIDs above `last_uid`, and a changed
    UIDVALIDITY (the server renumbered its messages) starts again from `since`."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        auth: ImapLogin | ImapOAuth,
        security: str = ImapSecurity.SSL,
        minimum_tls: str = MinimumTls.TLS_1_2,
        timeout: float | None = None,
        max_message_bytes: int | None = None,
    ):
        self.host = host
        self.port = int(port)
        self.auth = auth
        self.mailbox = auth.mailbox
        self.security = security
        self.minimum_tls = TLS_VERSIONS.get(minimum_tls, ssl.TLSVersion.TLSv1_2)
        self.timeout = timeout or settings.IMAP_TIMEOUT
        self.max_message_bytes = max_message_bytes or settings.MAILBOX_MAX_MESSAGE_BYTES
        self.client: imaplib.IMAP4 | None = None
        self.destination = None

    # --- the session ----------------------------------------------------------------

    def _tick(self) -> float:
        """Clamp the socket timeout to what is left of the deadline."""
        seconds = remaining_time(self.timeout)
        client = self.client
        if client is not None and getattr(client, "sock", None) is not None:
            client.sock.settimeout(seconds)
        return seconds

    def _connect(self) -> None:
        timeout = self._tick()
        try:
            self.destination = outbound.imap_destination(self.host, self.port)
        except OSError as exc:  # the name does not resolve
            raise error_from_exception(exc)
        # Before connecting: an unreadable M365_CA_BUNDLE is not the peer's doing.
        context = ssl_context(self.minimum_tls)
        # A literal may be a little larger than the message it holds (RFC822.SIZE
        # is checked before fetching).
        max_literal = self.max_message_bytes + 64 * 1024
        try:
            if self.security == ImapSecurity.STARTTLS:
                self.client = _PinnedIMAP4(
                    self.destination, timeout=timeout, max_literal=max_literal
                )
                self._tick()
                if "STARTTLS" not in self.client.capabilities:
                    raise ConnectionFailed(
                        "server does not offer STARTTLS",
                        code="imap_starttls_unavailable",
                    )
                self.client.starttls(ssl_context=context)
            else:
                self.client = _PinnedIMAP4SSL(
                    self.destination,
                    context=context,
                    timeout=timeout,
                    max_literal=max_literal,
                )
        except Exception as exc:
            self.close()
            raise _connect_error(
                error_from_imap(exc, stage="connect"), self.destination
            )

    def _sign_in(self) -> None:
        auth = self.auth
        if isinstance(auth, ImapLogin):
            self._tick()
            try:
                self.client.login(auth.username, auth.password)
            except UnicodeEncodeError:
                raise AuthenticationFailed(
                    "login: the user name or password is not ASCII",
                    code="mailbox_login_failed",
                )
            except Exception as exc:
                raise error_from_imap(exc, stage="login")
            return
        token = auth.token()
        _check_claim(token, auth.claim, "imap_permission_missing")
        initial = xoauth2_string(auth.user, token).encode()
        answers = []

        def respond(challenge: bytes) -> bytes:
            # First the initial response; a second challenge carries the server's
            # JSON error, answered empty so that the server sends its final NO.
            answers.append(challenge)
            return initial if len(answers) == 1 else b""

        self._tick()
        try:
            self.client.authenticate("XOAUTH2", respond)
        except Exception as exc:
            raise error_from_imap(exc, stage="authenticate")

    def _open(self) -> imaplib.IMAP4:
        if self.client is None:
            self._connect()
            try:
                self._sign_in()
            except BaseException:
                self.close()
                raise
        return self.client

    def _select(self, folder: str) -> tuple[str, list]:
        """EXAMINE `folder` (read-only, quoted as needed): the server's answer."""
        client = self._open()
        self._tick()
        try:
            return client.select(folder, readonly=True)
        except Exception as exc:
            raise error_from_imap(exc, stage="examine")

    def _examine(self) -> tuple[int, int | None, int | None]:
        """EXAMINE INBOX (read-only): (messages, UIDVALIDITY, UIDNEXT)."""
        client = self._open()
        typ, data = self._select("INBOX")
        if typ != "OK":
            raise error_from_imap(
                imaplib.IMAP4.error(data[-1] if data else b""), stage="examine"
            )

        def number(values):
            try:
                return int(values[-1])
            except (TypeError, ValueError, IndexError):
                return None

        exists = number(data) or 0
        uidvalidity = number(client.untagged_responses.get("UIDVALIDITY", []))
        uidnext = number(client.untagged_responses.get("UIDNEXT", []))
        if uidvalidity is None:
            raise UnexpectedResponse(
                "examine: no UIDVALIDITY", code="mailbox_unreadable"
            )
        return exists, uidvalidity, uidnext

    def _uid(self, command: str, *args) -> list:
        stage = command.lower()
        self._tick()
        try:
            typ, data = self.client.uid(command, *args)
        except Exception as exc:
            raise error_from_imap(exc, stage=stage)
        if typ != "OK":
            raise error_from_imap(
                imaplib.IMAP4.error(data[-1] if data else b""), stage=stage
            )
        return [item for item in data if item is not None]

    def _search(self, *criteria) -> list[int]:
        uids = []
        for line in self._uid("SEARCH", *criteria):
            if isinstance(line, bytes):
                uids.extend(int(word) for word in line.split() if word.isdigit())
        return sorted(set(uids))

    def _top_uid(self, exists: int) -> int:
        """The highest UID in the inbox (for a server that sends no UIDNEXT)."""
        if not exists:
            return 0
        found = [
            int(match.group(1))
            for item in self._uid("FETCH", "*", "(UID)")
            for match in [_UID.search(item[0] if isinstance(item, tuple) else item)]
            if match
        ]
        return max(found, default=0)

    def _sizes(self, uids) -> dict[int, int]:
        sizes = {}
        for item in self._uid("FETCH", uid_set(uids), "(UID RFC822.SIZE)"):
            line = item[0] if isinstance(item, tuple) else item
            uid, size = _UID.search(line or b""), _SIZE.search(line or b"")
            if uid and size:
                sizes[int(uid.group(1))] = int(size.group(1))
        return sizes

    def _bodies(self, uids) -> dict[int, bytes]:
        bodies = {}
        data = self._uid("FETCH", uid_set(uids), "(UID BODY.PEEK[])")
        for index, item in enumerate(data):
            if not isinstance(item, tuple) or len(item) < 2:
                continue
            head, literal = item[0], item[1]
            found = _UID.search(head or b"")
            if found is None and index + 1 < len(data):
                # Some servers send the UID after the literal.
                tail = data[index + 1]
                found = _UID.search(tail) if isinstance(tail, bytes) else None
            if found is not None:
                bodies[int(found.group(1))] = literal
        return bodies

    # --- the contract ----------------------------------------------------------------

    def check(self) -> str:
        exists, _, _ = self._examine()
        return f"Inbox: {exists} messages"

    def holds_sent(self, message_id: str) -> bool | None:
        # EXAMINE on each lookup, so a copy filed since the last one is seen; a
        # server without Exchange's "Sent Items" folder cannot tell.
        if not message_id or not _SEARCHABLE.fullmatch(message_id):
            return None
        typ, _ = self._select(f'"{SENT_ITEMS}"')
        if typ != "OK":
            return None
        return bool(self._search("HEADER", "Message-ID", f'"{message_id}"'))

    def read(self, cursor: dict, *, limit: int, since: datetime) -> MailboxPage:
        exists, uidvalidity, uidnext = self._examine()
        last_uid = cursor.get("last_uid") if cursor else None
        valid = (
            cursor.get("uidvalidity") == uidvalidity and isinstance(last_uid, int)
            if cursor
            else False
        )
        reset = bool(cursor) and not valid
        floor = None
        if valid:
            # "n:*" names the last message even when its UID is below n.
            uids = [u for u in self._search("UID", f"{last_uid + 1}:*") if u > last_uid]
        else:
            # Where to go on from if nothing is new enough: taken before searching,
            # so that a message arriving meanwhile is found by the search.
            floor = uidnext - 1 if uidnext else self._top_uid(exists)
            uids = self._search("SINCE", imap_date(since))
            last_uid = None
        taken = uids[: max(1, int(limit))]
        more = len(uids) > len(taken)
        messages = []
        if taken:
            sizes = self._sizes(taken)
            small = [u for u in taken if sizes.get(u, 0) <= self.max_message_bytes]
            bodies = {}
            for start in range(0, len(small), FETCH_BATCH):
                bodies.update(self._bodies(small[start : start + FETCH_BATCH]))
            for uid in taken:
                if uid not in bodies:
                    logger.info(
                        "Email box: message %s of %s skipped (%s bytes)",
                        uid,
                        self.mailbox,
                        sizes.get(uid, "unknown"),
                    )
                messages.append(
                    MailboxMessage(f"imap:{uidvalidity}:{uid}", bodies.get(uid, b""))
                )
            last_uid = taken[-1]
        elif last_uid is None:
            # Nothing since `since`: every message there now is older.
            last_uid = floor
        new_cursor = {"uidvalidity": uidvalidity}
        if last_uid is not None:
            new_cursor["last_uid"] = last_uid
        return MailboxPage(tuple(messages), new_cursor, more=more, reset=reset)

    def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            if getattr(client, "sock", None) is not None:
                client.sock.settimeout(2)
                client.logout()
        except Exception:  # noqa: BLE001 - leaving: nothing more to say to it
            pass
        finally:
            try:
                client.shutdown()
            except Exception:  # noqa: BLE001
                pass


# --- Microsoft Graph -----------------------------------------------------------------

#: What reading through Graph needs in the token (Mail.ReadBasic lists without bodies).
MAIL_READ = ("Mail.Read", "Mail.ReadWrite")


class GraphReader(MailboxReader):
    """The inbox of one mailbox through Microsoft Graph's message delta. The cursor
    is `{"delta_link": url}` between reads, or `{"next_link": url, "offset": n}`
    while a synchronisation is under way (`offset`: messages of that page already
    returned)."""

    def __init__(
        self,
        *,
        graph_host: str,
        mailbox: str,
        token: Callable[[], str],
        me: bool = False,
        claim: tuple[str, tuple[str, ...]] | None = None,
        max_message_bytes: int | None = None,
    ):
        self.client = graph_client(graph_host)
        self.mailbox = mailbox
        #: Whose mailbox is in the URL: None for /me (a delegated token).
        self.user = None if me else mailbox
        self._token_source = token
        self._token = None
        self.claim = claim
        self.max_message_bytes = max_message_bytes or settings.MAILBOX_MAX_MESSAGE_BYTES

    def _access_token(self) -> str:
        if self._token is None:
            token = self._token_source()
            _check_claim(token, self.claim, "mail_read_missing")
            self._token = token
        return self._token

    def holds_sent(self, message_id: str) -> bool | None:
        if not message_id:
            return None
        try:
            return self.client.sent_message_exists(
                access_token=self._access_token(),
                sender=self.user,
                internet_message_id=message_id,
            )
        except PermissionMissing:
            return None

    def check(self) -> str:
        token = self._access_token()
        newest = self.client.inbox_first(access_token=token, mailbox=self.user)
        if newest:
            # Listing needs only Mail.ReadBasic; reading one message proves Mail.Read.
            self.client.message_mime(
                access_token=token,
                mailbox=self.user,
                message_id=newest[0]["id"],
                max_bytes=self.max_message_bytes,
            )
        return "Inbox readable"

    def _page(self, link: str, since: datetime, limit: int) -> dict:
        return self.client.inbox_delta(
            access_token=self._access_token(),
            mailbox=self.user,
            link=link,
            since=None if link else since,
            page_size=limit,
        )

    def read(self, cursor: dict, *, limit: int, since: datetime) -> MailboxPage:
        limit = max(1, int(limit))
        cursor = cursor or {}
        link = cursor.get("next_link") or cursor.get("delta_link") or ""
        if not isinstance(link, str):
            link = ""
        offset = cursor.get("offset", 0) if cursor.get("next_link") else 0
        offset = offset if isinstance(offset, int) and offset > 0 else 0
        reset = bool(cursor) and not link
        try:
            page = self._page(link, since, limit)
        except UnexpectedResponse as error:
            if error.code != "delta_expired" or not link:
                raise
            logger.info(
                "Email box: delta link of %s expired, reading again", self.mailbox
            )
            reset, offset = True, 0
            page = self._page("", since, limit)
        items = [
            item
            for item in page["value"]
            if isinstance(item, dict)
            and isinstance(item.get("id"), str)
            and "@removed" not in item
        ][offset:]
        taken = items[:limit]
        if len(items) > limit:
            new_cursor = {"next_link": page["url"], "offset": offset + limit}
        elif page.get("@odata.nextLink"):
            new_cursor = {"next_link": page["@odata.nextLink"]}
        else:
            new_cursor = {"delta_link": page["@odata.deltaLink"]}
        taken.sort(key=lambda item: str(item.get("receivedDateTime") or ""))
        token = self._access_token()
        messages = tuple(
            MailboxMessage(
                f"graph:{item['id']}",
                self.client.message_mime(
                    access_token=token,
                    mailbox=self.user,
                    message_id=item["id"],
                    max_bytes=self.max_message_bytes,
                ),
            )
            for item in taken
        )
        return MailboxPage(
            messages, new_cursor, more="delta_link" not in new_cursor, reset=reset
        )
