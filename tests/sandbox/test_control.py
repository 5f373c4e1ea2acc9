"""The control API: seed, messages, inbox, reset, faults, throttling, counters."""

import concurrent.futures
import time
from uuid import uuid4

import msal
import pytest
import requests

from sandbox import Sandbox
from sandbox.server import ControlAPIError
from tests.sandbox.m365 import (
    GRAPH_DEFAULT,
    app_token,
    assert_aad_error,
    assert_graph_error,
    confidential_app,
    mail,
    send_mail,
    token_endpoint,
    trusted_session,
)

# The values a person pastes into the product's forms (sandbox/README.md).
SEEDED = {
    "tenant_id": "b5a0c1e2-3f47-4d8a-9c6b-2e1f0a9d8c7b",
    "domain": "contoso.onmicrosoft.com",
    "client_id": "4e9d2a71-8c3b-4f05-a6d2-91b7e0c3f58a",
    "client_secret": "Sbx8Q~sandbox.client-secret.value_0123456789",
    "client_secret_id": "0f6c3d2e-1b4a-4c5d-8e9f-a0b1c2d3e4f5",
    "sender": "notifications@contoso.onmicrosoft.com",
    "recipient": "security-team@contoso.onmicrosoft.com",
    "user": "alex@contoso.onmicrosoft.com",
    "password": "Sandbox-Passw0rd!",
}


@pytest.fixture
def token(sb, http):
    return app_token(sb, http, GRAPH_DEFAULT)


def send(sb, http, token, sender=None, subject="Control test", to=None):
    return send_mail(
        sb,
        http,
        token,
        sender or sb.seed["sender"],
        mail(subject=subject, to=to or [sb.seed["recipient"]]),
    )


# --- seed -----------------------------------------------------------------------


def test_seed_has_the_documented_fixed_values(sb, ctl):
    seed = ctl("GET", "seed")

    assert {k: seed[k] for k in SEEDED} == SEEDED
    assert seed["authority"] == f"{sb.base_url}/{SEEDED['tenant_id']}"
    assert seed["graph_url"].startswith(sb.base_url)
    assert seed["smtp_host"] == sb.smtp_host
    assert seed["smtp_port"] == sb.smtp_port
    assert seed["redirect_uris"] == [
        "http://127.0.0.1:8000/integrations/oauth/callback/",
        "http://localhost:8000/integrations/oauth/callback/",
    ]
    assert seed["ca_url"] == f"{sb.base_url}/_sandbox/ca.pem"
    assert sb.seed == seed


def test_python_handle_exposes_hosts_and_authority(sb):
    assert sb.base_url.startswith("https://127.0.0.1:")
    assert sb.authority_host == sb.base_url
    assert sb.graph_host == sb.base_url
    assert sb.authority == f"{sb.base_url}/{SEEDED['tenant_id']}"
    assert sb.smtp_host == "127.0.0.1"
    assert sb.ca_path.is_file()


def test_creating_answers_201_with_the_object(sb, http, seed):
    response = http.post(
        f"{sb.base_url}/_sandbox/tenants/{seed['tenant_id']}/users",
        json={"user_principal_name": "new@contoso.onmicrosoft.com"},
    )

    assert response.status_code == 201, response.text
    assert response.json()["user_principal_name"] == "new@contoso.onmicrosoft.com"


@pytest.mark.parametrize(
    "method, path, body, status",
    [
        ("POST", "tenants/{tenant}/users", {"user_principal_name": "{user}"}, 400),
        ("POST", "tenants/{tenant}/users", {"display_name": "no upn"}, 400),
        ("POST", "faults", {"target": "nowhere"}, 400),
        ("PATCH", "tenants/nobody.onmicrosoft.com", {"smtp_auth_disabled": True}, 404),
        ("PATCH", "tenants/{tenant}/apps/{random}", {"admin_consent": False}, 404),
        ("PATCH", "tenants/{tenant}/users/ghost@contoso.onmicrosoft.com", {}, 404),
    ],
    ids=["duplicate", "bad-body", "bad-fault", "no-tenant", "no-app", "no-user"],
)
def test_control_errors_have_a_code_and_message(
    sb, http, seed, method, path, body, status
):
    values = {"tenant": seed["tenant_id"], "user": seed["user"], "random": uuid4()}
    path = path.format(**values)
    body = {k: v.format(**values) if isinstance(v, str) else v for k, v in body.items()}

    response = http.request(method, f"{sb.base_url}/_sandbox/{path}", json=body)

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] and error["message"]


def test_python_control_raises_on_error_status(sb):
    with pytest.raises(ControlAPIError) as refused:
        sb.control("PATCH", "tenants/nobody.onmicrosoft.com", json={})

    assert refused.value.status == 404
    assert refused.value.body["error"]["code"]


def test_current_faults_and_throttling_can_be_read(sb, ctl):
    ctl.add_fault(target="graph", status=500, count=3)
    ctl.throttle(graph_requests_per_window=7)

    faults = ctl("GET", "faults")
    throttling = ctl("GET", "throttling")

    assert "500" in str(faults)
    assert throttling["enabled"] is True
    assert throttling["graph_requests_per_window"] == 7


@pytest.mark.parametrize(
    "body",
    [
        {"pipelining": "false"},  # a string, not false
        {"pipelining": 0},
        {"pipelining": None},
        {"chunking": True},  # not an extension the sandbox can withdraw
        ["pipelining"],
    ],
)
def test_smtp_offers_take_known_extensions_and_booleans_only(sb, ctl, body):
    ctl("PUT", "smtp", json=body, expect=(400,))

    # Nothing changed: PIPELINING is still offered.
    assert ctl("PUT", "smtp", json={}) == {"pipelining": True}


# --- messages and inbox ---------------------------------------------------------


def test_messages_filter_by_recipient_sender_and_subject_substring(
    sb, http, ctl, seed, token
):
    send(sb, http, token, subject="Alpha report", to=[seed["recipient"]])
    send(sb, http, token, subject="Beta report", to=[seed["user"]])
    send(sb, http, token, sender=seed["recipient"], subject="Gamma", to=[seed["user"]])

    assert [m["subject"] for m in ctl.messages(to=seed["recipient"])] == [
        "Alpha report"
    ]
    assert [m["subject"] for m in ctl.messages(**{"from": seed["recipient"]})] == [
        "Gamma"
    ]
    assert sorted(m["subject"] for m in ctl.messages(subject="report")) == [
        "Alpha report",
        "Beta report",
    ]
    assert [m["subject"] for m in sb.messages(to=seed["user"], subject="Beta")] == [
        "Beta report"
    ]
    assert [m["subject"] for m in sb.messages(sender=seed["recipient"])] == ["Gamma"]
    assert len(sb.messages()) == 3


def test_delete_messages_reports_how_many_were_deleted(sb, http, ctl, token):
    send(sb, http, token)
    send(sb, http, token)

    assert ctl("DELETE", "messages") == {"deleted": 2}
    assert ctl.messages() == []
    send(sb, http, token)
    sb.clear_messages()
    assert sb.messages() == []


def test_inbox_page_shows_messages_to_people(sb, http, token):
    send(sb, http, token, subject="Visible in the inbox")

    response = http.get(f"{sb.base_url}/_sandbox/inbox")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Visible in the inbox" in response.text
    assert sb.inbox_url == f"{sb.base_url}/_sandbox/inbox"


# --- reset ----------------------------------------------------------------------


def test_reset_returns_to_the_seeded_state(sb, http, ctl, seed, token):
    client_id, secret = ctl.add_app(application_permissions=["Mail.Send"])
    ctl.add_tenant(domains=["fabrikam.onmicrosoft.com"])
    ctl.add_user("temp@contoso.onmicrosoft.com")
    ctl.patch_tenant(smtp_auth_disabled=True)
    send(sb, http, token)
    ctl.add_fault(target="graph", status=503, count=5)
    ctl.throttle(graph_requests_per_window=1, window_seconds=60)

    ctl("POST", "reset")

    assert ctl.messages() == []
    counters = ctl.counters()
    assert counters["graph_requests"] == 0
    assert counters["token_requests"]["client_credentials"] == 0
    assert_aad_error(
        confidential_app(
            sb, http, client_id=client_id, credential=secret
        ).acquire_token_for_client([GRAPH_DEFAULT]),
        700016,
        "unauthorized_client",
    )
    assert (
        http.get(
            f"{sb.base_url}/fabrikam.onmicrosoft.com/v2.0/.well-known/openid-configuration"
        ).status_code
        == 400
    )
    fresh = app_token(sb, http, GRAPH_DEFAULT)
    for _ in range(3):  # no fault, no throttling left
        assert send(sb, http, fresh).status_code == 202


def test_reset_puts_the_clock_back(sb, http, ctl, token):
    ctl.advance_clock(24 * 3600)
    assert send(sb, http, token).status_code == 401

    sb.reset()

    assert send(sb, http, token).status_code == 202


# --- faults ---------------------------------------------------------------------


def test_graph_fault_answers_status_and_retry_after_once(sb, http, ctl, token):
    fault = ctl.add_fault(target="graph", status=503, retry_after="2.5")
    assert fault["id"]

    faulted = send(sb, http, token)
    after = send(sb, http, token)

    assert faulted.status_code == 503
    assert faulted.headers["Retry-After"] == "2.5"
    assert after.status_code == 202
    assert len(sb.messages()) == 1


def test_graph_fault_with_error_code_uses_graph_error_shape(sb, http, ctl, token):
    ctl.add_fault(
        target="graph", status=429, retry_after="1", error_code="TooManyRequests"
    )

    response = send(sb, http, token)

    assert_graph_error(response, 429, "TooManyRequests")
    assert response.headers["Retry-After"] == "1"


def test_graph_fault_with_count_applies_that_many_times(sb, http, ctl, token):
    ctl.add_fault(target="graph", status=500, count=2)

    statuses = [send(sb, http, token).status_code for _ in range(3)]

    assert statuses == [500, 500, 202]


def test_fault_with_probability_one_applies_until_removed(sb, http, ctl, token):
    ctl.add_fault(target="graph", status=502, probability=1.0)

    statuses = [send(sb, http, token).status_code for _ in range(3)]
    ctl("DELETE", "faults")

    assert statuses == [502, 502, 502]
    assert send(sb, http, token).status_code == 202


def test_delay_fault_slows_the_answer(sb, http, ctl, token):
    ctl.add_fault(target="graph", delay=0.6)

    started = time.monotonic()
    response = send(sb, http, token)

    assert time.monotonic() - started >= 0.6
    assert response.status_code == 202


def test_delay_fault_trips_a_client_timeout(sb, http, ctl, seed, token):
    ctl.add_fault(target="graph", delay=2)

    with pytest.raises(requests.exceptions.ReadTimeout):
        send_mail(
            sb, http, token, seed["sender"], mail(to=[seed["recipient"]]), timeout=0.5
        )


def test_drop_fault_closes_the_connection_without_answering(sb, http, ctl, token):
    ctl.add_fault(target="graph", drop=True)

    with pytest.raises(requests.exceptions.ConnectionError):
        send(sb, http, token)
    assert send(sb, http, token).status_code == 202


def test_accept_then_status_stores_the_message_then_answers_504(sb, http, ctl, token):
    ctl.add_fault(target="graph", accept_then_status=504)

    response = send(sb, http, token, subject="stored despite 504")

    assert response.status_code == 504
    assert [m["subject"] for m in sb.messages()] == ["stored despite 504"]


def test_token_fault_answers_status_and_retry_after(sb, http, ctl, seed):
    ctl.add_fault(target="token", status=503, retry_after="3")

    response = http.post(
        token_endpoint(sb),
        data={
            "grant_type": "client_credentials",
            "client_id": seed["client_id"],
            "client_secret": seed["client_secret"],
            "scope": GRAPH_DEFAULT,
        },
    )

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "3"
    assert "access_token" in confidential_app(sb, http).acquire_token_for_client(
        [GRAPH_DEFAULT]
    )


def test_token_fault_with_aadsts_code_has_the_error_shape(sb, http, ctl):
    ctl.add_fault(target="token", status=400, error_code=7000222)

    result = confidential_app(sb, http).acquire_token_for_client([GRAPH_DEFAULT])

    assert result["error_codes"] == [7000222], result
    assert result["error_description"].startswith("AADSTS7000222: ")


@pytest.mark.parametrize(
    "status, code", [(503, 90033), (429, 50196)], ids=["503", "429"]
)
def test_token_fault_without_error_code_has_a_matching_aadsts_body(
    sb, http, ctl, status, code
):
    ctl.add_fault(target="token", status=status)

    response = http.post(
        token_endpoint(sb),
        data={
            "grant_type": "client_credentials",
            "client_id": sb.seed["client_id"],
            "client_secret": sb.seed["client_secret"],
            "scope": GRAPH_DEFAULT,
        },
    )

    assert response.status_code == status
    assert_aad_error(response.json(), code, "temporarily_unavailable")


def test_python_add_fault_is_the_same_as_the_endpoint(sb, http, token):
    assert sb.add_fault(target="graph", status=500)["id"]

    assert send(sb, http, token).status_code == 500


def test_python_control_accepts_paths_with_or_without_prefix(sb, http, token):
    send(sb, http, token)

    assert sb.control("GET", "counters") == sb.counters()
    assert sb.control("GET", "/_sandbox/counters")["graph_send_mail"] == 1
    assert sb.control("GET", "messages")["messages"] == sb.messages()


def test_reset_fault_resets_the_connection_without_answering(sb, http, ctl, token):
    ctl.add_fault(target="graph", reset=True)

    # requests reports a reset as ConnectionError (its SSLError included: a reset
    # during TLS may surface as an SSL EOF).
    with pytest.raises(requests.exceptions.ConnectionError):
        send(sb, http, token)
    assert send(sb, http, token).status_code == 202
    assert [m["subject"] for m in sb.messages()] == ["Control test"]


def test_fault_with_count_and_probability_fires_at_most_count_times(
    sb, http, ctl, token
):
    ctl.add_fault(target="graph", status=503, probability=1.0, count=2)

    statuses = [send(sb, http, token).status_code for _ in range(4)]

    assert statuses == [503, 503, 202, 202]
    assert ctl.counters()["faults_fired"]["graph"] == 2


def test_a_drill_can_mix_graph_faults_by_probability(sb, ctl, token):
    ctl.add_fault(
        target="graph", status=429, retry_after="1", probability=0.2, count=1000
    )
    ctl.add_fault(target="graph", status=503, probability=0.2)
    ctl.add_fault(target="graph", accept_then_status=504, probability=0.1)
    ctl.add_fault(target="graph", drop=True, probability=0.05)

    statuses = []
    for _ in range(150):
        with trusted_session(sb.ca_path) as session:
            try:
                statuses.append(send(sb, session, token).status_code)
            except requests.exceptions.ConnectionError:
                statuses.append("dropped")

    counters = ctl.counters()
    assert set(statuses) <= {202, 429, 503, 504, "dropped"}
    assert {202, 429, 503} <= set(statuses)
    assert counters["faults_fired"]["graph"] == sum(s != 202 for s in statuses)
    assert counters["graph_send_mail"] == statuses.count(202)
    # Accepted then answered 504: stored, so a blind retry would send it twice.
    assert counters["graph_accepted"] == statuses.count(202) + statuses.count(504)
    assert len(sb.messages()) == counters["graph_accepted"]


@pytest.mark.parametrize(
    "fault",
    [
        {"target": "graph", "probability": 1.5},
        {"target": "graph", "probability": "often"},
        {"target": "graph", "count": -1},
        {"target": "graph", "count": 1.5},
        {"target": "graph", "status": "503"},
        {"target": "graph", "accept_then_status": 42},
        {"target": "graph", "graph_operation": "deleteMessage"},
        {"target": "smtp", "smtp_stage": "helo"},
    ],
    ids=[
        "probability-above-1",
        "probability-word",
        "negative-count",
        "fractional-count",
        "status-string",
        "status-out-of-range",
        "unknown-operation",
        "unknown-stage",
    ],
)
def test_malformed_faults_are_refused_with_400(sb, ctl, fault):
    body = ctl("POST", "faults", json=fault, expect=(400,))

    assert body["error"]["code"] == "BadRequest"
    assert ctl("GET", "faults")["faults"] == []


# --- throttling -----------------------------------------------------------------


def test_throttling_answers_429_with_fractional_retry_after(sb, http, ctl, token):
    ctl.throttle(graph_requests_per_window=3, window_seconds=1.0)

    statuses = [send(sb, http, token) for _ in range(4)]

    assert [r.status_code for r in statuses[:3]] == [202, 202, 202]
    throttled = statuses[3]
    assert_graph_error(throttled, 429, "ApplicationThrottled")
    retry_after = float(throttled.headers["Retry-After"])
    assert 0 < retry_after <= 1.0
    assert "." in throttled.headers["Retry-After"]
    time.sleep(retry_after + 0.05)
    assert send(sb, http, token).status_code == 202


def test_throttling_budget_is_per_mailbox(sb, http, ctl, seed, token):
    ctl.throttle(graph_requests_per_window=1, window_seconds=5.0)

    first = send(sb, http, token, sender=seed["sender"])
    other = send(sb, http, token, sender=seed["recipient"])
    again = send(sb, http, token, sender=seed["sender"])

    assert (first.status_code, other.status_code, again.status_code) == (202, 202, 429)


def test_concurrent_requests_beyond_the_mailbox_limit_are_429(sb, ctl, token):
    ctl.throttle(graph_concurrency_per_mailbox=1, graph_requests_per_window=100)
    ctl.add_fault(target="graph", delay=0.8, probability=1.0)

    def one(_):
        with trusted_session(sb.ca_path) as session:
            return send(sb, session, token)

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(one, range(3)))

    codes = sorted(r.status_code for r in responses)
    assert codes[0] == 202
    throttled = [r for r in responses if r.status_code == 429]
    assert throttled
    # Outlook's code for both of its limits; the message names the one hit.
    assert_graph_error(
        throttled[0],
        429,
        "ApplicationThrottled",
        "Application is over its MailboxConcurrency limit.",
    )
    assert throttled[0].headers["Retry-After"] == "1"


def test_throttling_budget_is_per_app_and_mailbox(sb, http, ctl, seed, token):
    ctl.throttle(graph_requests_per_window=1, window_seconds=30)
    client_id, secret = ctl.add_app(application_permissions=["Mail.Send"])
    other_app = app_token(
        sb, http, GRAPH_DEFAULT, client_id=client_id, credential=secret
    )

    first = send(sb, http, token)
    same_app_again = send(sb, http, token)
    other_app_same_mailbox = send(sb, http, other_app)

    assert first.status_code == 202
    assert_graph_error(same_app_again, 429, "ApplicationThrottled")
    assert other_app_same_mailbox.status_code == 202


def concurrent_sends(sb, tokens):
    """Send one message per token at the same time, each on its own connection."""

    def one(token):
        with trusted_session(sb.ca_path) as session:
            return send(sb, session, token)

    with concurrent.futures.ThreadPoolExecutor(len(tokens)) as pool:
        return list(pool.map(one, tokens))


def test_concurrency_limit_defaults_to_four_per_app_and_mailbox(sb, ctl, token):
    settings = ctl.throttle(graph_requests_per_window=100)
    ctl.add_fault(target="graph", delay=1.5, probability=1.0)

    responses = concurrent_sends(sb, [token] * 5)

    assert settings["graph_concurrency_per_mailbox"] == 4
    assert sorted(r.status_code for r in responses) == [202, 202, 202, 202, 429]
    counters = ctl.counters()
    assert counters["graph_throttled"] == counters["graph_throttled_concurrency"] == 1


def test_concurrency_limit_is_per_app(sb, http, ctl, token):
    ctl.throttle(graph_concurrency_per_mailbox=1, graph_requests_per_window=100)
    ctl.add_fault(target="graph", delay=1.0, probability=1.0)
    client_id, secret = ctl.add_app(application_permissions=["Mail.Send"])
    other_app = app_token(
        sb, http, GRAPH_DEFAULT, client_id=client_id, credential=secret
    )

    responses = concurrent_sends(sb, [token, other_app])

    assert [r.status_code for r in responses] == [202, 202]


def test_throttled_requests_are_counted_and_store_nothing(sb, http, ctl, token):
    ctl.throttle(graph_requests_per_window=2, window_seconds=30)

    statuses = [send(sb, http, token).status_code for _ in range(5)]

    counters = ctl.counters()
    assert statuses == [202, 202, 429, 429, 429]
    assert counters["graph_throttled"] == 3
    assert counters["graph_throttled_concurrency"] == 0
    assert counters["graph_requests"] == 5
    assert counters["graph_send_mail"] == counters["graph_accepted"] == 2
    assert len(sb.messages()) == 2


def test_throttling_off_by_default(sb, http, token):
    assert all(send(sb, http, token).status_code == 202 for _ in range(40))


# --- counters and clock ---------------------------------------------------------


def test_counters_count_requests_and_keep_alive_connections(sb, token):
    before = sb.counters()

    with trusted_session(sb.ca_path) as session:
        for _ in range(5):
            assert send(sb, session, token).status_code == 202
        after = session.get(f"{sb.base_url}/_sandbox/counters").json()

    assert after["tcp_connections"]["https"] - before["tcp_connections"]["https"] == 1
    assert after["graph_requests"] - before["graph_requests"] == 5
    assert after["graph_send_mail"] - before["graph_send_mail"] == 5


def test_counters_count_token_requests_by_grant(sb, http, ctl, token):
    counters = ctl.counters()

    assert counters["token_requests"] == {
        "client_credentials": 1,
        "authorization_code": 0,
        "refresh_token": 0,
    }
    assert counters["refresh_redemptions"] == 0
    assert sb.counters() == counters


def test_new_session_means_new_connection(sb, token):
    before = sb.counters()["tcp_connections"]["https"]

    for _ in range(3):
        with trusted_session(sb.ca_path) as session:
            send(sb, session, token)

    assert sb.counters()["tcp_connections"]["https"] - before >= 3


def test_delete_counters_zeroes_them(sb, http, ctl, token):
    send(sb, http, token)

    ctl("DELETE", "counters")

    counters = ctl.counters()
    assert counters["graph_requests"] == 0
    assert counters["graph_send_mail"] == 0
    assert counters["token_requests"]["client_credentials"] == 0


def test_tenant_access_token_lifetime_is_honoured_on_the_sandbox_clock(
    sb, http, ctl, seed
):
    ctl.patch_tenant(access_token_lifetime=600)
    result = confidential_app(sb, http).acquire_token_for_client([GRAPH_DEFAULT])
    assert 500 <= result["expires_in"] <= 600
    token = result["access_token"]

    ctl.advance_clock(300)
    still = send(sb, http, token)
    ctl.advance_clock(301)
    expired = send(sb, http, token)

    assert still.status_code == 202
    assert_graph_error(expired, 401, "InvalidAuthenticationToken")


# --- control switched off -------------------------------------------------------


def test_control_api_is_refused_when_off_but_ca_is_served(tmp_path):
    with Sandbox(state_dir=tmp_path, control=False) as sb:
        with trusted_session(sb.ca_path) as http:
            seed_response = http.get(f"{sb.base_url}/_sandbox/seed")
            fault_response = http.post(
                f"{sb.base_url}/_sandbox/faults", json={"target": "graph"}
            )
            reset_response = http.post(f"{sb.base_url}/_sandbox/reset")
            messages_response = http.get(f"{sb.base_url}/_sandbox/messages")
            inbox_response = http.get(f"{sb.base_url}/_sandbox/inbox")
            ca = http.get(f"{sb.base_url}/_sandbox/ca.pem")
            app = msal.ConfidentialClientApplication(
                SEEDED["client_id"],
                client_credential=SEEDED["client_secret"],
                authority=f"{sb.authority_host}/{SEEDED['tenant_id']}",
                instance_discovery=False,
                http_client=http,
            )
            token = app.acquire_token_for_client([GRAPH_DEFAULT])["access_token"]
            sent = send_mail(
                sb, http, token, SEEDED["sender"], mail(to=[SEEDED["recipient"]])
            )

    assert seed_response.status_code == 404
    assert fault_response.status_code == 404
    assert reset_response.status_code == 404
    assert messages_response.status_code == 404
    assert inbox_response.status_code == 404
    assert ca.status_code == 200
    assert ca.text.strip() == sb.ca_path.read_text().strip()
    assert sent.status_code == 202


# --- loopback callers only ---------------------------------------------------------------


@pytest.mark.parametrize(
    "remote, allowed",
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # an IPv4 caller of a dual-stack socket
        ("::ffff:192.0.2.10", False),
        ("192.0.2.10", False),
        ("10.0.0.5", False),
        ("0.0.0.0", False),
        ("fe80::1%eth0", False),
        ("", False),
        (None, False),
        ("localhost", False),
        ("127.0.0.1.evil.example", False),
    ],
)
def test_loopback_check(remote, allowed):
    from sandbox.control import _is_loopback

    assert _is_loopback(remote) is allowed


def fake_request(peer):
    """A control API request as it arrives from `peer` (a (host, port) or None)."""
    from types import SimpleNamespace
    from unittest import mock

    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from sandbox.keys import CTX

    app = web.Application()
    app[CTX] = SimpleNamespace(control=True, seed=lambda: {"tenant_id": "t"})
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        peer if name == "peername" else default
    )
    return make_mocked_request("GET", "/_sandbox/seed", app=app, transport=transport)


@pytest.mark.parametrize(
    "peer, status",
    [
        (("127.0.0.1", 50000), 200),
        (("::1", 50000, 0, 0), 200),
        (("192.0.2.10", 50000), 403),
        (("2001:db8::10", 50000, 0, 0), 403),
        (None, 403),
    ],
)
def test_control_handlers_answer_loopback_callers_only(peer, status):
    import asyncio
    import json

    from sandbox.control import seed_values

    # In a thread of its own: Playwright's sync API may own this thread's loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        response = pool.submit(
            lambda: asyncio.run(seed_values(fake_request(peer)))
        ).result()

    assert response.status == status
    if status == 403:
        assert json.loads(response.body)["error"]["code"] == "Forbidden"
