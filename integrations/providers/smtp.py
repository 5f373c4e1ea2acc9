"""
"SMTP": any SMTP server, or Exchange Online SMTP with

- Basic: a user name and password (AUTH PLAIN/LOGIN);
- OAuth 2.0, application: a client credentials token for Exchange Online
  (SMTP.SendAsApp), then AUTH XOAUTH2 as the From mailbox;
- OAuth 2.0, delegated: a person signs in once (Save & Authorize); their access token
  is refreshed before it expires and used for AUTH XOAUTH2, or for Graph
  `/me/sendMail` when the communication type is API.

With the Email box on, the sender mailbox is also read (`providers.mailbox`): over
IMAP with the Email box's own Email and Password (Basic), the app's Exchange Online
token (IMAP.AccessAsApp) or the signed-in user's (IMAP.AccessAsUser.All, in the same
grant as SMTP.Send); through Graph `/me` (Mail.Read) for the API communication type.

https://learn.microsoft.com/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth
https://learn.microsoft.com/exchange/mail-flow-best-practices/how-to-set-up-a-multifunction-device-or-application-to-send-email-using-microsoft-365-or-office-365
"""

import logging
from functools import partial

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from integrations.exceptions import (
    ConnectionFailed,
    IntegrationError,
    PermissionMissing,
    UnexpectedResponse,
)
from integrations.forms.smtp import SmtpForm
from integrations.providers import clouds, delegated, identity
from integrations.providers.base import (
    Connection,
    NotificationToolProvider,
    Step,
    TestReport,
)
from integrations.providers.graph import graph_client, message_payload
from integrations.providers.limits import EXCHANGE_SMTP, GRAPH
from integrations.providers.mailbox import (
    MAIL_READ,
    GraphReader,
    ImapLogin,
    ImapOAuth,
    ImapReader,
)
from integrations.providers.replies import PendingReply, reply_of
from integrations.providers.smtp_choices import (
    DEFAULT_SMTP_SCOPE,
    IMAP_DELEGATED_SCOPE,
    MICROSOFT_IMAP_HOSTS,
    MICROSOFT_SMTP_HOSTS,
    OTHER_SERVER,
    AuthType,
    CommunicationType,
    ImapSecurity,
    MinimumTls,
    Security,
)
from integrations.providers.smtp_client import SmtpSession, build_message

logger = logging.getLogger(__name__)


class SentItemsLookup:
    """`already_sent` through the tool's Email box, opened once per connection.

    Exchange Online files what a mailbox sends, by SMTP AUTH as by Graph, in that
    mailbox's Sent Items, so a message whose answer was lost is found there by its
    Message-ID (over IMAP, or Graph `/me` for the API communication type). Without
    an Email box, or when the lookup fails, the answer is "cannot tell" (None): the
    message is sent again and marked so. Looking is a courtesy; sending is the job.
    """

    provider: "SmtpProvider"
    _reader = None

    def already_sent(self, email, *, sender=None):
        if not email.message_id or not self.provider.email_box_enabled:
            return None
        # A session kept since an earlier lookup may have been dropped by the
        # server meanwhile: that one is tried again once on a new session.
        tries = 2 if self._reader is not None else 1
        for attempt in range(1, tries + 1):
            try:
                if self._reader is None:
                    self._reader = self.provider.mailbox_reader()
                return self._reader.holds_sent(email.message_id)
            except IntegrationError as error:
                self.close_lookup()
                if attempt == tries:
                    logger.warning(
                        "Sent Items lookup in the Email box of %s failed: %s",
                        self.provider.sender,
                        error,
                    )
        return None

    def close_lookup(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()


class SmtpConnection(SentItemsLookup, Connection):
    """One SMTP session reused for a batch; reconnects once if the server hung up.

    A submission returns once the message is written (`PendingReply`): the
    server's final reply is read when the worker comes back for it, so the worker
    prepares the next message while the server takes this one.
    """

    def __init__(self, provider: "SmtpProvider"):
        self.provider = provider
        self.session: SmtpSession | None = None

    def prepare(self, email):
        # The MIME message is built here, while the last message's reply is on
        # its way; the submission only talks to the server.
        message = self.provider.mime_message(email)
        return partial(self._submit, message, list(email.to))

    def _submit(self, message, recipients, *, attempt: int = 1) -> PendingReply:
        if self.session is None or not self.session.connected:
            self.session = self.provider.open_session()
        try:
            read = self.session.submit(
                message, sender=self.provider.sender, recipients=recipients
            )
        except ConnectionFailed as error:
            return self._again(error, message, recipients, attempt)

        def reply() -> str:
            try:
                return read()
            except ConnectionFailed as error:
                # The server hung up before answering: the message was not
                # accepted, so it goes again on a new session, as before.
                return reply_of(self._again(error, message, recipients, attempt))

        return PendingReply(reply)

    def _again(self, error, message, recipients, attempt: int) -> PendingReply:
        self.close()
        if attempt == 2 or error.code != "connection_failed":
            raise error
        return self._submit(message, recipients, attempt=2)

    def close(self) -> None:
        self.close_lookup()
        session, self.session = self.session, None
        if session is not None:
            session.close()


class GraphMeConnection(SentItemsLookup, Connection):
    """Delegated Graph `/me/sendMail`, with the signed-in user's token."""

    text_part = False  # sendMail takes the HTML body (`message_payload`)

    def __init__(self, provider: "SmtpProvider"):
        self.provider = provider
        self.client = graph_client(provider.endpoints.graph_host)

    def prepare(self, email):
        # The grant may be refreshed under a row lock: on the calling thread.
        return partial(
            self.client.send_mail_later,
            access_token=self.provider.delegated_token(),
            sender=None,
            payload=message_payload(
                email,
                sender=self.provider.sender,
                sender_name=self.provider.config.get("sender_name", ""),
            ),
        )

    def close(self) -> None:
        self.close_lookup()


class SmtpProvider(NotificationToolProvider):
    key = "smtp"
    name = _("SMTP")
    description = _(
        "Email through an SMTP server: Exchange Online with OAuth 2.0, or any server "
        "with a user name and password."
    )
    form_class = SmtpForm
    secret_fields = ("password", "client_secret", "private_key", "imap_password")
    transient_fields = ("test_email", "redirect_url")
    actions_template = "integrations/includes/smtp_actions.html"
    save_requires_validation = True
    bound_secrets = {
        delegated.GRANT_KEYS: (
            "auth_type",
            "cloud",
            "tenant_id",
            "client_id",
            "username",
            "authorization_endpoint",
            "token_endpoint",
            # The grant's scopes: the Scope, Graph's for the API communication
            # type, and the Email box's (IMAP or Mail.Read): changing one needs a
            # new sign-in.
            "scope",
            "communication_type",
            "email_box",
        ),
        # A private key goes with its certificate: replaced or removed with it.
        ("private_key",): ("certificate",),
    }
    authorization_secret_fields = ("client_secret",)
    field_labels = {
        **NotificationToolProvider.field_labels,
        "access_token": _("Access token"),
        "refresh_token": _("Refresh token"),
        "token_expires_at": _("Token expiry"),
        "authorized_account": _("Authorized account"),
        "authorized_at": _("Authorized at"),
        "refreshed_at": _("Token last refreshed"),
        # The Email box's fields carry the seeds' short labels in the drawer.
        "imap_host": _("Email box host name"),
        "imap_port": _("Email box port"),
        "imap_security": _("Email box security"),
        "imap_username": _("Email box email"),
        "imap_password": _("Email box password"),
    }
    test_steps = (
        ("connect", _("Connect to the SMTP server")),
        ("starttls", _("STARTTLS (certificate verified)")),
        ("authenticate", _("Authenticate")),
        ("sender", _("Sender accepted")),
        ("message", _("Message accepted")),
    )
    api_test_steps = (
        ("token", _("Access token for the signed-in user")),
        ("graph_send", _("Message accepted by Microsoft Graph")),
    )
    #: The health check stops after AUTH (then QUIT): no MAIL FROM, no message.
    health_steps = (
        ("connect", _("Connect to the SMTP server")),
        ("starttls", _("STARTTLS (certificate verified)")),
        ("authenticate", _("Authenticate")),
    )
    api_health_steps = (
        ("token", _("Access token for the signed-in user")),
        ("me", _("Signed-in user accepted by Microsoft Graph")),
    )

    # --- declarations ------------------------------------------------------------

    @property
    def auth_type(self) -> str:
        return self.config.get("auth_type") or AuthType.NONE

    @property
    def uses_graph(self) -> bool:
        return (
            self.auth_type == AuthType.OAUTH_DELEGATED
            and self.config.get("communication_type") == CommunicationType.API
        )

    @property
    def needs_authorization(self) -> bool:
        return self.auth_type == AuthType.OAUTH_DELEGATED

    @property
    def authorization_account(self) -> str:
        return (self.config.get("username") or "").lower()

    @property
    def endpoints(self) -> clouds.CloudEndpoints:
        cloud = self.config.get("cloud")
        if cloud in (None, "", OTHER_SERVER):
            cloud = clouds.Cloud.GLOBAL
        return clouds.endpoints(cloud)

    @property
    def sender(self) -> str:
        return self.config["sender"]

    @property
    def sending_limits(self):
        # Exchange Online's SMTP submission limit (another server's own limit goes in
        # the tool's "Messages per minute"), or Graph's for the API type.
        return GRAPH if self.uses_graph else EXCHANGE_SMTP

    @property
    def default_recipients(self) -> list[str]:
        return list(self.config.get("recipients") or [])

    @property
    def server(self) -> tuple[str, int]:
        """(host, port) to connect to; Microsoft hosts follow M365_SMTP_HOST/PORT."""
        host = (self.config.get("smtp_host") or "").strip()
        port = int(self.config.get("smtp_port") or 587)
        if host.lower() in MICROSOFT_SMTP_HOSTS and settings.M365_SMTP_HOST:
            host = settings.M365_SMTP_HOST
            port = settings.M365_SMTP_PORT or port
        return host, port

    @property
    def imap_server(self) -> tuple[str, int]:
        """(host, port) of the Email box; Microsoft hosts follow M365_IMAP_HOST/PORT."""
        host = (self.config.get("imap_host") or "").strip()
        if not host:
            host = clouds.preset(
                self.config.get("cloud")
                if self.config.get("cloud") in clouds.Cloud.values
                else clouds.Cloud.GLOBAL
            ).imap_host
        security = self.config.get("imap_security") or ImapSecurity.SSL
        port = int(
            self.config.get("imap_port")
            or (993 if security == ImapSecurity.SSL else 143)
        )
        if host.lower() in MICROSOFT_IMAP_HOSTS and settings.M365_IMAP_HOST:
            host = settings.M365_IMAP_HOST
            port = settings.M365_IMAP_PORT or port
        return host, port

    @property
    def delegated_scopes(self) -> list[str]:
        if self.uses_graph:
            scopes = [f"{self.endpoints.graph_resource}/Mail.Send"]
            if self.email_box_enabled:
                scopes.append(f"{self.endpoints.graph_resource}/Mail.Read")
            return scopes
        scopes = (self.config.get("scope") or DEFAULT_SMTP_SCOPE).split()
        if (
            self.email_box_enabled
            and self.microsoft_oauth
            and IMAP_DELEGATED_SCOPE not in scopes
        ):
            scopes.append(IMAP_DELEGATED_SCOPE)
        return scopes

    @property
    def microsoft_oauth(self) -> bool:
        """OAuth with a Microsoft tenant (not a server of explicit endpoints)."""
        return not (
            self.config.get("authorization_endpoint")
            and self.config.get("token_endpoint")
        )

    def delegated_client(self) -> delegated.DelegatedClient:
        return delegated.DelegatedClient(
            client_id=self.config["client_id"],
            client_secret=self.secrets.get("client_secret", ""),
            authority_host=self.endpoints.authority_host,
            tenant=self.config.get("tenant_id") or "",
            authorization_endpoint=self.config.get("authorization_endpoint") or "",
            token_endpoint=self.config.get("token_endpoint") or "",
        )

    # --- tokens ------------------------------------------------------------------

    def app_token(self) -> str:
        """Client credentials token for Exchange Online (SMTP.SendAsApp)."""
        creds = identity.app_credentials(
            self.endpoints.authority_host, self.config, self.secrets
        )
        scopes = [f"{self.endpoints.exchange_resource}/.default"]
        return identity.acquire_app_token(creds, scopes, store=self.token_store)

    def delegated_token(self) -> str:
        """The signed-in user's access token, refreshed (under a row lock) near expiry."""
        self.secrets = delegated.fresh_grant(
            self.secrets, redeem=self.redeem_refresh_token, store=self.grant_store
        )
        return self.secrets["access_token"]

    def redeem_refresh_token(self, refresh_token: str) -> delegated.Grant:
        """A new grant for the delegated client and scopes these settings name."""
        return delegated.refresh(
            self.delegated_client(),
            refresh_token=refresh_token,
            scopes=self.delegated_scopes,
        )

    # --- sending -----------------------------------------------------------------

    def mime_message(self, email):
        return build_message(
            email, sender=self.sender, sender_name=self.config.get("sender_name", "")
        )

    def new_session(self) -> SmtpSession:
        host, port = self.server
        return SmtpSession(
            host=host,
            port=port,
            security=self.config.get("security") or Security.STARTTLS,
            minimum_tls=self.config.get("minimum_tls") or MinimumTls.TLS_1_2,
        )

    def authenticate(self, session: SmtpSession) -> str:
        """Authenticate an open session as the settings say; returns what was used."""
        auth = self.auth_type
        if auth == AuthType.BASIC:
            session.login(self.config["username"], self.secrets.get("password", ""))
            return "AUTH (user name and password)"
        if auth == AuthType.OAUTH_APP:
            session.authenticate_xoauth2(self.sender, self.app_token())
            return "AUTH XOAUTH2 (application)"
        if auth == AuthType.OAUTH_DELEGATED:
            session.authenticate_xoauth2(
                self.config["username"], self.delegated_token()
            )
            return "AUTH XOAUTH2 (delegated)"
        return "no authentication"

    def open_session(self) -> SmtpSession:
        session = self.new_session()
        try:
            session.connect()
            session.starttls()
            self.authenticate(session)
        except BaseException:
            session.close()
            raise
        return session

    def open(self) -> Connection:
        if self.uses_graph:
            return GraphMeConnection(self)
        return SmtpConnection(self)

    # --- the Email box -------------------------------------------------------------

    def imap_auth(self) -> ImapLogin | ImapOAuth:
        """How the Email box signs in: as the tool does, with its own Email and
        Password for Basic (and for no authentication)."""
        auth = self.auth_type
        if auth == AuthType.OAUTH_APP:
            return ImapOAuth(
                user=(self.config.get("imap_username") or self.sender).strip(),
                token=self.app_token,
                claim=("roles", ("IMAP.AccessAsApp",)),
            )
        if auth == AuthType.OAUTH_DELEGATED:
            return ImapOAuth(
                user=self.config["username"],
                token=self.delegated_token,
                claim=(
                    ("scp", ("IMAP.AccessAsUser.All",))
                    if self.microsoft_oauth
                    else None
                ),
            )
        return ImapLogin(
            (self.config.get("imap_username") or "").strip(),
            self.secrets.get("imap_password", ""),
        )

    def mailbox_reader(self):
        if not self.email_box_enabled:
            return None
        if self.uses_graph:
            return GraphReader(
                graph_host=self.endpoints.graph_host,
                mailbox=self.config.get("username") or self.sender,
                token=self.delegated_token,
                me=True,
                claim=("scp", MAIL_READ),
            )
        host, port = self.imap_server
        return ImapReader(
            host=host,
            port=port,
            auth=self.imap_auth(),
            security=self.config.get("imap_security") or ImapSecurity.SSL,
            minimum_tls=self.config.get("minimum_tls") or MinimumTls.TLS_1_2,
        )

    # --- Test --------------------------------------------------------------------

    def new_report(self) -> TestReport:
        steps = self.api_test_steps if self.uses_graph else self.test_steps
        steps = (*steps, *self.mailbox_test_steps)
        return TestReport([Step(key, str(label)) for key, label in steps])

    def test_connection(self, *, recipients=None, report=None) -> TestReport:
        if not recipients and self.config.get("test_email"):
            recipients = [self.config["test_email"]]
        self._test_session = None
        try:
            return super().test_connection(recipients=recipients, report=report)
        finally:
            if self._test_session is not None:
                self._test_session.close()

    def new_health_report(self) -> TestReport:
        steps = self.api_health_steps if self.uses_graph else self.health_steps
        return TestReport([Step(key, str(label)) for key, label in steps])

    def health_check(self) -> TestReport:
        self._test_session = None
        try:
            return super().health_check()
        finally:
            if self._test_session is not None:
                self._test_session.close()  # QUIT

    def step_me(self, context):
        """The delegated token is still accepted: GET /me."""
        client = graph_client(self.endpoints.graph_host)
        me = client.me(access_token=context["token"])
        return me.get("userPrincipalName") or me.get("mail") or ""

    def step_connect(self, context):
        self._test_session = self.new_session()
        return self._test_session.connect()

    def step_starttls(self, context):
        version = self._test_session.starttls()
        return version or str(_("not used (Security: none)"))

    def step_authenticate(self, context):
        if self.auth_type == AuthType.OAUTH_APP:
            self.check_app_permission(self.app_token())
        return self.authenticate(self._test_session)

    @staticmethod
    def check_app_permission(token: str) -> None:
        """Exchange answers 535 5.7.3 to any token it refuses; a token without the
        SMTP.SendAsApp role says why, as Microsoft Azure Mail's permission step does."""
        try:
            roles = identity.token_claims(token).get("roles") or []
        except UnexpectedResponse:
            return  # not a JWT we can read: let the server decide
        if "SMTP.SendAsApp" not in roles:
            raise PermissionMissing(f"token roles: {', '.join(roles) or 'none'}")

    def step_sender(self, context):
        reply = self._test_session.mail_from(self.sender)
        self._test_session.rcpt_to(context["recipients"])
        return reply

    def step_message(self, context):
        message = self.mime_message(self.test_email(context["recipients"]))
        return self._test_session.data(message)

    def step_token(self, context):
        context["token"] = self.delegated_token()

    def step_graph_send(self, context):
        with self.open() as connection:
            return connection.send(self.test_email(context["recipients"]))
