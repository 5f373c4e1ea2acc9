"""The OAuth callback (integration_authorize_complete) names what went wrong with the
authorization code in its own words: a code that does not belong to the sign-in
being completed is not an expired refresh token."""

import pytest
from django.test import Client
from django.urls import reverse

from integrations.models import AuditAction, AuditEntry, Integration, IntegrationState
from tests.integrations.smtp_support import (
    drawer_data,
    register_redirect_uri,
    start_authorization,
)
from tests.sandbox.m365 import Control, sign_in, trusted_session

CALLBACK = "http://testserver/integrations/oauth/callback/"

pytestmark = pytest.mark.django_db


@pytest.fixture
def http(sandbox):
    with trusted_session(sandbox.ca_path) as session:
        yield session


@pytest.fixture
def client_admin(django_user_model, sandbox, http, settings):
    settings.SITE_URL = "http://testserver"
    register_redirect_uri(Control(sandbox, http), CALLBACK)
    admin = django_user_model.objects.create_superuser(
        "secadmin", "secadmin@contoso.onmicrosoft.com", "irrelevant-pass-1"
    )
    client = Client()
    client.force_login(admin)
    return client


def signed_in(client, http, sandbox) -> dict:
    auth_uri = start_authorization(client, drawer_data(sandbox, "oauth_delegated"))
    return sign_in(http, auth_uri, sandbox.seed["user"], sandbox.seed["password"])


def test_a_code_from_another_sign_in_is_not_called_an_expired_refresh_token(
    sandbox, client_admin, http
):
    # Two Save & Authorize in a row: the first sign-in's code, with the state of the
    # second (the one still pending). The state is right; the code is not its own
    # (PKCE: AADSTS501481).
    first = signed_in(client_admin, http, sandbox)
    second = signed_in(client_admin, http, sandbox)

    response = client_admin.get(
        reverse("integrations:oauth_callback"),
        {**second, "code": first["code"]},
    )

    body = response.content.decode()
    assert response.status_code == 400, body
    assert "The sign-in’s authorization code was refused" in body
    assert "refresh token" not in body.lower()
    assert "Authorization expired or revoked" not in body
    assert "Nothing was changed" in body
    row = Integration.objects.get(provider="smtp")
    assert row.state == IntegrationState.AUTHORIZATION_PENDING
    assert "refresh_token" not in row.secrets
    entry = AuditEntry.objects.filter(action=AuditAction.AUTHORIZATION_FAILED).latest(
        "pk"
    )
    assert entry.error_code == "authorization_code_refused"


def test_a_code_used_twice_is_not_called_an_expired_refresh_token(
    sandbox, client_admin, http
):
    # The same code redeemed for a second flow's state: AADSTS54005 or 501481.
    params = signed_in(client_admin, http, sandbox)
    client_admin.get(reverse("integrations:oauth_callback"), params)
    again = signed_in(client_admin, http, sandbox)

    response = client_admin.get(
        reverse("integrations:oauth_callback"), {**again, "code": params["code"]}
    )

    body = response.content.decode()
    assert response.status_code == 400, body
    assert "The sign-in’s authorization code was refused" in body
    assert "refresh token" not in body.lower()
