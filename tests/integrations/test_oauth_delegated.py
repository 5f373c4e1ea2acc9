"""SMTP with delegated OAuth 2.0: Save & Authorize, the callback and its refusals,
refresh under a lock, and re-authorization; against the sandbox over TLS."""

import datetime
import logging
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from integrations.exceptions import AuthorizationRequired, ConfigurationError
from integrations.models import (
    AuditAction,
    AuditEntry,
    Integration,
    IntegrationState,
    OAuthAuthorization,
)
from integrations.providers import delegated, identity
from integrations.providers.base import OutgoingEmail
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


def send_one(integration, to, subject="Delegated"):
    with provider_for(integration).open() as connection:
        return connection.send(OutgoingEmail(to=(to,), subject=subject, text="Body"))


def expire_access_token(integration=None):
    row = integration or smtp_row()
    row.secrets = {**row.secrets, "token_expires_at": time.time() - 10}
    row.save(update_fields=["secrets"])
    return row


# --- the happy paths ---------------------------------------------------------------


@pytest.mark.django_db
def test_save_and_authorize_stores_the_grant_and_sends_over_smtp(
    sandbox, client_admin, http
):
    data = drawer_data(sandbox, "oauth_delegated")
    auth_uri = start_authorization(client_admin, data)

    assert smtp_row().state == IntegrationState.AUTHORIZATION_PENDING
    assert (
        "code_challenge=" in auth_uri and "state=" in auth_uri and "nonce=" in auth_uri
    )
    params = sign_in(http, auth_uri, sandbox.seed["user"], sandbox.seed["password"])
    response = client_admin.get(reverse("integrations:oauth_callback"), params)

    assert response.status_code == 200
    assert "SMTP Settings Authorized" in response.content.decode()
    row = smtp_row()
    assert row.state == IntegrationState.ACTIVE
    assert row.secrets["authorized_account"] == sandbox.seed["user"]
    assert row.secrets["authorized_at"] > time.time() - 60
    assert row.secrets["refreshed_at"] is None
    assert row.secrets["access_token"] and row.secrets["refresh_token"]
    assert row.secrets["token_expires_at"] > time.time() + 600
    assert AuditEntry.objects.filter(
        provider="smtp", action=AuditAction.AUTHORIZED
    ).exists()

    send_one(row, sandbox.seed["recipient"])

    (message,) = sandbox.messages(to=sandbox.seed["recipient"])
    assert message["transport"] == "smtp"
    assert message["authenticated_as"]["kind"] == "user"
    assert message["authenticated_as"]["user"] == sandbox.seed["user"]


@pytest.mark.django_db
def test_drawer_shows_authorized_and_test_passes(sandbox, client_admin, http):
    data = drawer_data(sandbox, "oauth_delegated", test_email=sandbox.seed["recipient"])
    authorize(client_admin, http, sandbox, data)

    drawer = client_admin.get(
        reverse("integrations:tool", args=["smtp"])
    ).content.decode()
    assert f"Authorized as {sandbox.seed['user']}" in drawer
    assert "Save &amp; Authorize" in drawer
    assert "http://testserver/integrations/oauth/callback/" in drawer  # Redirect URL

    result = client_admin.post(
        reverse("integrations:test", args=["smtp"]),
        {**data, "client_secret": ""},
        headers={"X-Requested-With": "fetch"},
    )
    assert "Connection successful" in result.content.decode(), result.content.decode()
    assert sandbox.messages(to=sandbox.seed["recipient"])


@pytest.mark.django_db
def test_api_communication_type_sends_through_graph_me(sandbox, client_admin, http):
    data = drawer_data(sandbox, "oauth_delegated", communication_type="api")
    response, _ = authorize(client_admin, http, sandbox, data)
    assert response.status_code == 200, response.content.decode()

    send_one(smtp_row(), sandbox.seed["recipient"], subject="Via Graph")

    (message,) = sandbox.messages(to=sandbox.seed["recipient"])
    assert message["transport"] == "graph"
    assert message["subject"] == "Via Graph"


@pytest.mark.django_db
def test_api_communication_type_sends_with_the_sender_name(
    sandbox, client_admin, http, monkeypatch
):
    from integrations.providers.graph import graph_client

    data = drawer_data(
        sandbox,
        "oauth_delegated",
        communication_type="api",
        sender_name="AppSec Alerts",
    )
    authorize(client_admin, http, sandbox, data)
    # A spy: the request still goes to the sandbox, which keeps only the address.
    session = graph_client(sandbox.graph_host).session
    bodies, post_json_later = [], session.post_json_later
    monkeypatch.setattr(
        session,
        "post_json_later",
        lambda url, payload, **kw: (
            bodies.append(payload) or post_json_later(url, payload, **kw)
        ),
    )

    send_one(smtp_row(), sandbox.seed["recipient"], subject="Named")

    (body,) = bodies
    assert body["message"]["from"] == {
        "emailAddress": {"name": "AppSec Alerts", "address": sandbox.seed["user"]}
    }
    (message,) = sandbox.messages(to=sandbox.seed["recipient"])
    assert message["transport"] == "graph"
    assert message["from"] == sandbox.seed["user"]


def test_graph_payload_has_a_from_only_with_a_sender_name():
    from integrations.providers.graph import message_payload

    email = OutgoingEmail(to=("a@example.com",), subject="s", text="t")

    assert "from" not in message_payload(email, sender="n@example.com")["message"]
    assert message_payload(email, sender="n@example.com", sender_name="Alerts")[
        "message"
    ]["from"] == {"emailAddress": {"name": "Alerts", "address": "n@example.com"}}


@pytest.mark.django_db
def test_non_microsoft_server_with_explicit_endpoints(sandbox, client_admin, http):
    tenant = sandbox.seed["tenant_id"]
    data = drawer_data(
        sandbox,
        "oauth_delegated",
        tenant_id="",
        authorization_endpoint=f"{sandbox.base_url}/{tenant}/oauth2/v2.0/authorize",
        token_endpoint=f"{sandbox.base_url}/{tenant}/oauth2/v2.0/token",
    )
    response, _ = authorize(client_admin, http, sandbox, data)

    assert response.status_code == 200, response.content.decode()
    send_one(smtp_row(), sandbox.seed["recipient"])
    assert sandbox.messages(to=sandbox.seed["recipient"])


# --- the callback's refusals ----------------------------------------------------------


def assert_refused(response, words):
    body = response.content.decode()
    assert response.status_code == 400, body
    assert words in body, body
    assert "Nothing was changed" in body


@pytest.mark.django_db
def test_grant_for_another_mailbox_is_refused(sandbox, client_admin, http, ctl):
    ctl.add_user("bob@contoso.onmicrosoft.com", password="Bob-Passw0rd!")
    data = drawer_data(sandbox, "oauth_delegated")

    response, _ = authorize(
        client_admin,
        http,
        sandbox,
        data,
        username="bob@contoso.onmicrosoft.com",
        password="Bob-Passw0rd!",
    )

    assert_refused(response, "Signed in as another mailbox")
    assert "bob@contoso.onmicrosoft.com" in response.content.decode()
    row = smtp_row()
    assert row.state == IntegrationState.AUTHORIZATION_PENDING
    assert "refresh_token" not in row.secrets


@pytest.mark.django_db
def test_cancelled_sign_in_is_refused(sandbox, client_admin, http):
    response, params = authorize(
        client_admin,
        http,
        sandbox,
        drawer_data(sandbox, "oauth_delegated"),
        button="Cancel",
    )

    assert params["error"] == "access_denied"
    assert_refused(response, "Sign-in was cancelled or denied")
    assert "access_token" not in smtp_row().secrets


@pytest.mark.django_db
def test_consent_missing_is_refused(sandbox, client_admin, http, ctl):
    ctl.patch_app(sandbox.seed["client_id"], admin_consent=False)

    auth_uri = start_authorization(
        client_admin, drawer_data(sandbox, "oauth_delegated")
    )
    response = http.get(auth_uri, allow_redirects=False)
    if response.status_code == 200:  # the page asks first, then redirects
        params = sign_in(http, auth_uri, sandbox.seed["user"], sandbox.seed["password"])
    else:
        from tests.sandbox.m365 import redirect_params

        params = redirect_params(response)[1]
    callback = client_admin.get(reverse("integrations:oauth_callback"), params)

    assert params["error"] == "consent_required"
    assert_refused(callback, "Permission not granted")
    assert "access_token" not in smtp_row().secrets


@pytest.mark.django_db
def test_wrong_state_is_refused(sandbox, client_admin, http):
    auth_uri = start_authorization(
        client_admin, drawer_data(sandbox, "oauth_delegated")
    )
    params = sign_in(http, auth_uri, sandbox.seed["user"], sandbox.seed["password"])

    response = client_admin.get(
        reverse("integrations:oauth_callback"), {**params, "state": "forged-state"}
    )

    assert_refused(response, "No authorization is waiting for this sign-in")
    assert "access_token" not in smtp_row().secrets


@pytest.mark.django_db
def test_callback_without_a_pending_flow_is_refused(client_admin):
    response = client_admin.get(
        reverse("integrations:oauth_callback"), {"code": "abc", "state": "xyz"}
    )

    assert_refused(response, "No authorization is waiting for this sign-in")
    assert not Integration.objects.filter(provider="smtp").exists()


@pytest.mark.django_db
def test_replayed_callback_is_refused_and_changes_nothing(sandbox, client_admin, http):
    first, params = authorize(
        client_admin, http, sandbox, drawer_data(sandbox, "oauth_delegated")
    )
    assert first.status_code == 200
    secrets_before = dict(smtp_row().secrets)

    replay = client_admin.get(reverse("integrations:oauth_callback"), params)

    assert_refused(replay, "This sign-in response was already used")
    assert smtp_row().secrets == secrets_before
    assert smtp_row().state == IntegrationState.ACTIVE


@pytest.mark.django_db
def test_callback_in_another_session_is_refused(sandbox, client_admin, http, admin):
    auth_uri = start_authorization(
        client_admin, drawer_data(sandbox, "oauth_delegated")
    )
    params = sign_in(http, auth_uri, sandbox.seed["user"], sandbox.seed["password"])
    other = Client()
    other.force_login(admin)  # the same admin, another browser

    response = other.get(reverse("integrations:oauth_callback"), params)

    assert_refused(response, "The sign-in was started in another session")
    # The flow is still usable from the session that started it.
    assert (
        client_admin.get(reverse("integrations:oauth_callback"), params).status_code
        == 200
    )


@pytest.mark.django_db
def test_a_newer_save_and_authorize_supersedes_the_older_flow(
    sandbox, client_admin, http
):
    data = drawer_data(sandbox, "oauth_delegated")
    older = start_authorization(client_admin, data)
    start_authorization(client_admin, data)
    params = sign_in(http, older, sandbox.seed["user"], sandbox.seed["password"])

    response = client_admin.get(reverse("integrations:oauth_callback"), params)

    assert_refused(response, "already used")


@pytest.mark.django_db
def test_expired_authorization_flow_is_refused_and_changes_nothing(
    sandbox, client_admin, http, settings
):
    settings.OAUTH_AUTHORIZATION_TIMEOUT = 600
    auth_uri = start_authorization(
        client_admin, drawer_data(sandbox, "oauth_delegated")
    )
    params = sign_in(http, auth_uri, sandbox.seed["user"], sandbox.seed["password"])
    # The admin came back eleven minutes after clicking Save & Authorize.
    OAuthAuthorization.objects.update(
        created_at=timezone.now() - datetime.timedelta(seconds=660)
    )
    before = smtp_row()
    redeemed = sandbox.counters()["token_requests"]["authorization_code"]

    response = client_admin.get(reverse("integrations:oauth_callback"), params)

    assert_refused(response, "The sign-in took too long")
    assert "Start again with Save &amp; Authorize" in response.content.decode()
    row = smtp_row()
    assert row.state == IntegrationState.AUTHORIZATION_PENDING
    assert row.secrets == before.secrets and row.config == before.config
    assert "access_token" not in row.secrets
    # The code was never redeemed, and the flow cannot be tried again.
    assert sandbox.counters()["token_requests"]["authorization_code"] == redeemed
    assert AuditEntry.objects.filter(
        provider="smtp", action=AuditAction.AUTHORIZATION_FAILED
    ).latest("pk").error_code == ("authorization_expired")
    replay = client_admin.get(reverse("integrations:oauth_callback"), params)
    assert_refused(replay, "already used")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "error, words",
    [
        ("access_denied", "Sign-in was cancelled or denied"),
        ("access_denied\r\nINFO forged <b>entry</b>", "Authorization failed"),
    ],
)
def test_callback_error_text_is_logged_on_one_line_and_never_shown(
    sandbox, client_admin, caplog, error, words
):
    caplog.set_level(logging.DEBUG)
    auth_uri = start_authorization(
        client_admin, drawer_data(sandbox, "oauth_delegated")
    )
    state = parse_qs(urlsplit(auth_uri).query)["state"][0]
    description = (
        "AADSTS65004: declined.\r\n2025-01-01 00:00:00 ERROR integrations forged"
        "\n<script>alert('x')</script>\x1b[2J" + "padding " * 500
    )

    response = client_admin.get(
        reverse("integrations:oauth_callback"),
        {"error": error, "error_description": description, "state": state},
    )

    assert_refused(response, words)
    body = response.content.decode()
    for fragment in ("forged", "<script>", "&lt;script&gt;", "AADSTS65004", "padding"):
        assert fragment not in body
    logged = [r.getMessage() for r in caplog.records if "forged" in r.getMessage()]
    assert logged, [r.getMessage() for r in caplog.records]
    for message in logged:
        assert not any(c in message for c in "\r\n\x1b"), repr(message)
        assert len(message) < 400
    assert smtp_row().state == IntegrationState.AUTHORIZATION_PENDING


@pytest.mark.django_db
def test_username_must_be_the_from_address(sandbox, client_admin):
    data = drawer_data(
        sandbox, "oauth_delegated", username="someone@contoso.onmicrosoft.com"
    )

    response = client_admin.post(reverse("integrations:authorize", args=["smtp"]), data)

    assert response.status_code == 400
    assert "must be the From address" in response.content.decode()


# --- refresh and re-authorization ------------------------------------------------------


@pytest.mark.django_db
def test_expired_access_token_is_refreshed_and_the_rotated_token_saved(
    sandbox, client_admin, http
):
    authorize(client_admin, http, sandbox, drawer_data(sandbox, "oauth_delegated"))
    old_refresh = smtp_row().secrets["refresh_token"]
    expire_access_token()
    before = sandbox.counters()["refresh_redemptions"]

    send_one(smtp_row(), sandbox.seed["recipient"])

    assert sandbox.counters()["refresh_redemptions"] == before + 1
    row = smtp_row()
    assert row.secrets["refresh_token"] != old_refresh
    assert row.secrets["token_expires_at"] > time.time() + 600
    # The fresh token is reused: no second redemption.
    send_one(row, sandbox.seed["recipient"])
    assert sandbox.counters()["refresh_redemptions"] == before + 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "seconds_left, refreshed",
    [(identity.EXPIRY_MARGIN - 30, True), (identity.EXPIRY_MARGIN + 120, False)],
    ids=["within_the_margin", "beyond_the_margin"],
)
def test_token_close_to_expiry_is_refreshed_before_use(
    sandbox, client_admin, http, seconds_left, refreshed
):
    authorize(client_admin, http, sandbox, drawer_data(sandbox, "oauth_delegated"))
    row = smtp_row()
    row.secrets = {**row.secrets, "token_expires_at": time.time() + seconds_left}
    row.save(update_fields=["secrets"])
    old = dict(row.secrets)
    before = sandbox.counters()["refresh_redemptions"]

    send_one(smtp_row(), sandbox.seed["recipient"])

    assert sandbox.counters()["refresh_redemptions"] == before + int(refreshed)
    new = smtp_row().secrets
    if refreshed:
        assert new["access_token"] != old["access_token"]
        assert new["refresh_token"] != old["refresh_token"]
        assert new["token_expires_at"] > time.time() + identity.EXPIRY_MARGIN
    else:
        assert new == old
    assert sandbox.messages(to=sandbox.seed["recipient"])


@pytest.mark.django_db
def test_refresh_answered_aadsts70008_needs_reauthorization(
    sandbox, client_admin, http, caplog
):
    authorize(client_admin, http, sandbox, drawer_data(sandbox, "oauth_delegated"))
    redeemed = smtp_row().secrets["refresh_token"]
    expire_access_token()
    send_one(smtp_row(), sandbox.seed["recipient"])  # rotates: `redeemed` is used up
    row = smtp_row()
    row.secrets = {
        **row.secrets,
        "refresh_token": redeemed,
        "token_expires_at": time.time() - 10,
    }
    row.save(update_fields=["secrets"])

    with pytest.raises(AuthorizationRequired) as raised:
        send_one(smtp_row(), sandbox.seed["recipient"])

    assert raised.value.code == "reauthorization_required"
    assert "AADSTS70008" in raised.value.detail
    assert smtp_row().state == IntegrationState.NEEDS_REAUTHORIZATION
    page = client_admin.get(reverse("integrations:notification_tools")).content.decode()
    assert "Needs re-authorization" in page and "Re-authorize" in page


@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_redeem_the_refresh_token_once(
    sandbox, client_admin, http
):
    authorize(client_admin, http, sandbox, drawer_data(sandbox, "oauth_delegated"))
    expire_access_token()
    before = sandbox.counters()["refresh_redemptions"]
    barrier = threading.Barrier(2)
    tokens, errors = [], []

    def worker():
        from django.db import connection

        try:
            provider = provider_for(smtp_row())  # both read the expired token
            barrier.wait()
            tokens.append(provider.delegated_token())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert not errors, errors
    assert sandbox.counters()["refresh_redemptions"] == before + 1
    assert len(set(tokens)) == 1
    assert smtp_row().state == IntegrationState.ACTIVE


@pytest.mark.django_db
def test_revoked_grant_needs_reauthorization_and_card_offers_it(
    sandbox, client_admin, http, ctl
):
    authorize(client_admin, http, sandbox, drawer_data(sandbox, "oauth_delegated"))
    ctl.revoke_user(sandbox.seed["user"])
    expire_access_token()

    with pytest.raises(AuthorizationRequired) as raised:
        provider_for(smtp_row()).delegated_token()

    assert raised.value.code == "reauthorization_required"
    assert smtp_row().state == IntegrationState.NEEDS_REAUTHORIZATION
    page = client_admin.get(reverse("integrations:notification_tools")).content.decode()
    assert "Needs re-authorization" in page
    assert "Re-authorize" in page
    drawer = client_admin.get(
        reverse("integrations:tool", args=["smtp"])
    ).content.decode()
    assert "Needs re-authorization" in drawer
    assert "Re-authorize" in drawer

    # Re-authorizing brings it back.
    response, _ = authorize(
        client_admin, http, sandbox, drawer_data(sandbox, "oauth_delegated")
    )
    assert response.status_code == 200
    assert smtp_row().state == IntegrationState.ACTIVE
    send_one(smtp_row(), sandbox.seed["recipient"])


@pytest.mark.django_db
def test_refresh_token_expired_from_inactivity_needs_reauthorization(
    sandbox, client_admin, http, ctl
):
    ctl.patch_tenant(refresh_token_inactivity=60)
    authorize(client_admin, http, sandbox, drawer_data(sandbox, "oauth_delegated"))
    ctl.advance_clock(3600 * 3)
    expire_access_token()

    with pytest.raises(AuthorizationRequired):
        send_one(smtp_row(), sandbox.seed["recipient"])

    assert smtp_row().state == IntegrationState.NEEDS_REAUTHORIZATION


@pytest.mark.django_db
def test_test_before_authorizing_says_to_authorize(sandbox, client_admin):
    data = drawer_data(sandbox, "oauth_delegated")

    result = client_admin.post(
        reverse("integrations:test", args=["smtp"]),
        data,
        headers={"X-Requested-With": "fetch"},
    )

    assert "Not authorized yet" in result.content.decode()


# --- a grant belongs to the settings it was given for -------------------------------------


def authorized_row(sandbox, client_admin, http) -> Integration:
    return authorized_smtp_tool(client_admin, http, sandbox)


def cleaned(sandbox, auth_type, **overrides) -> dict:
    from integrations.forms.smtp import SmtpForm

    form = SmtpForm(
        drawer_data(sandbox, auth_type, **overrides),
        saved_secrets=set(smtp_row().secrets),
    )
    assert form.is_valid(), form.errors
    return form.cleaned_data


@pytest.mark.django_db
@pytest.mark.parametrize(
    "auth_type, change",
    [
        ("oauth_app", {}),
        ("basic", {}),
        ("oauth_delegated", {"client_id": "11111111-2222-4333-8444-555555555555"}),
        ("oauth_delegated", {"tenant_id": "contoso.onmicrosoft.com"}),
        (
            "oauth_delegated",
            {
                "username": "bob@contoso.onmicrosoft.com",
                "sender": "bob@contoso.onmicrosoft.com",
            },
        ),
    ],
    ids=["to_application", "to_basic", "client", "tenant", "username"],
)
def test_saving_other_grant_settings_drops_the_stored_tokens(
    sandbox, client_admin, http, admin, auth_type, change
):
    from integrations.services import integration_save

    authorized_row(sandbox, client_admin, http)

    row = integration_save(
        provider_key="smtp",
        cleaned_data=cleaned(sandbox, auth_type, **change),
        actor=admin,
    )

    row.refresh_from_db()
    assert not {"access_token", "refresh_token", "token_expires_at"} & set(row.secrets)
    assert row.secrets["client_secret"] == sandbox.seed["client_secret"]
    entry = AuditEntry.objects.filter(provider="smtp").latest("pk")
    assert {"Access token", "Refresh token"} <= set(entry.changed_fields)


@pytest.mark.django_db
def test_saving_unrelated_settings_keeps_the_grant(sandbox, client_admin, http, admin):
    from integrations.services import integration_save

    grant = dict(authorized_row(sandbox, client_admin, http).secrets)

    integration_save(
        provider_key="smtp",
        cleaned_data=cleaned(sandbox, "oauth_delegated", sender_name="Security bot"),
        actor=admin,
    )

    row = smtp_row()
    assert row.config["sender_name"] == "Security bot"
    assert row.secrets["refresh_token"] == grant["refresh_token"]
    send_one(row, sandbox.seed["recipient"])


@pytest.mark.django_db
def test_switching_to_basic_through_validate_and_save_clears_the_grant(
    sandbox, client_admin, http
):
    authorized_row(sandbox, client_admin, http)

    response = client_admin.post(
        reverse("integrations:validate", args=["smtp"]), drawer_data(sandbox, "basic")
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    row = smtp_row()
    assert row.config["auth_type"] == "basic"
    assert not {"access_token", "refresh_token", "token_expires_at"} & set(row.secrets)


@pytest.mark.django_db
def test_testing_another_client_does_not_use_or_spoil_the_saved_grant(
    sandbox, client_admin, http
):
    authorized_row(sandbox, client_admin, http)
    expire_access_token()
    before = sandbox.counters()["token_requests"]["refresh_token"]
    data = drawer_data(
        sandbox, "oauth_delegated", client_id="11111111-2222-4333-8444-555555555555"
    )

    result = client_admin.post(
        reverse("integrations:test", args=["smtp"]),
        data,
        headers={"X-Requested-With": "fetch"},
    )

    assert "Not authorized yet" in result.content.decode()
    assert sandbox.counters()["token_requests"]["refresh_token"] == before
    assert smtp_row().state == IntegrationState.ACTIVE
    send_one(smtp_row(), sandbox.seed["recipient"])  # the saved grant still works


# --- explicit endpoints must be https ---------------------------------------------------


def http_client(**kwargs) -> delegated.DelegatedClient:
    return delegated.DelegatedClient(
        client_id="appsec-notifier",
        client_secret="not-sent-anywhere",
        authorization_endpoint="http://idp.example.org/authorize",
        token_endpoint="http://idp.example.org/token",
        **kwargs,
    )


def test_plain_http_endpoints_saved_earlier_are_refused_before_any_request(settings):
    settings.OAUTH_ALLOW_INSECURE_ENDPOINTS = False

    with pytest.raises(ConfigurationError) as raised:
        delegated.refresh(http_client(), refresh_token="rt", scopes=["smtp.send"])

    assert raised.value.code == "oauth_endpoint_insecure"
    assert "https://" in str(raised.value.troubleshooting.title)
    with pytest.raises(ConfigurationError):
        delegated.start_flow(
            http_client(), scopes=["smtp.send"], redirect_uri=CALLBACK, login_hint=""
        )


def test_plain_http_endpoints_work_only_with_the_setting(settings):
    settings.OAUTH_ALLOW_INSECURE_ENDPOINTS = True

    flow = delegated.start_flow(
        http_client(), scopes=["smtp.send"], redirect_uri=CALLBACK, login_hint=""
    )

    assert flow["auth_uri"].startswith("http://idp.example.org/authorize?")
