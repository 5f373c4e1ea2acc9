"""Everything the sandbox remembers: directory objects, grants, mail and knobs.

One ``State`` per running sandbox. The event loop thread and callers of
``Sandbox`` (tests) share it, so every read and write goes through ``lock``.
Times come from ``clock`` so that tests can move them forward.
"""

import base64
import copy
import datetime
import functools
import random
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field

from sandbox import mime, seed

DAY = 86400.0
# Stored messages beyond this are dropped oldest first (long benchmarks).
MESSAGE_LIMIT = 100_000
# Items kept in each mailbox's inbox (oldest dropped first).
INBOX_LIMIT = 10_000


class Clock:
    """Wall-clock time plus an offset that only moves forward."""

    def __init__(self):
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += max(0.0, float(seconds))

    def reset(self) -> None:
        self.offset = 0.0


def iso(ts: float) -> str:
    """ISO 8601 in UTC with a ``Z``, as Microsoft writes it."""
    dt = datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(value: str) -> float:
    dt = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.UTC)
    return dt.timestamp()


@dataclass
class Tenant:
    tenant_id: str
    domains: list
    smtp_auth_disabled: bool = False
    basic_auth_disabled: bool = False
    send_as_denied_at_data: bool = False
    access_token_lifetime: int = 3600
    refresh_token_inactivity: float = 90 * DAY
    # Seconds between a sendMail's answer and its copy showing in Sent Items.
    sent_items_delay: float = 0.0
    # A message to an unknown address of the tenant's domains puts an Exchange
    # non-delivery report into the sender's inbox.
    ndr_for_unknown_recipients: bool = True
    apps: dict = field(default_factory=dict)  # client_id -> App
    users: dict = field(default_factory=dict)  # lower-case upn -> User

    EDITABLE = (
        "smtp_auth_disabled",
        "basic_auth_disabled",
        "send_as_denied_at_data",
        "access_token_lifetime",
        "refresh_token_inactivity",
        "sent_items_delay",
        "ndr_for_unknown_recipients",
    )

    def public(self) -> dict:
        data = {"tenant_id": self.tenant_id, "domains": list(self.domains)}
        data.update({name: getattr(self, name) for name in self.EDITABLE})
        return data


@dataclass
class Secret:
    secret_id: str
    value: str
    expires_at: float | None
    display_name: str = ""
    # When the secret was added (Graph's startDateTime).
    start_at: float = 0.0

    @property
    def hint(self) -> str:
        """Graph's ``hint``: the first three characters of the value."""
        return self.value[:3]

    def public(self) -> dict:
        return {
            "secret_id": self.secret_id,
            "value": self.value,
            "expires_at": iso(self.expires_at) if self.expires_at else None,
            "display_name": self.display_name,
            "hint": self.hint,
        }


@dataclass
class Certificate:
    sha1: bytes
    sha256: bytes
    public_key: object
    pem: str
    # The certificate's notBefore and notAfter (epoch seconds).
    not_before: float = 0.0
    not_after: float | None = None
    # When Entra ID stops accepting the key: notAfter unless changed through
    # PATCH .../certificates/{thumbprint} (``None``: never).
    expires_at: float | None = None
    display_name: str = ""
    key_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    der: bytes = b""

    @property
    def thumbprint(self) -> str:
        return self.sha1.hex().upper()

    def public(self) -> dict:
        return {
            "thumbprint": self.thumbprint,
            "thumbprint_sha256": self.sha256.hex().upper(),
            "key_id": self.key_id,
            "display_name": self.display_name,
            "not_before": iso(self.not_before) if self.not_before else None,
            "not_after": iso(self.not_after) if self.not_after else None,
            "expires_at": iso(self.expires_at) if self.expires_at else None,
        }


@dataclass
class App:
    client_id: str
    display_name: str = "Sandbox app"
    application_permissions: list = field(default_factory=list)
    delegated_permissions: list = field(default_factory=list)
    admin_consent: bool = True
    redirect_uris: list = field(default_factory=list)
    access_policy: list | None = None  # None: may use every mailbox
    mailbox_permissions: list = field(default_factory=list)
    secrets: list = field(default_factory=list)
    certificates: list = field(default_factory=list)
    # The application object's id in Graph (not the client id).
    object_id: str = ""
    created_at: float = 0.0

    EDITABLE = (
        "display_name",
        "application_permissions",
        "delegated_permissions",
        "admin_consent",
        "redirect_uris",
        "access_policy",
        "mailbox_permissions",
    )

    def public(self) -> dict:
        data = {"client_id": self.client_id}
        data.update({name: copy.copy(getattr(self, name)) for name in self.EDITABLE})
        data["secrets"] = [
            {
                "secret_id": s.secret_id,
                "expires_at": s.public()["expires_at"],
                "display_name": s.display_name,
                "hint": s.hint,
            }
            for s in self.secrets
        ]
        data["certificates"] = [c.thumbprint for c in self.certificates]
        data["certificate_credentials"] = [c.public() for c in self.certificates]
        return data

    def secret(self, secret_id: str):
        for secret in self.secrets:
            if secret.secret_id == (secret_id or "").lower():
                return secret
        return None

    def certificate_by_thumbprint(self, thumbprint: str):
        """A registered certificate by its SHA-1 or SHA-256 thumbprint (hex)."""
        wanted = (thumbprint or "").strip().replace(":", "").upper()
        for cert in self.certificates:
            if wanted in (cert.thumbprint, cert.sha256.hex().upper()):
                return cert
        return None

    def certificate(self, x5t: bytes | None, x5t_s256: bytes | None):
        for cert in self.certificates:
            if (x5t_s256 and cert.sha256 == x5t_s256) or (x5t and cert.sha1 == x5t):
                return cert
        return None

    def may_use_mailbox(self, address: str) -> bool:
        if self.access_policy is None:
            return True
        return address.lower() in {a.lower() for a in self.access_policy}


@dataclass
class User:
    user_principal_name: str
    object_id: str
    password: str | None = None
    display_name: str = ""
    has_mailbox: bool = True
    shared: bool = False
    send_as: list = field(default_factory=list)
    tokens_valid_from: float = 0.0
    # False: IMAP is disabled for the mailbox (Set-CASMailbox -ImapEnabled $false).
    imap_enabled: bool = True
    # False: the account is disabled (sign-in and refresh AADSTS50057).
    account_enabled: bool = True
    # True: a refresh token obtained without MFA answers AADSTS50076.
    mfa_required: bool = False

    EDITABLE = (
        "password",
        "display_name",
        "has_mailbox",
        "shared",
        "send_as",
        "imap_enabled",
        "account_enabled",
        "mfa_required",
    )

    def public(self) -> dict:
        data = {"user_principal_name": self.user_principal_name, "id": self.object_id}
        data.update({name: copy.copy(getattr(self, name)) for name in self.EDITABLE})
        data.pop("password")
        return data

    def may_send_as(self, address: str) -> bool:
        address = address.lower()
        if address == self.user_principal_name.lower():
            return True
        return address in {a.lower() for a in self.send_as}


@dataclass
class Inbox:
    """One mailbox's inbox: raw messages with IMAP UIDs and a filing order."""

    address: str
    uidvalidity: int
    uidnext: int = 1
    position: int = 0  # items filed so far (Graph delta counts on it)
    # Tells this inbox from an earlier one of the same address (after a reset).
    sync_id: str = field(default_factory=lambda: secrets.token_hex(8))
    items: list = field(default_factory=list)


def empty_counters() -> dict:
    return {
        "token_requests": {
            "client_credentials": 0,
            "authorization_code": 0,
            "refresh_token": 0,
        },
        "refresh_redemptions": 0,
        "graph_requests": 0,
        "graph_send_mail": 0,
        "graph_accepted": 0,
        "graph_throttled": 0,
        "graph_throttled_concurrency": 0,
        "sent_items_saved": 0,
        "smtp_sessions": 0,
        "smtp_messages": 0,
        "smtp_throttled": 0,
        "imap_logins": 0,
        "imap_auth_failures": 0,
        "imap_fetches": 0,
        "graph_list_inbox": 0,
        "graph_get_mime": 0,
        "graph_delta": 0,
        "faults_fired": {"token": 0, "graph": 0, "smtp": 0, "imap": 0},
        "tcp_connections": {"https": 0, "smtp": 0, "imap": 0},
    }


FAULT_TARGETS = ("token", "graph", "smtp", "imap")
SMTP_STAGES = ("connect", "auth", "mail", "rcpt", "data")
IMAP_STAGES = ("connect", "auth", "select", "fetch")
# The Graph operations a fault can be aimed at ("any": every Graph request).
GRAPH_OPERATIONS = ("sendMail", "listMessages", "any")


#: Extensions the sandbox's SMTP server offers after EHLO, as Exchange Online does;
#: each can be withdrawn (PUT /_sandbox/smtp) to test a client against a server
#: without it. PIPELINING: RFC 2920.
DEFAULT_SMTP_OFFERS = {"pipelining": True}

DEFAULT_THROTTLING = {
    "enabled": False,
    "graph_requests_per_window": 30,
    "window_seconds": 1.0,
    "graph_concurrency_per_mailbox": 4,
    "smtp_messages_per_minute": 30,
    # The SMTP budget's window: a minute, as in Exchange Online; shorter in tests.
    "smtp_window_seconds": 60.0,
}


class State:
    """The sandbox's whole memory; ``reset()`` brings back the seeded tenant."""

    def __init__(self, extra_app_permissions=()):
        self.lock = threading.RLock()
        self.clock = Clock()
        # Application permissions the seeded app gets on top of the seed's
        # (``serve --grant``); they survive ``reset()``.
        self.extra_app_permissions = list(extra_app_permissions)
        # The last UIDVALIDITY handed out; kept across resets so that a mailbox
        # never shows an earlier mailbox's UIDVALIDITY with other messages.
        self.last_uidvalidity = int(time.time())
        # Signs the Graph delta and skip tokens (opaque to clients).
        self.delta_key = secrets.token_bytes(32)
        self.reset()

    # -- lifecycle ---------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self.clock.reset()
            self.tenants = {}  # tenant_id -> Tenant
            self.codes = {}  # code -> dict
            self.refresh_tokens = {}  # token -> dict
            self.messages = []
            self.sent_items = {}  # lower-case mailbox -> [saved copy, ...]
            self.sent_raw = {}  # a saved copy's id -> its MIME (or a builder)
            self.sent_uidnext = {}  # lower-case mailbox -> the next copy's UID
            # UIDs start again after a reset, so their validity changes too.
            self.sent_uidvalidity = random.randint(1, 2**31 - 1)  # noqa: S311
            self.mailboxes = {}  # lower-case mailbox -> Inbox
            self.faults = []
            self.throttling = dict(DEFAULT_THROTTLING)
            # What the SMTP server offers besides aiosmtpd's own extensions.
            self.smtp_offers = dict(DEFAULT_SMTP_OFFERS)
            self.graph_windows = {}  # (client_id, mailbox) -> [start, count]
            self.graph_in_flight = {}  # (client_id, mailbox) -> count
            self.smtp_windows = {}  # identity -> [start, count]
            self.counters = empty_counters()
            self._seed()

    def _seed(self) -> None:
        tenant = Tenant(tenant_id=seed.TENANT_ID, domains=[seed.DOMAIN])
        self.tenants[tenant.tenant_id] = tenant
        app = App(
            client_id=seed.CLIENT_ID,
            display_name=seed.APP_DISPLAY_NAME,
            application_permissions=_unique(
                seed.APPLICATION_PERMISSIONS + self.extra_app_permissions
            ),
            delegated_permissions=list(seed.DELEGATED_PERMISSIONS),
            admin_consent=True,
            redirect_uris=list(seed.REDIRECT_URIS),
            access_policy=None,
            mailbox_permissions=[seed.SENDER],
            secrets=[
                Secret(
                    seed.CLIENT_SECRET_ID,
                    seed.CLIENT_SECRET,
                    None,
                    display_name="Sandbox secret",
                    start_at=self.clock.now(),
                )
            ],
            object_id=seed.APP_OBJECT_ID,
            created_at=self.clock.now(),
        )
        tenant.apps[app.client_id] = app
        for user in (
            User(seed.SENDER, seed.SENDER_OID, None, "Notifications"),
            User(seed.RECIPIENT, seed.RECIPIENT_OID, None, "Security team", True, True),
            User(seed.USER, seed.USER_OID, seed.PASSWORD, "Alex Wilber"),
        ):
            tenant.users[user.user_principal_name.lower()] = user

    # -- directory ----------------------------------------------------------

    def tenant(self, key: str) -> Tenant | None:
        """A tenant by GUID or by one of its domains."""
        key = (key or "").lower()
        with self.lock:
            found = self.tenants.get(key)
            if found:
                return found
            for tenant in self.tenants.values():
                if key in (d.lower() for d in tenant.domains):
                    return tenant
        return None

    def app(self, tenant: Tenant, client_id: str) -> App | None:
        return tenant.apps.get((client_id or "").lower())

    def user(self, tenant: Tenant, key: str) -> User | None:
        """A user by UPN or object ID."""
        key = (key or "").lower()
        found = tenant.users.get(key)
        if found:
            return found
        for user in tenant.users.values():
            if user.object_id == key:
                return user
        return None

    def user_anywhere(self, upn: str) -> tuple:
        """(tenant, user) for a UPN in any tenant, or (None, None)."""
        with self.lock:
            for tenant in self.tenants.values():
                user = tenant.users.get((upn or "").lower())
                if user:
                    return tenant, user
        return None, None

    def create_tenant(self, data: dict) -> Tenant:
        with self.lock:
            tenant_id = str(data.get("tenant_id") or uuid.uuid4()).lower()
            if tenant_id in self.tenants:
                raise ValueError(f"Tenant {tenant_id} already exists.")
            domains = list(data.get("domains") or [])
            for domain in domains:
                if self.tenant(domain):
                    raise ValueError(f"Domain {domain} belongs to another tenant.")
            tenant = Tenant(tenant_id=tenant_id, domains=domains)
            self.update_tenant(tenant, data)
            self.tenants[tenant_id] = tenant
            return tenant

    def update_tenant(self, tenant: Tenant, data: dict) -> Tenant:
        with self.lock:
            if "domains" in data and data["domains"] is not None:
                tenant.domains = list(data["domains"])
            for name in Tenant.EDITABLE:
                if name in data and data[name] is not None:
                    setattr(tenant, name, data[name])
            return tenant

    def create_app(self, tenant: Tenant, data: dict) -> App:
        with self.lock:
            client_id = str(data.get("client_id") or uuid.uuid4()).lower()
            if client_id in tenant.apps:
                raise ValueError(f"App {client_id} already exists.")
            app = App(
                client_id=client_id,
                object_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"app:{client_id}")),
                created_at=self.clock.now(),
            )
            self.update_app(app, data)
            tenant.apps[client_id] = app
            return app

    def update_app(self, app: App, data: dict) -> App:
        with self.lock:
            for name in App.EDITABLE:
                if name in data:
                    value = data[name]
                    if isinstance(value, list):
                        value = list(value)
                    setattr(app, name, value)
            return app

    def add_secret(self, app: App, data: dict) -> Secret:
        expires = _expiry(data, "expires_at")
        display_name = data.get("display_name") or ""
        if not isinstance(display_name, str):
            raise ValueError("display_name must be a string.")
        value = data.get("value")
        if value is not None and (not isinstance(value, str) or not value):
            raise ValueError("value must be a non-empty string.")
        with self.lock:
            secret = Secret(
                secret_id=str(uuid.uuid4()),
                value=value or _new_secret_value(),
                expires_at=expires,
                display_name=display_name,
                start_at=self.clock.now(),
            )
            app.secrets.append(secret)
            return secret

    def update_secret(self, secret: Secret, data: dict) -> Secret:
        """Change a secret's ``expires_at`` (ISO 8601, or null: never)."""
        if "expires_at" not in data:
            raise ValueError("Give expires_at (ISO 8601 date and time, or null).")
        expires = _expiry(data, "expires_at")
        with self.lock:
            secret.expires_at = expires
            return secret

    def add_certificate(self, app: App, cert: Certificate) -> None:
        with self.lock:
            app.certificates = [c for c in app.certificates if c.sha1 != cert.sha1]
            app.certificates.append(cert)

    def update_certificate(self, cert: Certificate, data: dict) -> Certificate:
        """Change when Entra ID stops accepting a certificate (``expires_at``,
        ISO 8601; null puts back the certificate's notAfter)."""
        if "expires_at" not in data:
            raise ValueError("Give expires_at (ISO 8601 date and time, or null).")
        expires = _expiry(data, "expires_at")
        with self.lock:
            cert.expires_at = cert.not_after if expires is None else expires
            return cert

    def revoke_consent(self, app: App) -> App:
        """Take back the admin consent (as removing the grants in Entra ID)."""
        with self.lock:
            app.admin_consent = False
            return app

    def create_user(self, tenant: Tenant, data: dict) -> User:
        with self.lock:
            upn = data.get("user_principal_name")
            if not upn or "@" not in upn:
                raise ValueError("user_principal_name must be an e-mail address.")
            if upn.lower() in tenant.users:
                raise ValueError(f"User {upn} already exists.")
            user = User(
                user_principal_name=upn,
                object_id=str(data.get("id") or uuid.uuid4()),
                display_name=upn.split("@")[0],
            )
            self.update_user(user, data)
            tenant.users[upn.lower()] = user
            return user

    def update_user(self, user: User, data: dict) -> User:
        for name in ("account_enabled", "mfa_required", "imap_enabled"):
            if name in data and not isinstance(data[name], bool):
                raise ValueError(f"{name} must be true or false.")
        if "password" in data and not (
            data["password"] is None or isinstance(data["password"], str)
        ):
            raise ValueError("password must be a string or null.")
        with self.lock:
            changed_password = "password" in data and data["password"] != user.password
            for name in User.EDITABLE:
                if name in data:
                    value = data[name]
                    if isinstance(value, list):
                        value = list(value)
                    setattr(user, name, value)
            if changed_password:
                # Entra ID revokes the user's refresh tokens when the password
                # changes or is reset (then AADSTS50173).
                user.tokens_valid_from = self.clock.now()
            return user

    def revoke_user(self, user: User) -> None:
        with self.lock:
            user.tokens_valid_from = self.clock.now()

    # -- codes and refresh tokens -------------------------------------------

    def new_code(self, grant: dict) -> str:
        code = "1.A" + secrets.token_urlsafe(96)
        with self.lock:
            self.codes[code] = dict(grant, issued_at=self.clock.now(), redeemed=False)
        return code

    def new_refresh_token(self, grant: dict) -> str:
        token = "1.A" + secrets.token_urlsafe(160)
        with self.lock:
            now = self.clock.now()
            grant = dict(grant, last_used=now, issued_at=now, used=False)
            grant.setdefault("first_issued_at", now)
            self.refresh_tokens[token] = grant
        return token

    # -- mail --------------------------------------------------------------------

    def store_message(self, base: dict, recipients: list) -> list:
        """Store one copy per distinct recipient; returns the stored dicts."""
        stored = []
        seen = set()
        with self.lock:
            received_at = iso(self.clock.now())
            for recipient in recipients:
                if recipient.lower() in seen:
                    continue
                seen.add(recipient.lower())
                message = dict(base)
                message["id"] = uuid.uuid4().hex
                message["recipient"] = recipient
                message["received_at"] = received_at
                self.messages.append(message)
                stored.append(message)
            if len(self.messages) > MESSAGE_LIMIT * 1.1:
                del self.messages[: len(self.messages) - MESSAGE_LIMIT]
        return stored

    def find_messages(self, to=None, sender=None, subject=None) -> list:
        with self.lock:
            found = []
            for message in self.messages:
                if to and message["recipient"].lower() != to.lower():
                    continue
                if sender and (message.get("from") or "").lower() != sender.lower():
                    continue
                if subject and subject not in (message.get("subject") or ""):
                    continue
                found.append(copy.deepcopy(message))
            return found

    def clear_messages(self) -> int:
        with self.lock:
            count = len(self.messages)
            self.messages = []
            return count

    # -- Sent Items ------------------------------------------------------------------

    def save_sent_item(
        self, mailbox: str, message: dict, delay: float = 0.0, raw=None
    ) -> dict:
        """File a copy of a sent message in ``mailbox``'s Sent Items.

        It shows in listings from ``delay`` seconds (sandbox clock) on, as Exchange
        files the copy a moment after accepting the message. ``raw`` is its MIME
        form for IMAP (bytes, or a callable that builds them when first read);
        the copy is built from ``message`` when it has none. Copies are numbered
        with IMAP UIDs, per mailbox.
        """
        with self.lock:
            now = self.clock.now()
            item = copy.deepcopy(message)
            key = mailbox.lower()
            uid = self.sent_uidnext.get(key, 1)
            self.sent_uidnext[key] = uid + 1
            item.update(
                id=_graph_item_id(),
                change_key=_change_key(),
                mailbox=mailbox,
                saved_at=now,
                visible_at=now + max(0.0, float(delay or 0)),
                uid=uid,
            )
            folder = self.sent_items.setdefault(key, [])
            folder.append(item)
            self.sent_raw[item["id"]] = (
                raw
                if raw is not None
                else functools.partial(mime.graph_message, item, now)
            )
            if len(folder) > MESSAGE_LIMIT * 1.1:
                for dropped in folder[: len(folder) - MESSAGE_LIMIT]:
                    self.sent_raw.pop(dropped["id"], None)
                del folder[: len(folder) - MESSAGE_LIMIT]
            self.counters["sent_items_saved"] += 1
            return copy.deepcopy(item)

    def sent_items_snapshot(self, address: str) -> dict:
        """``uidvalidity``, ``uidnext`` and ``items`` (filed by now, oldest first,
        with their ``raw`` bytes, ``uid`` and ``received_at``) of ``address``'s
        Sent Items, for IMAP."""
        with self.lock:
            now = self.clock.now()
            key = (address or "").lower()
            items = []
            for item in self.sent_items.get(key, []):
                if item["visible_at"] > now:
                    continue
                raw = self.sent_raw.get(item["id"], b"")
                if callable(raw):
                    raw = self.sent_raw[item["id"]] = bytes(raw())
                items.append(dict(item, raw=raw, received_at=item["saved_at"]))
            return {
                "uidvalidity": self.sent_uidvalidity,
                "uidnext": self.sent_uidnext.get(key, 1),
                "items": items,
            }

    def find_sent_items(
        self, mailbox: str, internet_message_id: str | None = None
    ) -> list:
        """Copies filed in ``mailbox``'s Sent Items by now, oldest first;
        ``internet_message_id`` is compared exactly."""
        with self.lock:
            now = self.clock.now()
            found = []
            for item in self.sent_items.get((mailbox or "").lower(), []):
                if item["visible_at"] > now:
                    continue
                if (
                    internet_message_id is not None
                    and item["message_id"] != internet_message_id
                ):
                    continue
                found.append(copy.deepcopy(item))
            return found

    def all_sent_items(self, mailbox: str | None = None) -> list:
        """Every saved copy (filed or not yet), for the control API and tests."""
        with self.lock:
            if mailbox:
                folders = [self.sent_items.get(mailbox.lower(), [])]
            else:
                folders = list(self.sent_items.values())
            items = [copy.deepcopy(item) for folder in folders for item in folder]
        items.sort(key=lambda item: item["saved_at"])
        return items

    def clear_sent_items(self) -> int:
        with self.lock:
            count = sum(len(folder) for folder in self.sent_items.values())
            self.sent_items = {}
            self.sent_raw = {}
            return count

    # -- inboxes (IMAP and Graph reading) ------------------------------------------

    def _inbox(self, address: str) -> "Inbox":
        """``address``'s inbox, made on first use (call with ``lock`` held)."""
        key = address.lower()
        inbox = self.mailboxes.get(key)
        if inbox is None:
            inbox = self.mailboxes[key] = Inbox(
                address=address, uidvalidity=self._new_uidvalidity()
            )
        return inbox

    def _new_uidvalidity(self) -> int:
        self.last_uidvalidity = max(self.last_uidvalidity + 1, int(self.clock.now()))
        return self.last_uidvalidity

    def file_in_inbox(self, address: str, raw, fields: dict) -> dict:
        """File the RFC 5322 message ``raw`` in ``address``'s inbox.

        ``raw`` is bytes, or a function returning them that is called when the
        item is first read (building MIME costs; most messages are never read).
        ``fields`` are the Graph-facing properties (``message_id``, ``subject``,
        ``from``, ``to``, ``cc``, ``headers``, ``text``, ``html``, ...); returns
        a copy of the item (without ``raw``), with its ``id`` and IMAP ``uid``.
        """
        with self.lock:
            inbox = self._inbox(address)
            now = self.clock.now()
            inbox.position += 1
            item = dict(fields)
            item.update(
                id=_graph_item_id(),
                change_key=_change_key(),
                mailbox=inbox.address,
                uid=inbox.uidnext,
                position=inbox.position,
                received_at=now,
                saved_at=now,
                visible_at=now,
                raw=raw if callable(raw) else bytes(raw),
            )
            inbox.uidnext += 1
            inbox.items.append(item)
            if len(inbox.items) > INBOX_LIMIT:
                del inbox.items[: len(inbox.items) - INBOX_LIMIT]
            return {k: v for k, v in item.items() if k != "raw"}

    def inbox_snapshot(self, address: str) -> dict:
        """``uidvalidity``, ``uidnext``, ``sync_id``, ``position`` and ``items``
        (oldest first, shallow copies) of ``address``'s inbox."""
        with self.lock:
            inbox = self._inbox(address)
            return {
                "uidvalidity": inbox.uidvalidity,
                "uidnext": inbox.uidnext,
                "sync_id": inbox.sync_id,
                "position": inbox.position,
                "items": [_materialized(item) for item in inbox.items],
            }

    def inbox_view(self, address: str) -> dict:
        """``sync_id``, ``position`` and ``items`` (without raw bytes) of
        ``address``'s inbox, for the delta query."""
        with self.lock:
            inbox = self._inbox(address)
            return {
                "sync_id": inbox.sync_id,
                "position": inbox.position,
                "items": self.inbox_items(address, with_raw=False),
            }

    def inbox_items(self, address: str, with_raw: bool = True) -> list:
        """The items of ``address``'s inbox, oldest first (none if never used);
        ``with_raw=False`` leaves the raw bytes out (and unbuilt)."""
        with self.lock:
            inbox = self.mailboxes.get((address or "").lower())
            if inbox is None:
                return []
            if with_raw:
                return [_materialized(item) for item in inbox.items]
            return [
                {k: v for k, v in item.items() if k != "raw"} for item in inbox.items
            ]

    def inbox_item(self, address: str, item_id: str) -> dict | None:
        with self.lock:
            inbox = self.mailboxes.get((address or "").lower())
            for item in inbox.items if inbox else ():
                if item["id"] == item_id:
                    return _materialized(item)
        return None

    def renumber_inbox(self, address: str) -> dict:
        """A new UIDVALIDITY and UIDs from 1, as a server rebuilding its index."""
        with self.lock:
            inbox = self._inbox(address)
            inbox.uidvalidity = self._new_uidvalidity()
            for uid, item in enumerate(inbox.items, start=1):
                item["uid"] = uid
            inbox.uidnext = len(inbox.items) + 1
            return {"uidvalidity": inbox.uidvalidity, "uidnext": inbox.uidnext}

    # -- counters ------------------------------------------------------------------

    def count(self, name: str, sub: str | None = None, amount: int = 1) -> None:
        with self.lock:
            if sub is None:
                self.counters[name] += amount
            else:
                self.counters[name][sub] = self.counters[name].get(sub, 0) + amount

    def counters_snapshot(self) -> dict:
        with self.lock:
            return copy.deepcopy(self.counters)

    def zero_counters(self) -> None:
        with self.lock:
            self.counters = empty_counters()

    # -- faults --------------------------------------------------------------------

    def add_fault(self, data: dict) -> dict:
        target = data.get("target")
        if target not in FAULT_TARGETS:
            raise ValueError("target must be one of token, graph, smtp, imap.")
        stage = data.get("smtp_stage", "data")
        if stage not in SMTP_STAGES:
            raise ValueError("smtp_stage must be connect, auth, mail, rcpt or data.")
        imap_stage = data.get("imap_stage", "auth")
        if imap_stage not in IMAP_STAGES:
            raise ValueError("imap_stage must be connect, auth, select or fetch.")
        reply = data.get("imap_reply")
        if reply is not None and (not isinstance(reply, str) or not reply.strip()):
            raise ValueError("imap_reply must be a response text (NO ...).")
        operation = data.get("graph_operation", "sendMail")
        if operation not in GRAPH_OPERATIONS:
            raise ValueError("graph_operation must be sendMail, listMessages or any.")
        if data.get("count") is not None:
            count = data["count"]
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError("count must be a whole number, 0 or more.")
        if data.get("probability") is not None:
            probability = data["probability"]
            if isinstance(probability, bool) or not isinstance(
                probability, (int, float)
            ):
                raise ValueError("probability must be a number from 0 to 1.")
            if not 0 <= probability <= 1:
                raise ValueError("probability must be a number from 0 to 1.")
        delay = data.get("delay")
        if delay is not None and (
            isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0
        ):
            raise ValueError("delay must be a number of seconds, 0 or more.")
        for name in ("status", "accept_then_status"):
            value = data.get(name)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, int)
                or not 100 <= value <= 599
            ):
                raise ValueError(f"{name} must be an HTTP status code.")
        fault = dict(
            data,
            id=uuid.uuid4().hex,
            smtp_stage=stage,
            imap_stage=imap_stage,
            graph_operation=operation,
        )
        if fault.get("probability") is None and fault.get("count") is None:
            fault["count"] = 1
        with self.lock:
            self.faults.append(fault)
        return fault

    def take_fault(
        self, target: str, stage: str | None = None, operation: str | None = None
    ) -> dict | None:
        """The first fault that fires now for this target, used up by one.

        Faults are tried in the order they were added; one with a ``probability``
        that does not fire lets the next one try. ``operation`` is the Graph
        operation asking (faults aimed at another one are skipped).
        """
        with self.lock:
            for fault in self.faults:
                if fault["target"] != target:
                    continue
                stage_key = "imap_stage" if target == "imap" else "smtp_stage"
                if stage and fault[stage_key] != stage:
                    continue
                if operation and fault["graph_operation"] not in (operation, "any"):
                    continue
                probability = fault.get("probability")
                if fault.get("count") is not None:
                    if fault["count"] <= 0:
                        continue
                    if probability is not None and random.random() >= float(
                        probability
                    ):
                        continue
                    fault["count"] -= 1
                elif random.random() >= float(probability or 0):
                    continue
                self.counters["faults_fired"][target] += 1
                return dict(fault)
        return None

    def clear_faults(self) -> int:
        with self.lock:
            count = len(self.faults)
            self.faults = []
            return count

    # -- the SMTP server's extensions ------------------------------------------------

    def set_smtp_offers(self, data: dict) -> dict:
        with self.lock:
            for name in DEFAULT_SMTP_OFFERS:
                if name in data:
                    self.smtp_offers[name] = data[name]
            return dict(self.smtp_offers)

    # -- throttling ------------------------------------------------------------------

    def set_throttling(self, data: dict) -> dict:
        with self.lock:
            for name in DEFAULT_THROTTLING:
                if name in data:
                    self.throttling[name] = data[name]
            self.graph_windows = {}
            self.smtp_windows = {}
            return dict(self.throttling)

    def graph_rate_check(self, client_id: str, mailbox: str) -> float | None:
        """None if allowed, else the seconds until the window reopens.

        The budget is per (app, mailbox), as Outlook's limits in Graph are.
        """
        with self.lock:
            conf = self.throttling
            if not conf["enabled"]:
                return None
            now = time.monotonic()
            window = float(conf["window_seconds"])
            key = (client_id, mailbox.lower())
            slot = self.graph_windows.get(key)
            if slot is None or now - slot[0] >= window:
                slot = self.graph_windows[key] = [now, 0]
            if slot[1] >= int(conf["graph_requests_per_window"]):
                self.counters["graph_throttled"] += 1
                return max(0.001, window - (now - slot[0]))
            slot[1] += 1
            return None

    def graph_enter(self, client_id: str, mailbox: str) -> bool:
        """Count one request in flight for (app, mailbox); False if that is over
        the concurrency limit (only while throttling is enabled)."""
        with self.lock:
            key = (client_id, mailbox.lower())
            current = self.graph_in_flight.get(key, 0)
            conf = self.throttling
            limit = int(conf["graph_concurrency_per_mailbox"])
            if conf["enabled"] and current >= limit:
                self.counters["graph_throttled"] += 1
                self.counters["graph_throttled_concurrency"] += 1
                return False
            self.graph_in_flight[key] = current + 1
            return True

    def graph_leave(self, client_id: str, mailbox: str) -> None:
        with self.lock:
            key = (client_id, mailbox.lower())
            left = self.graph_in_flight.get(key, 1) - 1
            if left <= 0:
                self.graph_in_flight.pop(key, None)
            else:
                self.graph_in_flight[key] = left

    def smtp_rate_check(self, identity: str) -> bool:
        """True if one more SMTP message fits this minute's budget."""
        with self.lock:
            conf = self.throttling
            if not conf["enabled"]:
                return True
            now = time.monotonic()
            window = float(conf["smtp_window_seconds"])
            slot = self.smtp_windows.get(identity)
            if slot is None or now - slot[0] >= window:
                slot = self.smtp_windows[identity] = [now, 0]
            if slot[1] >= int(conf["smtp_messages_per_minute"]):
                self.counters["smtp_throttled"] += 1
                return False
            slot[1] += 1
            return True


def _expiry(data: dict, name: str) -> float | None:
    """``data[name]`` as epoch seconds: an ISO 8601 date and time, or None."""
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be an ISO 8601 date and time, or null.")
    try:
        return parse_iso(value.strip())
    except ValueError as exc:
        raise ValueError(f"{name} must be an ISO 8601 date and time, or null.") from exc


def _materialized(item: dict) -> dict:
    """A copy of an inbox item with its raw bytes built (call with the lock)."""
    if callable(item["raw"]):
        item["raw"] = bytes(item["raw"]())
    return dict(item)


def _unique(names) -> list:
    return list(dict.fromkeys(names))


def _graph_item_id() -> str:
    """An id shaped like an Exchange item id in Graph (base64url, ``AAMkA...=``)."""
    raw = b"\x00\x03\x24\x00" + secrets.token_bytes(109)  # 113 bytes: one "="
    return base64.urlsafe_b64encode(raw).decode()


def _change_key() -> str:
    return base64.b64encode(b"\x09\x00\x00\x00\x16" + secrets.token_bytes(17)).decode()


def _new_secret_value() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
    body = "".join(secrets.choice(alphabet) for _ in range(37))
    return secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") + "xz8Q~" + body
