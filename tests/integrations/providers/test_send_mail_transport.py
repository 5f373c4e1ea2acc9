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
from integrations.providers.replies import ResentReply

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


# --- libcurl (integrations/providers/curl.py) ------------------------------------------


def test_a_reset_on_a_reused_connection_is_sent_again_once_and_said_so(sandbox):
    """libcurl sends a request again by itself when its reused keep-alive
    connection drops with no answer: the message goes, and the reply says it may
    have gone twice (here the sandbox reset before taking it: it arrives once)."""
    client, access_token = GraphClient(sandbox.graph_host), app_token(sandbox)
    first = send(sandbox, client, access_token, subject="Warm up")
    assert not getattr(first, "resent", False)
    sandbox.add_fault(target="graph", reset=True, count=1)

    reply = send(sandbox, client, access_token, subject="After reset")

    assert isinstance(reply, ResentReply) and reply.resent
    assert reply  # Graph's request id
    assert len(sandbox.messages(subject="After reset")) == 1


def test_a_reset_on_a_new_connection_or_twice_is_a_dropped_connection(sandbox):
    access_token = app_token(sandbox)
    sandbox.add_fault(target="graph", reset=True, count=1)

    # A new connection: nothing is sent again.
    with pytest.raises(ConnectionFailed) as fresh:
        send(sandbox, GraphClient(sandbox.graph_host), access_token)

    client = GraphClient(sandbox.graph_host)
    send(sandbox, client, access_token, subject="Warm up")
    sandbox.add_fault(target="graph", reset=True, count=2)
    with pytest.raises(ConnectionFailed) as twice:
        send(sandbox, client, access_token, subject="Reset twice")

    assert type(fresh.value) is ConnectionFailed and fresh.value.retryable
    assert type(twice.value) is ConnectionFailed and twice.value.retryable
    assert not sandbox.messages(subject="Hot path")
    assert not sandbox.messages(subject="Reset twice")
    # The handle that failed is not reused: the next message goes.
    assert send(sandbox, client, access_token, subject="Next one")


def test_one_connection_per_handle_is_kept_alive_across_messages(sandbox):
    client, access_token = GraphClient(sandbox.graph_host), app_token(sandbox)
    before = sandbox.counters()["tcp_connections"]["https"]

    for i in range(10):
        send(sandbox, client, access_token, subject=f"Keep alive {i}")

    assert sandbox.counters()["tcp_connections"]["https"] - before == 1
    assert len(sandbox.messages(subject="Keep alive 9")) == 1


@pytest.mark.parametrize(
    ("number", "message", "errno_", "code", "tls"),
    [
        (28, "Operation timed out after 500 milliseconds", 0, "timeout", False),
        (6, "Could not resolve host: graph.example", 0, "dns_failure", False),
        (7, "Failed to connect to 127.0.0.1 port 1", 111, "connection_refused", False),
        (7, "Failed to connect: No route to host", 113, "connection_failed", False),
        (60, "SSL certificate problem: unable to get issuer", 0, "tls_error", True),
        (
            35,
            "OpenSSL SSL_connect: Connection reset by peer",
            0,
            "connection_failed",
            False,
        ),
        (56, "Recv failure: Connection reset by peer", 104, "connection_failed", False),
        (52, "Empty reply from server", 0, "connection_failed", False),
    ],
)
def test_libcurl_errors_map_to_the_error_hierarchy(number, message, errno_, code, tls):
    import pycurl

    from integrations.providers.curl import error_from_curl

    error = error_from_curl(pycurl.error(number, message), errno_)

    assert error.code == code
    assert isinstance(error, TlsError) is tls
    assert error.retryable is not tls


@pytest.fixture
def connect_proxy():
    """An HTTP proxy on loopback that tunnels CONNECT requests, as corporate
    proxies do for HTTPS; records the targets it was asked for."""
    import select
    import socketserver
    import threading

    targets = []

    class Tunnel(socketserver.BaseRequestHandler):
        def handle(self):
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = self.request.recv(4096)
                if not chunk:
                    return
                head += chunk
            method, target = head.split(b" ", 2)[:2]
            if method != b"CONNECT":
                self.request.sendall(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
                return
            host, _, port = target.decode().rpartition(":")
            targets.append(target.decode())
            upstream = socket.create_connection((host, int(port)), timeout=10)
            self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            sockets = [self.request, upstream]
            try:
                while True:
                    readable, _, _ = select.select(sockets, [], [], 10)
                    if not readable:
                        return
                    for sock in readable:
                        data = sock.recv(65536)
                        if not data:
                            return
                        (upstream if sock is self.request else self.request).sendall(
                            data
                        )
            finally:
                upstream.close()

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Tunnel)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", targets
    server.shutdown()
    server.server_close()


def test_send_mail_goes_through_an_https_proxy_tunnel(
    sandbox, monkeypatch, connect_proxy
):
    access_token = app_token(sandbox)
    proxy, targets = connect_proxy
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    host_port = sandbox.graph_host.split("://", 1)[1]

    assert send(sandbox, GraphClient(sandbox.graph_host), access_token, "Proxied")

    assert targets == [host_port]
    assert len(sandbox.messages(subject="Proxied")) == 1


def test_looking_at_each_send_in_flight_polls_the_network_once(sandbox, monkeypatch):
    # A run checks its sends in flight one after the other (`done()`): one poll
    # of the thread's transfers answers for all of them, where one each made the
    # worker's busiest loop poll four times as often. The answers still come in.
    from integrations.providers import curl
    from integrations.providers.base import OutgoingEmail

    client, access_token = GraphClient(sandbox.graph_host), app_token(sandbox)
    seed = sandbox.seed
    pending = [
        client.send_mail_later(
            access_token=access_token,
            sender=seed["sender"],
            payload=message_payload(
                OutgoingEmail(
                    to=(seed["recipient"],),
                    subject=f"In flight {i}",
                    text="",
                    html="<p>In flight</p>",
                    message_id=f"<in-flight-{i}@example.com>",
                )
            ),
        )
        for i in range(4)
    ]
    polls = []
    real_progress = curl._Multi.progress

    def progress(multi):
        polls.append(multi)
        return real_progress(multi)

    monkeypatch.setattr(curl._Multi, "progress", progress)
    monkeypatch.setattr(curl, "POLL_GAP_SECONDS", 60.0)  # one look, however slow
    client.session.curl._multi().polled_at = 0.0  # this thread's: none just now

    looks = [reply.done() for reply in pending]

    assert len(polls) == 1, looks
    assert all(reply.result() for reply in pending)
    assert len(sandbox.messages(subject="In flight 3")) == 1
