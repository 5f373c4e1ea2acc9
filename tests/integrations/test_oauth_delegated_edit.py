"""Editing an authorized delegated SMTP tool (issue 15, items 1 and 6): a plain Save
keeps the grant for settings it does not depend on and refuses those it does; Save &
Authorize keeps the old settings and tokens working until the new sign-in completes,
and an abandoned or refused sign-in leaves the tool exactly as it was. Against the
sandbox over TLS."""

import datetime
import time

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from integrations.models import (
    AuditAction,
    AuditEntry,
    Integration,
    IntegrationState,
    OAuthAuthorization,
)
from integrations.providers.base import OutgoingEmail
from integrations.selectors import delegated_authorization
from integrations.services import provider_for
from tests.integrations.smtp_support import (
    authorize,
    authorized_smtp_tool,
    drawer_data,
    register_redirect_uri,
    smtp_row,
    start_authorization,
)
from tests.sandbox.m365 import Control, sign_in, trusted_session

CALLBACK = "http://testserver/integrations/oauth/callback/"
OTHER_CLIENT = "11111111-2222-4333-8444-555555555555"


@pytest.fixture
def http(sandbox):
    with trusted_session(sandbox.ca_path) as session:
        yield session


@pytest.fixture
def ctl(sandbox, http):
    return Control(sandbox, http)


@pytest.fixture
def admin(django_user_model):
    return django_user_model.objects.create_superuser(
        "secadmin", "secadmin@contoso.onmicrosoft.com", "irrelevant-pass-1"
    )


@pytest.fixture
def client_admin(admin, sandbox, ctl, settings):
    settings.SITE_URL = "http://testserver"
    register_redirect_uri(ctl, CALLBACK)
    client = Client()
    client.force_login(admin)
    return client


@pytest.fixture
def authorized(sandbox, client_admin, http) -> Integration:
    """An SMTP tool authorized by a delegated sign-in, as the seed's user."""
    return authorized_smtp_tool(client_admin, http, sandbox)


def snapshot(row: Integration) -> dict:
    """Everything a sign-in could change on the tool."""
    return {
        "state": row.state,
        "config": row.config,
        "secrets": row.secrets,
        "token_cache": row.token_cache,
        "attention": (row.attention_code, row.attention_detail),
    }


def send_one(to, subject="Delegated"):
    with provider_for(smtp_row()).open() as connection:
        return connection.send(OutgoingEmail(to=(to,), subject=subject, text="Body"))


def save(client, data):
    """Click Save (the plain one, shown for an authorized delegated tool)."""
    return client.post(reverse("integrations:save", args=["smtp"]), data)


# --- Save keeps the grant ------------------------------------------------------------


@pytest.mark.django_db
def test_save_of_settings_the_grant_does_not_depend_on_keeps_it_and_sends(
    sandbox, client_admin, authorized
):
    drawer = client_admin.get(reverse("integrations:tool", args=["smtp"]))
    assert "data-save-keeping-authorization" in drawer.content.decode()
    grant = dict(authorized.secrets)
    data = drawer_data(
        sandbox,
        "oauth_delegated",
        recipients="soc@contoso.onmicrosoft.com, " + sandbox.seed["recipient"],
        sender_name="Security bot",
        smtp_port="25",
        test_email=sandbox.seed["recipient"],
        messages_per_minute="20",
        allowed_recipient_domains="contoso.onmicrosoft.com",
        # Typed again as saved: not a change.
        client_secret=sandbox.seed["client_secret"],
    )

    response = save(client_admin, data)

    assert response.status_code == 302, response.content.decode()[:3000]
    row = smtp_row()
    assert row.state == IntegrationState.ACTIVE
    assert row.config["recipients"][0] == "soc@contoso.onmicrosoft.com"
    assert row.config["sender_name"] == "Security bot"
    assert row.config["messages_per_minute"] == 20
    for key in ("access_token", "refresh_token", "authorized_account", "authorized_at"):
        assert row.secrets[key] == grant[key], key
    entry = AuditEntry.objects.filter(provider="smtp").latest("pk")
    assert entry.action == AuditAction.CHANGED
    assert "To" in entry.changed_fields and "Sender name" in entry.changed_fields
    assert not {"Access token", "Refresh token"} & set(entry.changed_fields)

    send_one(sandbox.seed["recipient"])

    (message,) = sandbox.messages(to=sandbox.seed["recipient"])
    assert message["authenticated_as"]["user"] == sandbox.seed["user"]
    page = client_admin.get(reverse("integrations:notification_tools"))
    assert f"Authorized as {sandbox.seed['user']} on" in page.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "change, field_names",
    [
        ({"client_id": OTHER_CLIENT}, ["client_id"]),
        ({"tenant_id": "contoso.onmicrosoft.com"}, ["tenant_id"]),
        (
            {"client_secret": "Qq8~a-new-client-secret-value-0123456789"},
            ["client_secret"],
        ),
        (
            {"scope": "https://outlook.office.com/SMTP.Send offline_access"},
            ["scope"],
        ),
        (
            {
                "username": "bob@contoso.onmicrosoft.com",
                "sender": "bob@contoso.onmicrosoft.com",
            },
            ["username"],
        ),
        ({"communication_type": "api"}, ["communication_type"]),
        ({"email_box": "on"}, ["email_box"]),
        ({"auth_type": "basic", "password": "x-Passw0rd"}, ["auth_type"]),
    ],
    ids=[
        "client",
        "tenant",
        "secret",
        "scope",
        "username",
        "communication_type",
        "email_box",
        "auth_type",
    ],
)
def test_save_that_changes_a_setting_of_the_grant_is_refused_on_the_form(
    sandbox, client_admin, authorized, change, field_names
):
    before = snapshot(authorized)
    audits = AuditEntry.objects.count()
    data = {
        **drawer_data(sandbox, "oauth_delegated", sender_name="Changed too"),
        **change,
    }

    response = save(client_admin, data)

    body = response.content.decode()
    assert response.status_code == 400, body[:3000]
    assert "These changes need a new sign-in" in body
    assert "use Save &amp; Authorize to change it" in body
    assert body.count("use Save &amp; Authorize to change it") == len(field_names)
    assert snapshot(smtp_row()) == before
    assert AuditEntry.objects.count() == audits
    assert "Qq8~a-new-client-secret" not in body


@pytest.mark.django_db
def test_save_without_a_grant_to_keep_says_to_authorize(sandbox, client_admin):
    start_authorization(client_admin, drawer_data(sandbox, "oauth_delegated"))
    drawer = client_admin.get(reverse("integrations:tool", args=["smtp"]))
    assert "data-save-keeping-authorization" not in drawer.content.decode()
    before = snapshot(smtp_row())

    response = save(
        client_admin, drawer_data(sandbox, "oauth_delegated", sender_name="New")
    )

    assert response.status_code == 400
    assert "Not authorized yet" in response.content.decode()
    assert snapshot(smtp_row()) == before


# --- Save & Authorize keeps the old tokens until the new sign-in completes ------------


@pytest.mark.django_db
def test_save_and_authorize_applies_the_new_settings_only_at_the_callback(
    sandbox, client_admin, http, authorized
):
    before = snapshot(authorized)
    data = drawer_data(
        sandbox,
        "oauth_delegated",
        communication_type="api",
        recipients="soc@contoso.onmicrosoft.com",
    )

    auth_uri = start_authorization(client_admin, data)

    # Until the sign-in completes: the old settings and grant, still sending.
    assert snapshot(smtp_row()) == before
    send_one(sandbox.seed["recipient"], subject="Meanwhile")
    (meanwhile,) = sandbox.messages(to=sandbox.seed["recipient"])
    assert meanwhile["transport"] == "smtp"
    pending = OAuthAuthorization.objects.get(completed_at__isnull=True)
    assert pending.pending_settings["config"]["communication_type"] == "api"
    # The settings wait encrypted, with the secrets typed.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pending_settings FROM integrations_oauthauthorization WHERE id = %s",
            [pending.pk],
        )
        (raw,) = cursor.fetchone()
    assert sandbox.seed["client_secret"] not in raw and "api" not in raw

    params = sign_in(http, auth_uri, sandbox.seed["user"], sandbox.seed["password"])
    response = client_admin.get(reverse("integrations:oauth_callback"), params)

    assert response.status_code == 200, response.content.decode()
    row = smtp_row()
    assert row.state == IntegrationState.ACTIVE
    assert row.config["communication_type"] == "api"
    assert row.config["recipients"] == ["soc@contoso.onmicrosoft.com"]
    assert row.secrets["refresh_token"] != before["secrets"]["refresh_token"]
    assert row.secrets["client_secret"] == sandbox.seed["client_secret"]
    assert OAuthAuthorization.objects.get(pk=pending.pk).pending_settings == {}
    actions = list(
        AuditEntry.objects.filter(provider="smtp")
        .order_by("-pk")
        .values_list("action", "changed_fields")[:2]
    )
    assert actions[0][0] == AuditAction.AUTHORIZED
    assert actions[1][0] == AuditAction.CHANGED
    assert {"Communication type", "To"} <= set(actions[1][1])

    send_one(sandbox.seed["recipient"], subject="After")
    after = sandbox.messages(to=sandbox.seed["recipient"], subject="After")
    assert [m["transport"] for m in after] == ["graph"]


def _abandon(client_admin, http, sandbox, ctl, auth_uri):
    """Start a sign-in and never come back."""


def _cancel(client_admin, http, sandbox, ctl, auth_uri):
    params = sign_in(
        http, auth_uri, sandbox.seed["user"], sandbox.seed["password"], "Cancel"
    )
    return client_admin.get(reverse("integrations:oauth_callback"), params)


def _other_mailbox(client_admin, http, sandbox, ctl, auth_uri):
    ctl.add_user("bob@contoso.onmicrosoft.com", password="Bob-Passw0rd!")
    params = sign_in(http, auth_uri, "bob@contoso.onmicrosoft.com", "Bob-Passw0rd!")
    return client_admin.get(reverse("integrations:oauth_callback"), params)


def _too_late(client_admin, http, sandbox, ctl, auth_uri):
    params = sign_in(http, auth_uri, sandbox.seed["user"], sandbox.seed["password"])
    OAuthAuthorization.objects.update(
        created_at=timezone.now() - datetime.timedelta(days=1)
    )
    return client_admin.get(reverse("integrations:oauth_callback"), params)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "outcome", [_abandon, _cancel, _other_mailbox, _too_late], ids=lambda f: f.__name__
)
def test_abandoned_or_refused_sign_in_leaves_the_tool_as_it_was(
    sandbox, client_admin, http, ctl, authorized, outcome
):
    before = snapshot(authorized)
    # Another app registration the sandbox knows, with its own secret.
    client_id, secret = ctl.add_app(
        client_id=OTHER_CLIENT,
        redirect_uris=[CALLBACK],
        delegated_permissions=["SMTP.Send"],
    )
    data = drawer_data(
        sandbox,
        "oauth_delegated",
        client_id=client_id,
        client_secret=secret,
        recipients="soc@contoso.onmicrosoft.com",
    )
    auth_uri = start_authorization(client_admin, data)

    response = outcome(client_admin, http, sandbox, ctl, auth_uri)

    if response is not None:
        assert response.status_code == 400
        assert "Nothing was changed" in response.content.decode()
    assert snapshot(smtp_row()) == before
    assert not any(
        row.pending_settings
        for row in OAuthAuthorization.objects.exclude(completed_at__isnull=True)
    )
    send_one(sandbox.seed["recipient"])
    assert sandbox.messages(to=sandbox.seed["recipient"])
    drawer = client_admin.get(reverse("integrations:tool", args=["smtp"]))
    assert f"Authorized as {sandbox.seed['user']}" in drawer.content.decode()


@pytest.mark.django_db
def test_re_authorize_after_the_grant_was_revoked_keeps_the_state_until_signed_in(
    sandbox, client_admin, http, ctl, authorized
):
    from integrations.exceptions import AuthorizationRequired

    ctl.revoke_user(sandbox.seed["user"])
    row = smtp_row()
    row.secrets = {**row.secrets, "token_expires_at": time.time() - 10}
    row.save(update_fields=["secrets"])
    with pytest.raises(AuthorizationRequired):
        provider_for(smtp_row()).delegated_token()
    assert smtp_row().state == IntegrationState.NEEDS_REAUTHORIZATION

    auth_uri = start_authorization(
        client_admin, drawer_data(sandbox, "oauth_delegated")
    )

    assert smtp_row().state == IntegrationState.NEEDS_REAUTHORIZATION
    params = sign_in(http, auth_uri, sandbox.seed["user"], sandbox.seed["password"])
    client_admin.get(reverse("integrations:oauth_callback"), params)
    assert smtp_row().state == IntegrationState.ACTIVE
    send_one(sandbox.seed["recipient"])


# --- when the grant was given and refreshed ----------------------------------------------


@pytest.mark.django_db
def test_card_and_drawer_say_who_authorized_when_and_the_last_refresh(
    sandbox, client_admin, authorized
):
    info = delegated_authorization(smtp_row())
    assert info.account == sandbox.seed["user"]
    assert abs((timezone.now() - info.authorized_at).total_seconds()) < 60
    assert info.refreshed_at is None
    page = client_admin.get(reverse("integrations:notification_tools")).content.decode()
    assert "Token not refreshed since the sign-in" in page

    row = smtp_row()
    row.secrets = {**row.secrets, "token_expires_at": time.time() - 10}
    row.save(update_fields=["secrets"])
    send_one(sandbox.seed["recipient"])  # refreshes the access token

    refreshed = delegated_authorization(smtp_row()).refreshed_at
    assert abs((timezone.now() - refreshed).total_seconds()) < 60
    for url in (
        reverse("integrations:notification_tools"),
        reverse("integrations:tool", args=["smtp"]),
    ):
        body = client_admin.get(url).content.decode()
        assert f"Authorized as {sandbox.seed['user']} on" in body, url
        assert "Token last refreshed" in body, url
        assert refreshed.strftime("%Y-%m-%d") in body, url


@pytest.mark.django_db
def test_a_tool_authorized_before_keeps_showing_its_account(sandbox, authorized):
    row = smtp_row()
    row.secrets = {
        k: v
        for k, v in row.secrets.items()
        if k not in ("authorized_account", "authorized_at", "refreshed_at")
    }
    row.config = {
        **row.config,
        "authorized_account": sandbox.seed["user"],
        "authorized_at": "2026-01-02T03:04:05+00:00",
    }
    row.save()

    info = delegated_authorization(smtp_row())

    assert info.account == sandbox.seed["user"]
    assert info.authorized_at == datetime.datetime(
        2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC
    )


# --- the callback page tells the drawer's tab -----------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("popup", [True, False], ids=["popup", "tab"])
def test_callback_page_tells_the_opener_and_closes_only_a_popup(
    sandbox, client_admin, http, popup
):
    data = drawer_data(sandbox, "oauth_delegated")
    if popup:
        data["popup"] = "1"

    response, _ = authorize(client_admin, http, sandbox, data)

    body = response.content.decode()
    assert 'data-oauth-result="authorized"' in body
    assert 'data-provider="smtp"' in body
    assert ("data-popup" in body) == popup
    assert "js/oauth_round_trip.js" in body
    assert "You can close this tab" in body
    assert "<script>" not in body  # no inline script (Content Security Policy)
