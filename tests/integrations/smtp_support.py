"""Shared set-up for the SMTP tool's tests: drawer data, an admin, the sandbox sign-in."""

from django.urls import reverse

from integrations.models import Integration, IntegrationState
from tests.sandbox.m365 import sign_in

SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"


def drawer_data(sb, auth_type="oauth_app", **overrides) -> dict:
    """What an admin types into the SMTP drawer, for the seeded tenant."""
    seed = sb.seed
    data = {
        "cloud": "global",
        "smtp_host": "smtp.office365.com",
        "smtp_port": "587",
        "security": "starttls",
        "minimum_tls": "1.2",
        "sender": seed["sender"],
        "sender_name": "AppSec Alerts",
        "recipients": seed["recipient"],
        "auth_type": auth_type,
        "communication_type": "smtp",
        "username": "",
        "password": "",
        "tenant_id": seed["tenant_id"],
        "client_id": seed["client_id"],
        "client_secret": seed["client_secret"],
        "authorization_endpoint": "",
        "token_endpoint": "",
        "scope": SMTP_SCOPE,
        "test_email": "",
    }
    if auth_type == "basic":
        data.update(
            sender=seed["user"], username=seed["user"], password=seed["password"]
        )
    if auth_type == "oauth_delegated":
        data.update(sender=seed["user"], username=seed["user"])
    data.update(overrides)
    return data


def register_redirect_uri(ctl, redirect_uri: str) -> None:
    """Add a redirect URI to the seeded app (keeping the seeded ones)."""
    seed = ctl.sb.seed
    uris = list(dict.fromkeys([*seed["redirect_uris"], redirect_uri]))
    ctl.patch_app(seed["client_id"], redirect_uris=uris)


def start_authorization(client, data) -> str:
    """Click Save & Authorize; returns the sign-in URL the new tab is sent to."""
    response = client.post(reverse("integrations:authorize", args=["smtp"]), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    return response["Location"]


def authorize(client, http, sb, data, *, username=None, password=None, button="Accept"):
    """Save & Authorize, sign in on the sandbox page, follow the callback.

    Returns (callback response, the callback's query)."""
    auth_uri = start_authorization(client, data)
    params = sign_in(
        http,
        auth_uri,
        username or sb.seed["user"],
        password or sb.seed["password"],
        button=button,
    )
    return client.get(reverse("integrations:oauth_callback"), params), params


def smtp_row() -> Integration:
    return Integration.objects.get(provider="smtp")


def authorized_smtp_tool(client, http, sb, **overrides) -> Integration:
    """An SMTP tool authorized by a delegated sign-in as the seed's user, the way
    an admin's Save & Authorize leaves it: active, with its tokens."""
    response, _ = authorize(
        client, http, sb, drawer_data(sb, "oauth_delegated", **overrides)
    )
    assert response.status_code == 200, response.content.decode()[:2000]
    row = smtp_row()
    assert row.state == IntegrationState.ACTIVE, row.state
    assert row.secrets["refresh_token"] and row.secrets["access_token"]
    return row
