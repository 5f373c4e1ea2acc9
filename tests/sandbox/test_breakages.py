"""Breaking things on purpose through the control API, and the sandbox clock.

Each breakage is driven with the real clients (msal, requests, smtplib, imaplib)
over TLS and answered with the error Microsoft answers for it.
"""

import base64
import datetime
import smtplib
import time
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from sandbox.state import iso
from tests.sandbox.m365 import (
    GRAPH_DEFAULT,
    GRAPH_MAIL_SEND,
    GRAPH_USER_READ,
    OUTLOOK_DEFAULT,
    SMTP_SEND,
    assert_aad_error,
    assert_graph_error,
    confidential_app,
    delegated_flow,
    jwt_claims,
    mail,
    open_sign_in,
    send_mail,
    smtp_login_xoauth2,
    smtp_reply,
    smtp_session,
)
from tests.sandbox.test_identity import self_signed_certificate
from tests.sandbox.test_imap import imap, refused, xoauth2

# msal suggests form_post; the sandbox supports both and the tests use msal's default.
pytestmark = pytest.mark.filterwarnings(
    "ignore:response_mode='form_post' is recommended:UserWarning"
)

DAY = 86400
AUTH_FAILED = "5.7.3 Authentication unsuccessful"


def token_for(sb, http, scope=GRAPH_DEFAULT, **kwargs):
    """An app-only token from a fresh msal application (msal caches tokens by
    the wall clock, which knows nothing of the sandbox clock)."""
    return confidential_app(sb, http, **kwargs).acquire_token_for_client([scope])


def app_only(sb, http, scope=GRAPH_DEFAULT, **kwargs):
    result = token_for(sb, http, scope, **kwargs)
    assert "access_token" in result, result
    return result["access_token"]


def send(sb, http, token, subject="Breakage test"):
    seed = sb.seed
    return send_mail(
        sb, http, token, seed["sender"], mail(subject=subject, to=[seed["recipient"]])
    )


def smtp_app_auth(sb, token, user=None):
    """(code, text) of an app-only XOAUTH2 sign-in as the seeded sender."""
    with smtp_session(sb) as client:
        try:
            code, text = smtp_login_xoauth2(client, user or sb.seed["sender"], token)
        except smtplib.SMTPAuthenticationError as exc:
            return smtp_reply(exc)
        return code, text.decode()


def app_path(seed, *rest):
    return "/".join(["tenants", seed["tenant_id"], "apps", seed["client_id"], *rest])


def later(seconds):
    return iso(time.time() + seconds)


def application(sb, http, token, app_id, select="passwordCredentials,keyCredentials"):
    return http.get(
        f"{sb.graph_host}/v1.0/applications(appId='{app_id}')",
        params={"$select": select} if select else None,
        headers={"Authorization": f"Bearer {token}"},
    )


# --- the sandbox clock ----------------------------------------------------------


def test_tokens_issued_after_the_clock_moved_are_accepted_everywhere(
    sb, http, ctl, seed
):
    ctl.advance_clock(3 * DAY)
    graph = app_only(sb, http)
    outlook = app_only(sb, http, OUTLOOK_DEFAULT)

    assert jwt_claims(graph)["iat"] > time.time() + 2 * DAY
    assert send(sb, http, graph).status_code == 202
    assert smtp_app_auth(sb, outlook)[0] == 235
    with imap(sb) as client:
        assert client.authenticate("XOAUTH2", xoauth2(seed["sender"], outlook))[0] == (
            "OK"
        )


def test_delegated_grant_refreshed_across_the_clock_keeps_working(sb, http, ctl):
    app, _, first = delegated_flow(sb, http, [GRAPH_USER_READ])
    ctl.advance_clock(60 * DAY)

    second = app.acquire_token_by_refresh_token(
        first["refresh_token"], [GRAPH_USER_READ]
    )

    assert "access_token" in second, second
    me = http.get(
        f"{sb.graph_host}/v1.0/me",
        headers={"Authorization": f"Bearer {second['access_token']}"},
    )
    assert me.status_code == 200, me.text
    ctl.advance_clock(91 * DAY)
    third = app.acquire_token_by_refresh_token(
        second["refresh_token"], [GRAPH_USER_READ]
    )
    assert_aad_error(third, 700082, "invalid_grant")


def test_a_token_issued_before_the_clock_moved_past_its_expiry_is_refused(
    sb, http, ctl
):
    token = app_only(sb, http)
    ctl.advance_clock(3601)

    assert_graph_error(send(sb, http, token), 401, "InvalidAuthenticationToken")


# --- secret expiry ---------------------------------------------------------------


def test_secret_expiry_can_be_moved_and_is_enforced_on_the_clock(sb, http, ctl, seed):
    secret_id = seed["client_secret_id"]
    changed = ctl(
        "PATCH", app_path(seed, "secrets", secret_id), json={"expires_at": later(DAY)}
    )
    assert changed["secret_id"] == secret_id
    assert "value" not in changed
    assert "access_token" in token_for(sb, http)

    ctl.advance_clock(2 * DAY)

    assert_aad_error(token_for(sb, http), 7000222, "invalid_client")
    ctl("PATCH", app_path(seed, "secrets", secret_id), json={"expires_at": None})
    assert "access_token" in token_for(sb, http)


def test_secret_patch_answers_clear_errors(sb, ctl, seed):
    unknown = ctl(
        "PATCH",
        app_path(seed, "secrets", str(uuid.uuid4())),
        json={"expires_at": later(DAY)},
        expect=(404,),
    )
    bad_date = ctl(
        "PATCH",
        app_path(seed, "secrets", seed["client_secret_id"]),
        json={"expires_at": "next tuesday"},
        expect=(400,),
    )
    missing = ctl(
        "PATCH",
        app_path(seed, "secrets", seed["client_secret_id"]),
        json={},
        expect=(400,),
    )

    assert unknown["error"]["code"] == "NotFound"
    assert "expires_at" in bad_date["error"]["message"]
    assert "expires_at" in missing["error"]["message"]


# --- certificate expiry ------------------------------------------------------------


def test_certificate_expiry_defaults_to_its_not_after(sb, ctl, seed):
    _, cert_pem, sha1 = self_signed_certificate()
    not_after = x509.load_pem_x509_certificate(cert_pem.encode()).not_valid_after_utc

    registered = ctl.add_certificate(seed["client_id"], cert_pem)

    assert registered["thumbprint"] == sha1.upper()
    assert registered["expires_at"] == registered["not_after"]
    assert registered["expires_at"].startswith(not_after.strftime("%Y-%m-%dT%H:%M:%S"))


def test_expired_certificate_is_aadsts700027_the_key_used_is_expired(
    sb, http, ctl, seed
):
    key_pem, cert_pem, sha1 = self_signed_certificate()
    ctl.add_certificate(seed["client_id"], cert_pem)
    credential = {"private_key": key_pem, "thumbprint": sha1}
    assert "access_token" in token_for(sb, http, credential=credential)
    changed = ctl(
        "PATCH",
        app_path(seed, "certificates", sha1),
        json={"expires_at": later(3600)},
    )
    assert changed["expires_at"] != changed["not_after"]

    ctl.advance_clock(2 * 3600)
    result = token_for(sb, http, credential=credential)

    assert_aad_error(result, 700027, "invalid_client")
    assert "[Reason - The key used is expired." in result["error_description"]
    assert sha1.upper() in result["error_description"]
    # null puts the certificate's own notAfter (30 days away) back.
    ctl("PATCH", app_path(seed, "certificates", sha1), json={"expires_at": None})
    assert "access_token" in token_for(sb, http, credential=credential)


def test_certificate_patch_of_an_unknown_thumbprint_is_404(sb, ctl, seed):
    answer = ctl(
        "PATCH",
        app_path(seed, "certificates", "AB" * 20),
        json={"expires_at": later(DAY)},
        expect=(404,),
    )

    assert "AB" * 20 in answer["error"]["message"]


def test_certificate_clock_advance_alone_does_not_break_assertions(sb, http, ctl, seed):
    key_pem, cert_pem, sha1 = self_signed_certificate()
    ctl.add_certificate(seed["client_id"], cert_pem)
    ctl.advance_clock(10 * DAY)

    result = token_for(
        sb, http, credential={"private_key": key_pem, "thumbprint": sha1}
    )

    assert "access_token" in result, result


# --- consent ------------------------------------------------------------------------


def test_revoked_consent_breaks_delegated_and_app_only_access(sb, http, ctl, seed):
    app, _, first = delegated_flow(sb, http, [SMTP_SEND])
    before = app_only(sb, http)

    revoked = ctl("POST", app_path(seed, "revoke_consent"))
    assert revoked["admin_consent"] is False

    refreshed = app.acquire_token_by_refresh_token(first["refresh_token"], [SMTP_SEND])
    assert_aad_error(refreshed, 65001, "invalid_grant")
    graph = app_only(sb, http)
    assert "roles" not in jwt_claims(graph)
    assert_graph_error(send(sb, http, graph), 403, "ErrorAccessDenied")
    code, text = smtp_app_auth(sb, app_only(sb, http, OUTLOOK_DEFAULT))
    assert (code, AUTH_FAILED in text) == (535, True)
    # A token issued before keeps its roles until it expires, as in Entra ID.
    assert send(sb, http, before).status_code == 202


# --- the user's account ---------------------------------------------------------


def test_password_change_revokes_refresh_tokens_with_aadsts50173(sb, http, ctl, seed):
    app, _, first = delegated_flow(sb, http, [SMTP_SEND])

    ctl.patch_user(seed["user"], password="New-Passw0rd!")
    result = app.acquire_token_by_refresh_token(first["refresh_token"], [SMTP_SEND])

    assert_aad_error(result, 50173, "invalid_grant")
    assert (
        "The user might have changed or reset their password."
        in (result["error_description"])
    )
    again = delegated_flow(sb, http, [SMTP_SEND], password="New-Passw0rd!")[2]
    assert "refresh_token" in again, again


def test_disabled_account_is_refused_at_sign_in_refresh_and_by_the_services(
    sb, http, ctl, seed
):
    app, _, first = delegated_flow(sb, http, [GRAPH_MAIL_SEND])
    outlook = delegated_flow(sb, http, [SMTP_SEND])[2]["access_token"]

    ctl.patch_user(seed["user"], account_enabled=False)

    refreshed = app.acquire_token_by_refresh_token(
        first["refresh_token"], [GRAPH_MAIL_SEND]
    )
    assert_aad_error(refreshed, 50057, "invalid_grant")
    assert "The user account is disabled." in refreshed["error_description"]
    answer = send_mail(
        sb, http, first["access_token"], None, mail(to=[seed["recipient"]])
    )
    assert_graph_error(answer, 401, "InvalidAuthenticationToken")
    with smtp_session(sb) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as error:
            smtp_login_xoauth2(client, seed["user"], outlook)
    assert smtp_reply(error.value)[0] == 535
    with imap(sb) as client:
        assert "LOGIN failed" in refused(
            lambda: client.login(seed["user"], seed["password"])
        )
    flow = confidential_app(sb, http).initiate_auth_code_flow(
        [SMTP_SEND], redirect_uri=seed["redirect_uris"][0]
    )
    page = open_sign_in(http, flow["auth_uri"])
    response = page.submit(http, "Accept", seed["user"], seed["password"])
    assert response.status_code == 200
    assert "AADSTS50057" in response.text
    assert "Location" not in response.headers
    # App-only access to the mailbox goes on, as for a shared mailbox.
    ctl.patch_user(seed["sender"], account_enabled=False)
    assert send(sb, http, app_only(sb, http)).status_code == 202


def test_mfa_required_refresh_is_aadsts50076_until_signed_in_again(sb, http, ctl, seed):
    app, _, first = delegated_flow(sb, http, [SMTP_SEND])

    ctl.patch_user(seed["user"], mfa_required=True)
    result = app.acquire_token_by_refresh_token(first["refresh_token"], [SMTP_SEND])

    assert_aad_error(result, 50076, "invalid_grant")
    assert "multi-factor authentication" in result["error_description"]
    assert "00000002-0000-0ff1-ce00-000000000000" in result["error_description"]
    app, _, again = delegated_flow(sb, http, [SMTP_SEND])
    refreshed = app.acquire_token_by_refresh_token(again["refresh_token"], [SMTP_SEND])
    assert "access_token" in refreshed, refreshed


def test_user_patch_refuses_a_flag_that_is_not_a_boolean(sb, ctl, seed):
    answer = ctl(
        "PATCH",
        f"tenants/{seed['tenant_id']}/users/{seed['user']}",
        json={"account_enabled": "no"},
        expect=(400,),
    )

    assert "account_enabled" in answer["error"]["message"]


# --- permissions ----------------------------------------------------------------------


def test_removed_application_permission_shows_on_the_next_token_only(
    sb, http, ctl, seed
):
    before = app_only(sb, http)
    outlook_before = app_only(sb, http, OUTLOOK_DEFAULT)

    ctl.patch_app(seed["client_id"], application_permissions=["IMAP.AccessAsApp"])

    assert send(sb, http, before).status_code == 202
    assert smtp_app_auth(sb, outlook_before)[0] == 235
    assert_graph_error(send(sb, http, app_only(sb, http)), 403, "ErrorAccessDenied")
    code, text = smtp_app_auth(sb, app_only(sb, http, OUTLOOK_DEFAULT))
    assert (code, AUTH_FAILED in text) == (535, True)


def test_removed_mailbox_permission_refuses_the_next_smtp_sign_in(sb, http, ctl, seed):
    token = app_only(sb, http, OUTLOOK_DEFAULT)

    ctl.patch_app(seed["client_id"], mailbox_permissions=[])

    code, text = smtp_app_auth(sb, token)
    assert (code, AUTH_FAILED in text) == (535, True)


# --- Graph: reading the app registration --------------------------------------------


def test_reading_the_registration_needs_application_read_all(sb, http, seed):
    answer = application(sb, http, app_only(sb, http), seed["client_id"])

    error = assert_graph_error(answer, 403, "Authorization_RequestDenied")
    assert error["message"] == "Insufficient privileges to complete the operation."


def test_registration_shows_secrets_and_certificates_as_graph_does(sb, http, ctl, seed):
    ctl.grant("Application.Read.All")
    ctl(
        "PATCH",
        app_path(seed, "secrets", seed["client_secret_id"]),
        json={"expires_at": "2030-01-02T03:04:05Z"},
    )
    _, cert_pem, sha1 = self_signed_certificate()
    registered = ctl.add_certificate(seed["client_id"], cert_pem)

    answer = application(sb, http, app_only(sb, http), seed["client_id"])

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["@odata.context"].endswith(
        "#applications(passwordCredentials,keyCredentials)/$entity"
    )
    assert set(body) == {"@odata.context", "passwordCredentials", "keyCredentials"}
    (secret,) = body["passwordCredentials"]
    assert secret == {
        "customKeyIdentifier": None,
        "displayName": "Sandbox secret",
        "endDateTime": "2030-01-02T03:04:05Z",
        "hint": seed["client_secret"][:3],
        "keyId": seed["client_secret_id"],
        "secretText": None,
        "startDateTime": secret["startDateTime"],
    }
    (key,) = body["keyCredentials"]
    assert base64.b64decode(key["customKeyIdentifier"]).hex() == sha1
    assert key["keyId"] == registered["key_id"]
    assert (key["type"], key["usage"]) == ("AsymmetricX509Cert", "Verify")
    assert key["displayName"] == "CN=sandbox-test-app"
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    assert base64.b64decode(key["key"]) == cert.public_bytes(Encoding.DER)
    end = datetime.datetime.fromisoformat(key["endDateTime"].replace("Z", "+00:00"))
    assert end == cert.not_valid_after_utc.replace(microsecond=0)


def test_registration_by_filter_and_with_owned_by_permission(sb, http, ctl, seed):
    ctl.grant("Application.ReadWrite.OwnedBy")
    other, _ = ctl.add_app(application_permissions=["Mail.Send"])
    token = app_only(sb, http)

    own = http.get(
        f"{sb.graph_host}/v1.0/applications",
        params={"$filter": f"appId eq '{seed['client_id']}'", "$select": "appId"},
        headers={"Authorization": f"Bearer {token}"},
    )
    others = application(sb, http, token, other)

    assert own.status_code == 200, own.text
    assert own.json()["value"] == [{"appId": seed["client_id"]}]
    assert_graph_error(others, 403, "Authorization_RequestDenied")


def test_unknown_registration_and_property_are_graph_errors(sb, http, ctl, seed):
    ctl.grant("Application.Read.All")
    token = app_only(sb, http)
    unknown = str(uuid.uuid4())

    missing = application(sb, http, token, unknown)
    bad_select = application(sb, http, token, seed["client_id"], select="secrets")

    error = assert_graph_error(missing, 404, "Request_ResourceNotFound")
    assert unknown in error["message"]
    assert_graph_error(bad_select, 400, "Request_BadRequest")


# --- documented in the seed -----------------------------------------------------------


def test_seed_documents_every_breakage_with_its_errors(sb, ctl):
    breakages = ctl("GET", "seed")["breakages"]

    names = {entry["name"] for entry in breakages}
    assert {
        "secret_expiry",
        "certificate_expiry",
        "revoke_consent",
        "change_password",
        "disable_account",
        "require_mfa",
        "remove_application_permission",
        "remove_mailbox_permission",
    } <= names
    for entry in breakages:
        assert entry["method"] in ("POST", "PATCH"), entry
        assert entry["path"].startswith("/_sandbox/"), entry
        assert entry["errors"] and entry["effect"], entry
