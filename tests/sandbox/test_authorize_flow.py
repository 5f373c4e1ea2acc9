"""The authorization code flow: sign-in page, codes, PKCE, refresh tokens, via msal."""

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.sandbox.m365 import (
    GRAPH_AUDIENCE,
    GRAPH_MAIL_SEND,
    OUTLOOK_AUDIENCE,
    SMTP_SEND,
    FormParser,
    SignInPage,
    assert_aad_error,
    confidential_app,
    delegated_flow,
    jwt_claims,
    open_sign_in,
    redirect_params,
    sign_in,
    token_endpoint,
)

# msal suggests form_post; the sandbox supports both and the tests use msal's default.
pytestmark = pytest.mark.filterwarnings(
    "ignore:response_mode='form_post' is recommended:UserWarning"
)

EVIL_REDIRECT = "https://attacker.example/callback"


def auth_uri_query(auth_uri):
    return {k: v[0] for k, v in parse_qs(urlsplit(auth_uri).query).items()}


def initiate(sb, http, scopes=(SMTP_SEND,), app=None, **kwargs):
    app = app or confidential_app(sb, http)
    kwargs.setdefault("redirect_uri", sb.seed["redirect_uris"][0])
    return app, app.initiate_auth_code_flow(list(scopes), **kwargs)


# --- the sign-in page -----------------------------------------------------------


def test_sign_in_page_has_labelled_fields_buttons_and_permissions(sb, http):
    _, flow = initiate(sb, http)

    page = open_sign_in(http, flow["auth_uri"])

    assert page.username_field
    assert page.password_field
    assert page.button("Accept") is not None
    assert page.button("Cancel") is not None
    assert "SMTP.Send" in page.text


def test_authorize_endpoint_comes_from_discovery(sb, http, seed):
    _, flow = initiate(sb, http)

    assert flow["auth_uri"].startswith(
        f"{sb.base_url}/{seed['tenant_id']}/oauth2/v2.0/authorize?"
    )
    query = auth_uri_query(flow["auth_uri"])
    assert query["code_challenge_method"] == "S256"


def test_accept_redirects_to_redirect_uri_with_code_and_state(sb, http, seed):
    _, flow = initiate(sb, http)

    page = open_sign_in(http, flow["auth_uri"])
    location, params = redirect_params(
        page.submit(http, "Accept", seed["user"], seed["password"])
    )

    assert location.startswith(seed["redirect_uris"][0] + "?")
    assert params["state"] == flow["state"]
    assert params["code"]


def test_wrong_password_shows_the_page_again_with_aadsts50126(sb, http, seed):
    _, flow = initiate(sb, http)

    response = open_sign_in(http, flow["auth_uri"]).submit(
        http, "Accept", seed["user"], "not-the-password"
    )

    assert response.status_code == 200
    again = SignInPage(response)
    assert "AADSTS50126" in again.text
    assert again.button("Accept") is not None


def test_unknown_user_is_refused_on_the_page_with_aadsts50126(sb, http, seed):
    _, flow = initiate(sb, http)

    response = open_sign_in(http, flow["auth_uri"]).submit(
        http, "Accept", "mallory@contoso.onmicrosoft.com", seed["password"]
    )

    assert response.status_code == 200
    assert "AADSTS50126" in response.text


def test_cancel_redirects_with_access_denied_and_state(sb, http, seed):
    _, flow = initiate(sb, http)

    page = open_sign_in(http, flow["auth_uri"])
    location, params = redirect_params(page.submit(http, "Cancel"))

    assert location.startswith(seed["redirect_uris"][0])
    assert params["error"] == "access_denied"
    assert "AADSTS65004" in params["error_description"]
    assert params["state"] == flow["state"]
    assert "code" not in params


def test_form_post_response_mode_answers_with_an_auto_submitting_form(sb, http, seed):
    app, flow = initiate(sb, http, response_mode="form_post")

    response = open_sign_in(http, flow["auth_uri"]).submit(
        http, "Accept", seed["user"], seed["password"]
    )

    assert response.status_code == 200
    parser = FormParser()
    parser.feed(response.text)
    (form,) = parser.forms
    assert form["action"] == seed["redirect_uris"][0]
    assert form["method"] == "post"
    fields = {i["name"]: i.get("value", "") for i in form["inputs"] if i.get("name")}
    assert fields["state"] == flow["state"]
    assert "submit()" in response.text
    result = app.acquire_token_by_auth_code_flow(flow, fields)
    assert "access_token" in result, result


def test_prompt_none_answers_login_required_at_once(sb, http, seed):
    _, flow = initiate(sb, http, prompt="none")

    location, params = redirect_params(
        http.get(flow["auth_uri"], allow_redirects=False)
    )

    assert location.startswith(seed["redirect_uris"][0])
    assert params["error"] == "login_required"
    assert "AADSTS50058" in params["error_description"]
    assert params["state"] == flow["state"]


def test_invalid_scope_is_redirected_as_invalid_scope(sb, http):
    _, flow = initiate(sb, http, scopes=["https://graph.microsoft.com/No.Such.Scope"])

    _, params = redirect_params(http.get(flow["auth_uri"], allow_redirects=False))

    assert params["error"] == "invalid_scope"
    assert "AADSTS70011" in params["error_description"]
    assert params["state"] == flow["state"]


def test_unregistered_redirect_uri_is_an_error_page_never_a_redirect(sb, http):
    _, flow = initiate(sb, http, redirect_uri=EVIL_REDIRECT)

    response = http.get(flow["auth_uri"], allow_redirects=False)

    assert not 300 <= response.status_code < 400
    assert "Location" not in response.headers
    assert "AADSTS50011" in response.text


def test_app_lacking_delegated_permission_redirects_consent_required(sb, http, ctl):
    client_id, secret = ctl.add_app(
        delegated_permissions=["openid", "profile", "offline_access"],
        redirect_uris=[sb.seed["redirect_uris"][0]],
    )
    app = confidential_app(sb, http, client_id=client_id, credential=secret)
    _, flow = initiate(sb, http, app=app)

    response = http.get(flow["auth_uri"], allow_redirects=False)
    if response.status_code == 200:  # consent is checked after signing in
        response = SignInPage(response).submit(
            http, "Accept", sb.seed["user"], sb.seed["password"]
        )
    _, params = redirect_params(response)

    assert params["error"] == "consent_required"
    assert "AADSTS65001" in params["error_description"]
    assert params["state"] == flow["state"]


# --- tokens ---------------------------------------------------------------------


def test_smtp_send_flow_returns_delegated_tokens_as_msal_expects(sb, http, seed):
    app, flow, result = delegated_flow(sb, http, [SMTP_SEND])

    assert "access_token" in result, result
    claims = jwt_claims(result["access_token"])
    assert claims["aud"] == OUTLOOK_AUDIENCE
    assert "SMTP.Send" in claims["scp"].split()
    assert claims["upn"] == seed["user"]
    assert claims["preferred_username"] == seed["user"]
    assert claims["tid"] == seed["tenant_id"]
    assert claims["appid"] == seed["client_id"]
    assert "roles" not in claims
    id_claims = result["id_token_claims"]
    assert id_claims["preferred_username"] == seed["user"]
    assert id_claims["aud"] == seed["client_id"]
    assert id_claims["tid"] == seed["tenant_id"]
    assert id_claims["nonce"] == auth_uri_query(flow["auth_uri"])["nonce"]
    assert id_claims["oid"] == claims["oid"]
    assert id_claims["name"]
    assert result["refresh_token"]
    (account,) = app.get_accounts()
    assert account["username"] == seed["user"]
    assert account["home_account_id"] == f"{claims['oid']}.{seed['tenant_id']}"


def test_graph_mail_send_flow_returns_graph_audience_token(sb, http, seed):
    _, _, result = delegated_flow(sb, http, [GRAPH_MAIL_SEND])

    claims = jwt_claims(result["access_token"])
    assert claims["aud"] == GRAPH_AUDIENCE
    assert "Mail.Send" in claims["scp"].split()
    assert claims["upn"] == seed["user"]


def test_login_hint_and_prompt_are_accepted(sb, http, seed):
    _, _, result = delegated_flow(
        sb, http, [SMTP_SEND], login_hint=seed["user"], prompt="select_account"
    )

    assert "access_token" in result, result


def test_refresh_token_rotates_and_the_old_one_is_refused(sb, http):
    app, _, first = delegated_flow(sb, http, [SMTP_SEND])

    second = app.acquire_token_by_refresh_token(first["refresh_token"], [SMTP_SEND])

    assert "access_token" in second, second
    assert second["refresh_token"] != first["refresh_token"]
    assert "SMTP.Send" in jwt_claims(second["access_token"])["scp"].split()
    counters = sb.counters()
    assert counters["refresh_redemptions"] == 1
    assert counters["token_requests"]["authorization_code"] == 1
    assert counters["token_requests"]["refresh_token"] == 1

    replay = app.acquire_token_by_refresh_token(first["refresh_token"], [SMTP_SEND])
    assert_aad_error(replay, 70008, "invalid_grant")
    third = app.acquire_token_by_refresh_token(second["refresh_token"], [SMTP_SEND])
    assert "access_token" in third, third
    assert sb.counters()["refresh_redemptions"] == 2


def test_refresh_token_for_smtp_can_be_redeemed_for_graph_mail_send(sb, http):
    app, _, first = delegated_flow(sb, http, [SMTP_SEND])

    graph = app.acquire_token_by_refresh_token(
        first["refresh_token"], [GRAPH_MAIL_SEND]
    )

    assert "access_token" in graph, graph
    assert jwt_claims(graph["access_token"])["aud"] == GRAPH_AUDIENCE


def test_msal_silent_refresh_keeps_up_with_rotation(sb, http, seed):
    app, _, first = delegated_flow(sb, http, [SMTP_SEND])
    (account,) = app.get_accounts(username=seed["user"])

    cached = app.acquire_token_silent([SMTP_SEND], account=account)
    refreshed = [
        app.acquire_token_silent_with_error(
            [SMTP_SEND], account=account, force_refresh=True
        )
        for _ in range(2)
    ]

    assert cached["access_token"] == first["access_token"]
    for result in refreshed:
        assert "access_token" in result, result
    assert sb.counters()["refresh_redemptions"] == 2


def test_redirect_uri_other_than_the_codes_is_aadsts50011(sb, http, seed):
    app, flow = initiate(sb, http, redirect_uri=seed["redirect_uris"][0])
    params = sign_in(http, flow["auth_uri"], seed["user"], seed["password"])

    other = dict(flow, redirect_uri=seed["redirect_uris"][1])
    result = app.acquire_token_by_auth_code_flow(other, params)

    assert_aad_error(result, 50011, "invalid_request")


def test_unregistered_redirect_uri_at_token_is_aadsts50011(sb, http, seed):
    app, flow = initiate(sb, http)
    params = sign_in(http, flow["auth_uri"], seed["user"], seed["password"])

    result = app.acquire_token_by_auth_code_flow(
        dict(flow, redirect_uri=EVIL_REDIRECT), params
    )

    assert_aad_error(result, 50011, "invalid_request")


def test_redeemed_code_is_aadsts54005(sb, http, seed):
    app, flow = initiate(sb, http)
    params = sign_in(http, flow["auth_uri"], seed["user"], seed["password"])
    first = app.acquire_token_by_auth_code_flow(dict(flow), params)
    assert "access_token" in first, first

    again = confidential_app(sb, http).acquire_token_by_auth_code_flow(
        dict(flow), params
    )

    assert_aad_error(again, 54005, "invalid_grant")


def test_wrong_pkce_code_verifier_is_aadsts501481(sb, http, seed):
    app, flow = initiate(sb, http)
    params = sign_in(http, flow["auth_uri"], seed["user"], seed["password"])

    result = app.acquire_token_by_auth_code_flow(
        dict(flow, code_verifier="x" * 43 + flow["code_verifier"][43:]), params
    )

    assert_aad_error(result, 501481, "invalid_grant")


def test_code_older_than_ten_minutes_is_aadsts70008(sb, http, ctl, seed):
    app, flow = initiate(sb, http)
    params = sign_in(http, flow["auth_uri"], seed["user"], seed["password"])
    ctl.advance_clock(11 * 60)

    result = app.acquire_token_by_auth_code_flow(flow, params)

    assert_aad_error(result, 70008, "invalid_grant")


def test_unknown_refresh_token_is_aadsts70008(sb, http):
    result = confidential_app(sb, http).acquire_token_by_refresh_token(
        "0.AAAA-not-a-refresh-token", [SMTP_SEND]
    )

    assert_aad_error(result, 70008, "invalid_grant")


def test_refresh_token_unused_past_tenant_inactivity_is_aadsts700082(sb, http, ctl):
    ctl.patch_tenant(refresh_token_inactivity=3600)
    app, _, first = delegated_flow(sb, http, [SMTP_SEND])
    ctl.advance_clock(3601)

    result = app.acquire_token_by_refresh_token(first["refresh_token"], [SMTP_SEND])

    assert_aad_error(result, 700082, "invalid_grant")


def test_refresh_token_used_within_inactivity_keeps_working(sb, http, ctl):
    ctl.patch_tenant(refresh_token_inactivity=3600)
    app, _, first = delegated_flow(sb, http, [SMTP_SEND])
    ctl.advance_clock(3000)
    second = app.acquire_token_by_refresh_token(first["refresh_token"], [SMTP_SEND])
    ctl.advance_clock(3000)

    third = app.acquire_token_by_refresh_token(second["refresh_token"], [SMTP_SEND])

    assert "access_token" in third, third


def test_revoked_user_refresh_token_is_aadsts50173(sb, http, ctl, seed):
    app, _, first = delegated_flow(sb, http, [SMTP_SEND])
    ctl.revoke_user(seed["user"])

    result = app.acquire_token_by_refresh_token(first["refresh_token"], [SMTP_SEND])

    assert_aad_error(result, 50173, "invalid_grant")


def test_refresh_after_permission_removed_is_aadsts65001(sb, http, ctl, seed):
    app, _, first = delegated_flow(sb, http, [SMTP_SEND])
    ctl.patch_app(
        seed["client_id"],
        delegated_permissions=["openid", "profile", "offline_access", "User.Read"],
    )

    result = app.acquire_token_by_refresh_token(first["refresh_token"], [SMTP_SEND])

    assert_aad_error(result, 65001, "invalid_grant")


def other_app(sb, http, ctl):
    client_id, secret = ctl.add_app(
        delegated_permissions=["SMTP.Send", "openid", "profile", "offline_access"],
        redirect_uris=sb.seed["redirect_uris"],
    )
    return confidential_app(sb, http, client_id=client_id, credential=secret)


def test_code_issued_to_another_client_is_aadsts70000(sb, http, ctl, seed):
    app, flow = initiate(sb, http)
    params = sign_in(http, flow["auth_uri"], seed["user"], seed["password"])

    result = other_app(sb, http, ctl).acquire_token_by_auth_code_flow(flow, params)

    assert_aad_error(result, 70000, "invalid_grant")


def test_refresh_token_issued_to_another_client_is_aadsts70000(sb, http, ctl):
    _, _, first = delegated_flow(sb, http, [SMTP_SEND])

    result = other_app(sb, http, ctl).acquire_token_by_refresh_token(
        first["refresh_token"], [SMTP_SEND]
    )

    assert_aad_error(result, 70000, "invalid_grant")


def test_authorization_code_grant_by_raw_post_needs_a_credential(sb, http, seed):
    app, flow = initiate(sb, http)
    params = sign_in(http, flow["auth_uri"], seed["user"], seed["password"])

    response = http.post(
        token_endpoint(sb),
        data={
            "grant_type": "authorization_code",
            "client_id": seed["client_id"],
            "code": params["code"],
            "redirect_uri": flow["redirect_uri"],
            "code_verifier": flow["code_verifier"],
            "scope": " ".join(flow["scope"]),
        },
    )

    assert_aad_error(response.json(), 7000218, "invalid_client")
