"""
"Microsoft Azure Mail": app-only Microsoft Graph `sendMail` with client credentials
(a client secret, or a certificate). With the Email box on, the sender mailbox (or
the one named) is read through Graph too, with the Mail.Read application permission.

https://learn.microsoft.com/graph/api/user-sendmail
https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow
"""

import time
from functools import partial

from django.utils.translation import gettext_lazy as _

from integrations.exceptions import PermissionMissing
from integrations.forms.microsoft_azure_mail import MicrosoftAzureMailForm
from integrations.providers import clouds, identity
from integrations.providers.base import (
    Connection,
    NotificationToolProvider,
    StepSkipped,
)
from integrations.providers.graph import graph_client, message_payload
from integrations.providers.limits import GRAPH
from integrations.providers.mailbox import MAIL_READ, GraphReader

#: How long one connection reuses the access token it got without asking msal's cache
#: again. msal renews a token 5 minutes before it expires (and Entra ID issues them
#: for 60 to 90 minutes), so a minute never hands out one about to lapse.
TOKEN_REUSE_SECONDS = 60.0


class GraphConnection(Connection):
    """App-only Graph `sendMail` as the configured sender, over the shared client."""

    text_part = False  # sendMail takes the HTML body (`message_payload`)

    def __init__(self, provider: "MicrosoftAzureMailProvider"):
        self.provider = provider
        self.client = graph_client(provider.endpoints.graph_host)
        self._token = None
        self._token_at = 0.0

    def access_token(self) -> str:
        """The provider's token, looked up in msal's cache (or the integration's
        row) at most once a minute per connection: a batch of sends asks once."""
        now = time.monotonic()
        if self._token is None or now - self._token_at > TOKEN_REUSE_SECONDS:
            self._token = self.provider.access_token()
            self._token_at = now
        return self._token

    def prepare(self, email):
        # The token is got here; the POST starts when the submission runs, and its
        # answer is read later (several go side by side).
        return partial(
            self.client.send_mail_later,
            access_token=self.access_token(),
            sender=self.provider.sender,
            payload=message_payload(email),
        )

    def already_sent(self, email, *, sender=None):
        # Needs the optional Mail.ReadBasic.All application permission; without it
        # the answer is "cannot tell". Messages are saved to Sent Items
        # (message_payload), so one Graph accepted before the answer was lost is
        # found there by its Message-ID.
        if not email.message_id:
            return None
        try:
            return self.client.sent_message_exists(
                access_token=self.access_token(),
                sender=sender or self.provider.sender,
                internet_message_id=email.message_id,
            )
        except PermissionMissing:
            return None


class MicrosoftAzureMailProvider(NotificationToolProvider):
    key = "microsoft_azure_mail"
    name = _("Microsoft Azure Mail")
    description = _(
        "Email through Microsoft Graph with an Entra ID app (client credentials)."
    )
    form_class = MicrosoftAzureMailForm
    secret_fields = ("client_secret", "private_key")
    #: A private key goes with its certificate: replaced or removed with it.
    bound_secrets = {("private_key",): ("certificate",)}
    test_steps = (
        ("tenant", _("Tenant found")),
        ("token", _("Token acquired for Microsoft Graph")),
        ("permission", _("Mail.Send application permission present")),
        ("send", _("Test email accepted")),
    )
    health_steps = (
        ("tenant", _("Tenant found")),
        ("token", _("Token acquired for Microsoft Graph")),
        ("permission", _("Mail.Send application permission present")),
        ("sender_mailbox", _("Sender mailbox exists")),
    )

    @property
    def endpoints(self) -> clouds.CloudEndpoints:
        return clouds.endpoints(self.config.get("cloud") or clouds.Cloud.GLOBAL)

    @property
    def sender(self) -> str:
        return self.config["sender"]

    @property
    def default_recipients(self) -> list[str]:
        return list(self.config.get("recipients") or [])

    @property
    def sending_limits(self):
        return GRAPH

    @property
    def scopes(self) -> list[str]:
        return [f"{self.endpoints.graph_resource}/.default"]

    def credentials(self) -> identity.AppCredentials:
        return identity.app_credentials(
            self.endpoints.authority_host, self.config, self.secrets
        )

    def access_token(self) -> str:
        return identity.acquire_app_token(
            self.credentials(), self.scopes, store=self.token_store
        )

    def open(self) -> Connection:
        return GraphConnection(self)

    def mailbox_reader(self):
        if not self.email_box_enabled:
            return None
        return GraphReader(
            graph_host=self.endpoints.graph_host,
            mailbox=(self.config.get("mailbox_address") or self.sender).strip(),
            token=self.access_token,
            claim=("roles", MAIL_READ),
        )

    # --- Test Connection -------------------------------------------------------------

    def step_tenant(self, context):
        config = identity.discover_tenant(
            self.endpoints.authority_host, self.config["tenant_id"]
        )
        return config.get("issuer", "")

    def step_token(self, context):
        context["token"] = self.access_token()

    def step_permission(self, context):
        claims = identity.token_claims(context["token"])
        roles = claims.get("roles") or []
        if "Mail.Send" not in roles:
            raise PermissionMissing(
                f"token roles: {', '.join(roles) or 'none'}", code="permission_missing"
            )
        return ", ".join(roles)

    def step_sender_mailbox(self, context):
        """The sender's mailbox exists (GET /users/{sender}); skipped when the app
        may not read users (no User.Read.All: optional)."""
        client = graph_client(self.endpoints.graph_host)
        try:
            found = client.user_mailbox(access_token=context["token"], user=self.sender)
        except PermissionMissing as error:
            raise StepSkipped(
                str(_("not permitted (the app has no User.Read.All permission)"))
            ) from error
        return found["mail"]

    def step_send(self, context):
        with self.open() as connection:
            return connection.send(self.test_email(context["recipients"]))
