"""Graph's sendMail on the worker's hot path (`M365Session.post_json`) against the
sandbox over TLS: the same trust, time limit, proxies and errors as requests' own
`post`, and the environment read once per host."""

import os
import socket

import pytest

from integrations.exceptions import ConnectionFailed, TlsError
from integrations.providers import http
from integrations.providers.graph import GraphClient, message_payload
from integrations.providers.identity import AppCredentials, acquire_app_token

from .test_graph import GRAPH_DEFAULT


def app_token(sandbox):
    seed = sandbox.seed
    return acquire_app_token(
        AppCredentials(
            authority_host=sandbox.authority_host,
            tenant=seed["tenant_id"],
            client_id=seed["client_id"],
            client_secret=seed["client_secret"],
        ),
        [GRAPH_DEFAULT],
    )


def send(sandbox, client, access_token, subject="Hot path"):
    from integrations.providers.base import OutgoingEmail

    seed = sandbox.seed
    email = OutgoingEmail(
        to=(seed["recipient"],),
        subject=subject,
        text="Details inside.",
        html="<p>Details &amp; more</p>",
        message_id=f"<{subject.replace(' ', '-')}@example.com>",
    )
    return client.send_mail(
        access_token=access_token,
        sender=seed["sender"],
        payload=message_payload(email),
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_message_reaches_graph_with_its_body_and_request_id(sandbox):
    client = GraphClient(sandbox.graph_host)
    request_id = send(sandbox, client, app_token(sandbox), subject="Body check")

    assert request_id
    (message,) = sandbox.messages(subject="Body check")
    assert message["message_id"] == "<Body-check@example.com>"
    assert (
        "Details & more" in message["html"] or "Details &amp; more" in message["html"]
    )


def test_the_sandbox_ca_is_trusted_although_requests_ca_bundle_is_set(sandbox):
    # tests/conftest.py sets REQUESTS_CA_BUNDLE to a bundle without the sandbox CA;
    # requests would let it override a session's `verify`.
    assert os.environ.get("REQUESTS_CA_BUNDLE")
    assert send(sandbox, GraphClient(sandbox.graph_host), app_token(sandbox))


def test_an_untrusted_certificate_is_a_tls_error(sandbox, settings):
    access_token = app_token(sandbox)
    settings.M365_CA_BUNDLE = ""

    with pytest.raises(TlsError):
        send(sandbox, GraphClient(sandbox.graph_host), access_token)
    assert not sandbox.messages(subject="Hot path")


def test_a_slow_graph_times_out_as_a_timeout(sandbox, ctl, settings):
    access_token = app_token(sandbox)
    settings.M365_HTTP_TIMEOUT = 0.5
    ctl("POST", "faults", {"target": "graph", "delay": 3})

    with pytest.raises(ConnectionFailed) as raised:
        send(sandbox, GraphClient(sandbox.graph_host), access_token)
    assert raised.value.code == "timeout"


def test_a_closed_port_is_a_refused_connection(sandbox):
    client = GraphClient(f"https://127.0.0.1:{closed_port()}")

    with pytest.raises(ConnectionFailed) as raised:
        send(sandbox, client, "token")
    assert raised.value.code == "connection_refused"


def test_https_proxy_is_used_and_no_proxy_honoured(sandbox, monkeypatch):
    access_token = app_token(sandbox)
    # A proxy nobody listens on: a request that goes through it fails.
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    with pytest.raises(ConnectionFailed):
        send(sandbox, GraphClient(sandbox.graph_host), access_token)

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    assert send(sandbox, GraphClient(sandbox.graph_host), access_token)


def test_the_environment_is_read_once_per_host_not_per_message(sandbox, monkeypatch):
    access_token = app_token(sandbox)
    reads = []
    real = http.get_environ_proxies
    monkeypatch.setattr(
        http,
        "get_environ_proxies",
        lambda url, no_proxy=None: reads.append(url) or real(url, no_proxy=no_proxy),
    )
    client = GraphClient(sandbox.graph_host)

    for i in range(5):
        send(sandbox, client, access_token, subject=f"Read once {i}")

    assert len(reads) == 1
    assert len(sandbox.messages(subject="Read once 3")) == 1
