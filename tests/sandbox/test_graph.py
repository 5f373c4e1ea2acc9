"""Microsoft Graph sendMail and /me with requests, and every Graph error by its code."""

import base64
import json
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.sandbox.m365 import (
    GRAPH_DEFAULT,
    GRAPH_MAIL_SEND,
    GRAPH_USER_READ,
    OUTLOOK_DEFAULT,
    addresses,
    app_token,
    assert_graph_error,
    delegated_flow,
    delegated_token,
    jwt_claims,
    mail,
    send_mail,
)

# msal suggests form_post; the sandbox supports both and the tests use msal's default.
pytestmark = pytest.mark.filterwarnings(
    "ignore:response_mode='form_post' is recommended:UserWarning"
)

ACCESS_DENIED = "Access is denied. Check credentials and try again."
ODATA_DISABLED = "Access to OData is disabled."


@pytest.fixture
def token(sb, http):
    return app_token(sb, http, GRAPH_DEFAULT)


# --- sending --------------------------------------------------------------------


def test_send_mail_as_user_principal_name_is_accepted_with_empty_202(
    sb, http, seed, token
):
    response = send_mail(sb, http, token, seed["sender"], mail(to=[seed["recipient"]]))

    assert response.status_code == 202, response.text
    assert response.content == b""
    assert response.headers["request-id"]
    assert response.headers["client-request-id"]


def test_send_mail_stores_one_message_per_recipient_with_its_fields(
    sb, http, seed, token
):
    body = mail(
        subject="Deployment finished",
        to=[seed["recipient"]],
        content="<p>All <b>green</b>.</p>",
        content_type="HTML",
        ccRecipients=addresses(seed["user"]),
        bccRecipients=addresses("auditor@example.com"),
        replyTo=addresses("noreply@contoso.onmicrosoft.com"),
        internetMessageId="<deploy-42@contoso.onmicrosoft.com>",
        internetMessageHeaders=[{"name": "X-Project", "value": "apollo"}],
    )

    response = send_mail(sb, http, token, seed["sender"], body)

    assert response.status_code == 202, response.text
    stored = sb.messages(subject="Deployment finished")
    assert sorted(m["recipient"] for m in stored) == sorted(
        [seed["recipient"], seed["user"], "auditor@example.com"]
    )
    message = next(m for m in stored if m["recipient"] == seed["recipient"])
    assert seed["sender"] in message["from"]
    assert message["to"] == [seed["recipient"]]
    assert message["cc"] == [seed["user"]]
    assert message["subject"] == "Deployment finished"
    assert message["html"] == "<p>All <b>green</b>.</p>"
    assert message["headers"]["X-Project"] == "apollo"
    assert message["message_id"].strip("<>") == "deploy-42@contoso.onmicrosoft.com"
    assert message["transport"] == "graph"
    assert message["authenticated_as"]["kind"] == "app"
    assert message["authenticated_as"]["client_id"] == seed["client_id"]
    assert message["received_at"][:4].isdigit() and "T" in message["received_at"]
    assert "auditor@example.com" not in str(message["headers"].get("Bcc", ""))


def test_text_body_is_stored_as_text(sb, http, seed, token):
    send_mail(
        sb,
        http,
        token,
        seed["sender"],
        mail(subject="plain", to=[seed["recipient"]], content="Just text."),
    )

    (message,) = sb.messages(subject="plain")
    assert message["text"].strip() == "Just text."
    assert not message["html"]


@pytest.mark.parametrize("save", [True, False, "true", "false"])
def test_save_to_sent_items_accepts_booleans_and_strings(sb, http, seed, token, save):
    body = mail(to=[seed["recipient"]], saveToSentItems=save)

    response = send_mail(sb, http, token, seed["sender"], body)

    assert response.status_code == 202, response.text


def test_send_mail_by_user_object_id(sb, http, seed, token):
    object_id = delegated_token_oid(sb, http)

    response = send_mail(
        sb, http, token, object_id, mail(subject="by oid", to=[seed["recipient"]])
    )

    assert response.status_code == 202, response.text
    (message,) = sb.messages(subject="by oid")
    assert seed["user"] in message["from"]


def delegated_token_oid(sb, http):
    return jwt_claims(delegated_token(sb, http, [GRAPH_MAIL_SEND]))["oid"]


def test_me_send_mail_with_delegated_token_sends_as_the_signed_in_user(sb, http, seed):
    token = delegated_token(sb, http, [GRAPH_MAIL_SEND])

    response = send_mail(
        sb, http, token, None, mail(subject="delegated", to=[seed["recipient"]])
    )

    assert response.status_code == 202, response.text
    (message,) = sb.messages(subject="delegated")
    assert seed["user"] in message["from"]
    assert message["authenticated_as"]["kind"] == "user"
    assert message["authenticated_as"]["user"] == seed["user"]


def test_me_returns_the_signed_in_user(sb, http, seed):
    token = delegated_token(sb, http, [GRAPH_USER_READ])

    response = http.get(
        f"{sb.graph_host}/v1.0/me", headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 200, response.text
    me = response.json()
    assert me["userPrincipalName"] == seed["user"]
    assert me["id"] == jwt_claims(token)["oid"]
    assert me["mail"] == seed["user"]
    assert me["displayName"]


def test_client_request_id_is_echoed(sb, http, seed, token):
    request_id = str(uuid.uuid4())

    response = send_mail(
        sb,
        http,
        token,
        seed["sender"],
        mail(to=[seed["recipient"]]),
        headers={"client-request-id": request_id},
    )

    assert response.headers["client-request-id"] == request_id


def test_delegated_user_may_send_as_an_address_granted_to_it(sb, http, ctl, seed):
    ctl.patch_user(seed["user"], send_as=[seed["recipient"]])
    token = delegated_token(sb, http, [GRAPH_MAIL_SEND])

    body = mail(
        subject="on behalf",
        to=[seed["sender"]],
        **{"from": addresses(seed["recipient"])[0]},
    )
    response = send_mail(sb, http, token, None, body)

    assert response.status_code == 202, response.text
    (message,) = sb.messages(subject="on behalf")
    assert seed["recipient"] in message["from"]


# --- errors, in the order Graph checks them -------------------------------------


def test_missing_token_is_401_invalid_authentication_token(sb, http, seed):
    response = send_mail(sb, http, None, seed["sender"], mail(to=[seed["recipient"]]))

    assert_graph_error(response, 401, "InvalidAuthenticationToken")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_malformed_token_is_401(sb, http, seed):
    response = send_mail(
        sb, http, "not-a-jwt", seed["sender"], mail(to=[seed["recipient"]])
    )

    assert_graph_error(response, 401, "InvalidAuthenticationToken")


def test_expired_token_is_401(sb, http, ctl, seed, token):
    ctl.advance_clock(24 * 3600)

    response = send_mail(sb, http, token, seed["sender"], mail(to=[seed["recipient"]]))

    assert_graph_error(response, 401, "InvalidAuthenticationToken")


def test_token_signed_by_another_key_is_401(sb, http, seed, token):
    header = jwt.get_unverified_header(token)
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(
        jwt_claims(token), forger, algorithm="RS256", headers={"kid": header["kid"]}
    )

    response = send_mail(sb, http, forged, seed["sender"], mail(to=[seed["recipient"]]))

    assert_graph_error(response, 401, "InvalidAuthenticationToken")


def test_token_with_altered_claims_is_401(sb, http, seed, token):
    head, _, signature = token.split(".")
    claims = dict(jwt_claims(token), roles=["Mail.Send", "Mail.ReadWrite"])
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")

    response = send_mail(
        sb,
        http,
        f"{head}.{body}.{signature}",
        seed["sender"],
        mail(to=[seed["recipient"]]),
    )

    assert_graph_error(response, 401, "InvalidAuthenticationToken")


def test_outlook_audience_token_is_401_at_graph(sb, http, seed):
    outlook = app_token(sb, http, OUTLOOK_DEFAULT)

    response = send_mail(
        sb, http, outlook, seed["sender"], mail(to=[seed["recipient"]])
    )

    assert_graph_error(response, 401, "InvalidAuthenticationToken")


def test_delegated_token_without_mail_send_is_403_access_denied(sb, http, seed):
    token = delegated_token(sb, http, [GRAPH_USER_READ])

    response = send_mail(sb, http, token, None, mail(to=[seed["recipient"]]))

    assert_graph_error(response, 403, "ErrorAccessDenied", ACCESS_DENIED)


def test_app_token_without_mail_send_role_is_403_access_denied(sb, http, ctl, seed):
    client_id, secret = ctl.add_app(application_permissions=["User.Read.All"])
    token = app_token(sb, http, GRAPH_DEFAULT, client_id=client_id, credential=secret)
    assert "Mail.Send" not in jwt_claims(token).get("roles", [])

    response = send_mail(sb, http, token, seed["sender"], mail(to=[seed["recipient"]]))

    assert_graph_error(response, 403, "ErrorAccessDenied", ACCESS_DENIED)


def test_app_without_admin_consent_is_403_access_denied(sb, http, ctl, seed):
    client_id, secret = ctl.add_app(
        application_permissions=["Mail.Send"], admin_consent=False
    )
    token = app_token(sb, http, GRAPH_DEFAULT, client_id=client_id, credential=secret)

    response = send_mail(sb, http, token, seed["sender"], mail(to=[seed["recipient"]]))

    assert_graph_error(response, 403, "ErrorAccessDenied", ACCESS_DENIED)


def test_sender_not_in_the_tenant_is_404_invalid_user(sb, http, seed, token):
    response = send_mail(
        sb, http, token, "ghost@contoso.onmicrosoft.com", mail(to=[seed["recipient"]])
    )

    assert_graph_error(response, 404, "ErrorInvalidUser")


def test_app_of_another_tenant_cannot_send_as_this_tenants_mailbox(sb, http, ctl, seed):
    other = ctl.add_tenant(domains=["fabrikam.onmicrosoft.com"])
    client_id, secret = ctl.add_app(tenant=other, application_permissions=["Mail.Send"])
    token = app_token(
        sb, http, GRAPH_DEFAULT, client_id=client_id, credential=secret, tenant=other
    )

    response = send_mail(sb, http, token, seed["sender"], mail(to=[seed["recipient"]]))

    assert_graph_error(response, 404, "ErrorInvalidUser")


def test_user_without_mailbox_is_404_mailbox_not_enabled(sb, http, ctl, seed, token):
    ctl.add_user("nomail@contoso.onmicrosoft.com", has_mailbox=False)

    response = send_mail(
        sb, http, token, "nomail@contoso.onmicrosoft.com", mail(to=[seed["recipient"]])
    )

    assert_graph_error(response, 404, "MailboxNotEnabledForRESTAPI")


def test_access_policy_excluding_the_mailbox_is_403_odata_disabled(sb, http, ctl, seed):
    client_id, secret = ctl.add_app(
        application_permissions=["Mail.Send"], access_policy=[seed["sender"]]
    )
    token = app_token(sb, http, GRAPH_DEFAULT, client_id=client_id, credential=secret)

    allowed = send_mail(sb, http, token, seed["sender"], mail(to=[seed["user"]]))
    refused = send_mail(sb, http, token, seed["recipient"], mail(to=[seed["user"]]))

    assert allowed.status_code == 202, allowed.text
    assert_graph_error(refused, 403, "ErrorAccessDenied", ODATA_DISABLED)


def test_delegated_user_sending_as_another_mailbox_is_403_send_as_denied(
    sb, http, seed
):
    token = delegated_token(sb, http, [GRAPH_MAIL_SEND])
    body = mail(to=[seed["recipient"]], **{"from": addresses(seed["sender"])[0]})

    response = send_mail(sb, http, token, None, body)

    assert_graph_error(response, 403, "ErrorSendAsDenied")
    assert sb.messages() == []


def test_unparseable_json_is_400_request_body_read(sb, http, seed, token):
    response = send_mail(sb, http, token, seed["sender"], b"{not json")

    assert_graph_error(response, 400, "RequestBodyRead")


def test_message_without_recipients_is_400_invalid_recipients(sb, http, seed, token):
    response = send_mail(sb, http, token, seed["sender"], mail(to=[]))

    assert_graph_error(response, 400, "ErrorInvalidRecipients")


def test_recipient_without_address_is_400(sb, http, seed, token):
    body = mail(to=[])
    body["message"]["toRecipients"] = [{"emailAddress": {"name": "No address"}}]

    response = send_mail(sb, http, token, seed["sender"], body)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] in {
        "ErrorInvalidRecipients",
        "ErrorInvalidParameter",
        "RequestBodyRead",
    }


@pytest.mark.parametrize(
    "body",
    [{}, {"message": "not an object"}, {"message": {"subject": "x", "body": 5}}],
    ids=["no-message", "message-not-object", "body-not-object"],
)
def test_malformed_send_mail_body_is_400(sb, http, seed, token, body):
    response = send_mail(sb, http, token, seed["sender"], body)

    assert response.status_code == 400, response.text
    error = assert_graph_error(response, 400, response.json()["error"]["code"])
    assert error["code"] in {
        "ErrorInvalidRecipients",
        "RequestBodyRead",
        "ErrorInvalidParameter",
    }
    assert sb.messages() == []


def test_internet_message_header_not_starting_x_is_400(sb, http, seed, token):
    body = mail(
        to=[seed["recipient"]],
        internetMessageHeaders=[{"name": "Priority", "value": "urgent"}],
    )

    response = send_mail(sb, http, token, seed["sender"], body)

    assert_graph_error(response, 400, "InvalidInternetMessageHeader")


def test_more_than_five_internet_message_headers_is_400(sb, http, seed, token):
    headers = [{"name": f"X-Header-{i}", "value": str(i)} for i in range(6)]
    body = mail(to=[seed["recipient"]], internetMessageHeaders=headers)

    response = send_mail(sb, http, token, seed["sender"], body)

    assert_graph_error(response, 400, "InvalidInternetMessageHeaderCollection")


def test_five_internet_message_headers_are_accepted(sb, http, seed, token):
    headers = [{"name": f"x-header-{i}", "value": str(i)} for i in range(5)]
    body = mail(subject="five", to=[seed["recipient"]], internetMessageHeaders=headers)

    response = send_mail(sb, http, token, seed["sender"], body)

    assert response.status_code == 202, response.text
    (message,) = sb.messages(subject="five")
    assert message["headers"]["x-header-4"] == "4"


def test_me_with_an_app_only_token_is_400_bad_request(sb, http, token):
    response = http.get(
        f"{sb.graph_host}/v1.0/me", headers={"Authorization": f"Bearer {token}"}
    )

    assert_graph_error(response, 400, "BadRequest")


def test_refused_requests_store_nothing(sb, http, seed):
    send_mail(sb, http, None, seed["sender"], mail(to=[seed["recipient"]]))

    assert sb.messages() == []


def test_graph_token_from_a_refresh_token_sends_mail(sb, http, seed):
    app, _, first = delegated_flow(sb, http, [GRAPH_MAIL_SEND])
    refreshed = app.acquire_token_by_refresh_token(
        first["refresh_token"], [GRAPH_MAIL_SEND]
    )

    response = send_mail(
        sb, http, refreshed["access_token"], None, mail(to=[seed["recipient"]])
    )

    assert response.status_code == 202, response.text
