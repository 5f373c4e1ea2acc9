"""
"Microsoft Azure Mail": app-only Microsoft Graph `sendMail` with client credentials
(a client secret, or a certificate).

https://learn.microsoft.com/graph/api/user-sendmail
https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow
"""

from django.utils.translation import gettext_lazy as _

from integrations.exceptions import PermissionMissing
from integrations.forms.graph_mail import GraphMailForm
from integrations.providers import clouds, identity
from integrations.providers.base import Connection, NotificationToolProvider
from integrations.providers.graph import GraphClient, message_payload
from integrations.providers.http import M365Session

_clients: dict[str, GraphClient] = {}


def graph_client(graph_host: str) -> GraphClient:
    """One Graph client (one keep-alive session) per Graph host, per process."""
    client = _clients.get(graph_host)
    if client is None:
        client = _clients.setdefault(graph_host, GraphClient(graph_host, M365Session()))
    return client


def app_credentials(endpoints, config: dict, secrets: dict) -> identity.AppCredentials:
    """Client credentials from saved settings: the certificate when one is configured
    (a stored private key without a certificate thumbprint is left over and ignored),
    otherwise the client secret."""
    use_certificate = bool(config.get("certificate_thumbprint")) and bool(
        secrets.get("private_key")
    )
    return identity.AppCredentials(
        authority_host=endpoints.authority_host,
        tenant=config["tenant_id"],
        client_id=config["client_id"],
        client_secret="" if use_certificate else secrets.get("client_secret", ""),
        private_key=secrets.get("private_key", "") if use_certificate else "",
        certificate=config.get("certificate", "") if use_certificate else "",
        thumbprint=config.get("certificate_thumbprint", "") if use_certificate else "",
    )


class GraphConnection(Connection):
    def __init__(self, provider: "GraphMailProvider"):
        self.provider = provider
        self.client = graph_client(provider.endpoints.graph_host)

    def send(self, email) -> str:
        # The token comes from msal's cache, so this is free until it nears expiry.
        token = self.provider.access_token()
        return self.client.send_mail(
            access_token=token,
            sender=self.provider.sender,
            payload=message_payload(email),
        )


class GraphMailProvider(NotificationToolProvider):
    key = "microsoft_azure_mail"
    name = _("Microsoft Azure Mail")
    description = _(
        "Email through Microsoft Graph with an Entra ID app (client credentials)."
    )
    form_class = GraphMailForm
    secret_fields = ("client_secret", "private_key")
    test_steps = (
        ("tenant", _("Tenant found")),
        ("token", _("Token acquired for Microsoft Graph")),
        ("permission", _("Mail.Send application permission present")),
        ("send", _("Test email accepted")),
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
    def scopes(self) -> list[str]:
        return [f"{self.endpoints.graph_resource}/.default"]

    def credentials(self) -> identity.AppCredentials:
        return app_credentials(self.endpoints, self.config, self.secrets)

    def access_token(self) -> str:
        return identity.acquire_app_token(
            self.credentials(), self.scopes, store=self.token_store
        )

    def open(self) -> Connection:
        return GraphConnection(self)

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

    def step_send(self, context):
        with self.open() as connection:
            return connection.send(self.test_email(context["recipients"]))
