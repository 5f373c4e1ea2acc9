"""The outbound policy: which addresses a typed host may reach, one lookup per
connection, and Test Connection that answers in our words (never a peer's banner)."""

import os
import socket
import threading
import time

import pytest
from django.urls import reverse

from integrations.exceptions import AddressRefused, AuthenticationFailed, TlsError
from integrations.models import AuditAction, AuditEntry
from integrations.providers import identity, outbound
from integrations.providers.http import M365Session
from integrations.providers.smtp import SmtpProvider
from integrations.providers.smtp_client import SmtpSession, error_from_reply

BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"


@pytest.fixture
def policy(settings):
    """The policy as production has it: nothing private allowed, no M365_* hosts."""
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
    settings.OUTBOUND_ALLOWED_HOSTS = []
    settings.SMTP_ALLOWED_PORTS_EXTRA = []
    settings.M365_AUTHORITY_HOST = ""
    settings.M365_GRAPH_HOST = ""
    settings.M365_SMTP_HOST = ""
    settings.M365_SMTP_PORT = 0
    settings.TEST_CONNECTION_RATE_LIMIT = 1000
    return settings


# --- the policy over a table of addresses ----------------------------------------------


@pytest.mark.parametrize(
    "address, kind",
    [
        # public
        ("52.96.0.1", outbound.PUBLIC),
        ("2603:1036::1", outbound.PUBLIC),
        ("2002:3460:1::1", outbound.PUBLIC),  # 6to4 of 52.96.0.1
        # never: link-local, metadata, unspecified, multicast, reserved
        ("169.254.169.254", outbound.NEVER),
        ("169.254.0.1", outbound.NEVER),
        ("fe80::1", outbound.NEVER),
        ("fe80::1%2", outbound.NEVER),
        ("fd00:ec2::254", outbound.NEVER),
        ("100.100.100.200", outbound.NEVER),
        ("168.63.129.16", outbound.NEVER),
        ("0.0.0.0", outbound.NEVER),
        ("0.1.2.3", outbound.NEVER),
        ("::", outbound.NEVER),
        ("224.0.0.1", outbound.NEVER),
        ("239.255.255.250", outbound.NEVER),
        ("ff02::1", outbound.NEVER),
        ("255.255.255.255", outbound.NEVER),
        ("240.0.0.1", outbound.NEVER),
        ("::ffff:169.254.169.254", outbound.NEVER),  # IPv4-mapped
        ("64:ff9b::a9fe:a9fe", outbound.NEVER),  # NAT64 of 169.254.169.254
        ("2002:a9fe:a9fe::1", outbound.NEVER),  # 6to4 of 169.254.169.254
        ("::7f00:1", outbound.NEVER),  # IPv4-compatible (deprecated, reserved)
        # private: loopback, RFC 1918, ULA, CGNAT, documentation, benchmarking
        ("127.0.0.1", outbound.PRIVATE),
        ("127.8.9.10", outbound.PRIVATE),
        ("::1", outbound.PRIVATE),
        ("10.0.0.25", outbound.PRIVATE),
        ("172.16.5.4", outbound.PRIVATE),
        ("192.168.1.1", outbound.PRIVATE),
        ("100.64.0.1", outbound.PRIVATE),
        ("fd12:3456::1", outbound.PRIVATE),
        ("fc00::1", outbound.PRIVATE),
        ("fec0::1", outbound.PRIVATE),  # site-local (deprecated)
        ("192.0.2.10", outbound.PRIVATE),
        ("198.18.0.1", outbound.PRIVATE),
        ("2001:db8::25", outbound.PRIVATE),
        ("::ffff:127.0.0.1", outbound.PRIVATE),
        ("::ffff:10.1.2.3", outbound.PRIVATE),
        ("64:ff9b::a00:1", outbound.PRIVATE),  # NAT64 of 10.0.0.1
    ],
)
def test_classify(address, kind):
    assert outbound.classify(address) == kind


@pytest.mark.parametrize(
    "host, address, allow_private, allowed, expected",
    [
        ("mail.example.org", "52.96.0.1", False, [], None),
        ("mail.example.org", "10.0.0.25", False, [], "address_private"),
        ("mail.example.org", "10.0.0.25", True, [], None),
        ("mail.example.org", "::ffff:10.0.0.25", False, [], "address_private"),
        ("mail.example.org", "::ffff:10.0.0.25", True, [], None),
        ("mailrelay", "10.0.0.25", False, ["mailrelay"], None),
        ("MailRelay.", "10.0.0.25", False, ["mailrelay"], None),
        ("other", "10.0.0.25", False, ["mailrelay"], "address_private"),
        ("mailrelay", "10.0.0.25", False, ["10.0.0.0/24"], None),
        ("mailrelay", "10.0.1.25", False, ["10.0.0.0/24"], "address_private"),
        ("mailrelay", "::ffff:10.0.0.25", False, ["10.0.0.0/24"], None),
        ("relay6", "fd12::5", False, ["fd12::/16"], None),
        ("relay6", "fd13::5", False, ["fd12::/16"], "address_private"),
        ("localhost", "127.0.0.1", False, [], "address_private"),
        ("localhost", "127.0.0.1", False, ["127.0.0.1"], None),
        # Never allowed, whatever the settings say.
        ("metadata", "169.254.169.254", True, ["metadata"], "address_never_allowed"),
        ("metadata", "169.254.169.254", True, ["0.0.0.0/0"], "address_never_allowed"),
        ("md6", "fd00:ec2::254", True, ["::/0"], "address_never_allowed"),
        ("mc", "224.0.0.251", True, ["mc"], "address_never_allowed"),
        ("any", "0.0.0.0", True, ["any"], "address_never_allowed"),
        ("mapped", "::ffff:169.254.169.254", True, [], "address_never_allowed"),
    ],
)
def test_refusal(policy, host, address, allow_private, allowed, expected):
    policy.OUTBOUND_ALLOW_PRIVATE_NETWORKS = allow_private
    policy.OUTBOUND_ALLOWED_HOSTS = allowed

    assert outbound.refusal(host, address) == expected


@pytest.mark.parametrize(
    "setting, value, host",
    [
        ("M365_SMTP_HOST", "127.0.0.1", "127.0.0.1"),
        ("M365_SMTP_HOST", "smtp.sandbox.test", "SMTP.Sandbox.Test"),
        ("M365_AUTHORITY_HOST", "https://127.0.0.1:8365", "127.0.0.1"),
        ("M365_GRAPH_HOST", "https://graph.sandbox.test:8365/", "graph.sandbox.test"),
        # Trusted as the operator set it, even a link-local address.
        ("M365_SMTP_HOST", "169.254.10.10", "169.254.10.10"),
    ],
)
def test_hosts_the_operator_configured_are_trusted(policy, setting, value, host):
    address = host if host[0].isdigit() else "127.0.0.1"
    assert outbound.refusal(host, address) is not None

    setattr(policy, setting, value)

    assert outbound.refusal(host, address) is None


def test_smtp_ports(policy):
    assert outbound.allowed_smtp_ports() == {25, 465, 587, 2525}
    policy.SMTP_ALLOWED_PORTS_EXTRA = [1025]
    policy.M365_SMTP_PORT = 8587
    assert outbound.allowed_smtp_ports() == {25, 465, 587, 2525, 1025, 8587}


def test_a_name_is_refused_when_any_of_its_addresses_is(policy, monkeypatch):
    fake_dns(monkeypatch, {"mixed.example": [["52.96.0.1", "169.254.169.254"]]})

    with pytest.raises(AddressRefused) as refused:
        outbound.destination("mixed.example", 587)

    assert refused.value.code == "address_never_allowed"
    assert refused.value.address == "mixed.example:587"


# --- helpers: a listener, a stand-in for DNS ------------------------------------------


class Listener:
    """A TCP server on loopback that greets each connection with `banner` (or says
    nothing when None) and counts connections."""

    def __init__(self, banner: bytes | None, host="127.0.0.1", port=0):
        self.banner = banner
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.accepted += 1
            with conn:
                if self.banner is not None:
                    conn.sendall(self.banner)
                conn.settimeout(5)
                try:
                    # An SMTP greeting: "250" to every command until QUIT;
                    # otherwise wait for the client to hang up.
                    while data := conn.recv(1024):
                        if not self.banner or not self.banner.startswith(b"220"):
                            break
                        if data.upper().startswith(b"QUIT"):
                            conn.sendall(b"221 bye\r\n")
                            break
                        conn.sendall(b"250 ok\r\n")
                except OSError:
                    pass

    def close(self):
        self._stop.set()
        self._thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def listener():
    started = []

    def start(banner, **kwargs):
        started.append(Listener(banner, **kwargs))
        return started[-1]

    yield start
    for one in started:
        one.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_dns(monkeypatch, answers: dict[str, list[list[str]]]):
    """Stand in for DNS: each lookup of a name gets its next answer (the last one
    again when they run out). Returns the lookups made, by name."""
    real = socket.getaddrinfo
    lookups = {name: 0 for name in answers}

    def getaddrinfo(host, port, *args, **kwargs):
        name = str(host).lower()
        if name not in answers:
            return real(host, port, *args, **kwargs)
        sequence = answers[name]
        answer = sequence[min(lookups[name], len(sequence) - 1)]
        lookups[name] += 1
        return [
            (
                socket.AF_INET6 if ":" in ip else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (ip, int(port), 0, 0) if ":" in ip else (ip, int(port)),
            )
            for ip in answer
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


def wait_until(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# --- Test Connection through the real view --------------------------------------------


def drawer(host, port, **overrides):
    """An admin's SMTP drawer for a server outside Microsoft 365, no sign-in."""
    return {
        "cloud": "other",
        "smtp_host": host,
        "smtp_port": str(port),
        "security": "starttls",
        "minimum_tls": "1.2",
        "sender": "alerts@contoso.com",
        "sender_name": "AppSec Alerts",
        "recipients": "security@contoso.com",
        "auth_type": "none",
        "communication_type": "smtp",
        **overrides,
    }


def run_test_connection(client, security_admin, data, *, partial=False):
    """Click Test Connection; `partial`: as the drawer's script does (the result
    only)."""
    client.force_login(security_admin)
    headers = {"X-Requested-With": "fetch"} if partial else {}
    return client.post(
        reverse("integrations:test", args=["smtp"]), data, headers=headers
    )


NO_ANSWER = "did not answer as an SMTP server"


def test_a_banner_is_answered_in_our_words_and_kept_for_the_audit_log(
    policy, client, security_admin, listener
):
    server = listener(BANNER)
    policy.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    policy.SMTP_ALLOWED_PORTS_EXTRA = [server.port]

    response = run_test_connection(
        client, security_admin, drawer("127.0.0.1", server.port)
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert f"The server at 127.0.0.1:{server.port} {NO_ANSWER}" in page
    assert "No SMTP server answered" in page
    for leak in ("OpenSSH", "SSH-2.0", "2.0-", "Debian", "Request ID"):
        assert leak not in page
    assert server.accepted == 1
    entry = AuditEntry.objects.get(action=AuditAction.TESTED)
    assert (entry.error_code, entry.succeeded) == ("smtp_no_answer", False)
    assert "OpenSSH_9.2p1" in entry.detail  # cut and sanitised, for the audit log
    assert "\r" not in entry.detail and "\n" not in entry.detail


def test_open_closed_and_silent_ports_read_the_same(
    policy, client, security_admin, listener
):
    """Test Connection is no port scanner: a banner, a closed port and a port that
    accepts but never speaks (as a filtered one would time out) give one answer."""
    policy.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    policy.SMTP_TIMEOUT = 0.5
    banner = listener(b"HTTP/1.1 400 Bad Request\r\nServer: nginx/1.25.3\r\n\r\n")
    silent = listener(None)
    closed = free_port()
    policy.SMTP_ALLOWED_PORTS_EXTRA = [banner.port, silent.port, closed]

    answers = []
    for port in (banner.port, silent.port, closed):
        page = run_test_connection(
            client, security_admin, drawer("127.0.0.1", port), partial=True
        ).content.decode()
        assert f"The server at 127.0.0.1:{port} {NO_ANSWER}" in page
        assert "nginx" not in page and "Bad Request" not in page
        answers.append(page.replace(str(port), "PORT"))

    assert answers[0] == answers[1] == answers[2]
    entries = AuditEntry.objects.filter(action=AuditAction.TESTED).order_by("pk")
    assert {e.error_code for e in entries} == {"smtp_no_answer"}
    # The audit log keeps what the peer said, not whether a silent port was closed.
    said, silent_entry, closed_entry = (e.detail for e in entries)
    assert "400 Bad Request" in said  # the first line: smtplib stops there
    assert silent_entry.replace(str(silent.port), "PORT") == closed_entry.replace(
        str(closed), "PORT"
    )


def test_link_local_address_is_refused_in_the_form(policy, client, security_admin):
    policy.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True  # still never link-local

    response = run_test_connection(
        client, security_admin, drawer("169.254.169.254", 587)
    )

    assert response.status_code == 400
    assert "169.254.169.254 is a link-local" in response.content.decode()
    assert "never allowed" in response.content.decode()
    assert not AuditEntry.objects.exists()  # nothing was tried


def test_a_name_resolving_to_metadata_is_refused_before_connecting(
    policy, client, security_admin, monkeypatch
):
    lookups = fake_dns(monkeypatch, {"mail.evil.example": [["169.254.169.254"]]})
    connects = []
    monkeypatch.setattr(
        outbound, "connect", lambda *args, **kwargs: connects.append(args)
    )

    response = run_test_connection(
        client, security_admin, drawer("mail.evil.example", 587)
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert "This address is never allowed" in page
    assert "Connecting to mail.evil.example:587 was refused" in page
    assert "169.254.169.254" not in page
    assert lookups["mail.evil.example"] == 1 and connects == []
    entry = AuditEntry.objects.get()
    assert entry.action == AuditAction.ADDRESS_REFUSED
    assert entry.error_code == "address_never_allowed"
    assert "169.254.169.254" in entry.detail


def test_a_private_address_is_refused_with_the_settings_to_change(
    policy, client, security_admin, monkeypatch
):
    fake_dns(monkeypatch, {"relay.corp.example": [["10.20.30.40"]]})

    page = run_test_connection(
        client, security_admin, drawer("relay.corp.example", 587)
    ).content.decode()

    assert "Private addresses are not allowed" in page
    assert "OUTBOUND_ALLOW_PRIVATE_NETWORKS" in page
    assert "OUTBOUND_ALLOWED_HOSTS" in page


def test_an_smtp_port_outside_the_list_is_a_form_error(policy, client, security_admin):
    response = run_test_connection(
        client, security_admin, drawer("mail.example.org", 22)
    )

    assert response.status_code == 400
    assert "Port 22 is not allowed for SMTP" in response.content.decode()


def test_an_smtp_port_outside_the_list_is_refused_at_send_time(policy):
    """Settings saved before the list existed are refused before connecting."""
    session = SmtpSession(host="mail.example.org", port=8080)

    with pytest.raises(AddressRefused) as refused:
        session.connect()

    assert refused.value.code == "smtp_port_not_allowed"
    assert "mail.example.org:8080" in str(refused.value.troubleshooting.text)


# --- one lookup, and the connection goes to the checked address -----------------------


def test_smtp_connects_to_the_checked_address_not_a_second_answer(
    policy, monkeypatch, listener
):
    """DNS rebinding: the name's first answer is checked (allowed by the
    allow-list); any later answer (here a loopback address the list does not allow,
    where another server listens) is never looked up for the connection."""
    checked = listener(b"220 checked.example ESMTP\r\n")
    other = listener(
        b"220 other.example ESMTP\r\n", host="127.0.0.2", port=checked.port
    )
    policy.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1/32"]
    policy.SMTP_ALLOWED_PORTS_EXTRA = [checked.port]
    policy.SMTP_ALLOW_INSECURE = True
    lookups = fake_dns(
        monkeypatch, {"mail.rebind.example": [["127.0.0.1"], ["127.0.0.2"]]}
    )
    session = SmtpSession(
        host="mail.rebind.example", port=checked.port, security="none"
    )

    try:
        assert session.connect() == f"mail.rebind.example:{checked.port}"
        assert session.client.sock.getpeername()[0] == "127.0.0.1"
    finally:
        session.close()

    assert lookups["mail.rebind.example"] == 1
    assert wait_until(lambda: checked.accepted == 1)
    assert other.accepted == 0
    # And the second answer, had it been checked, is refused.
    with pytest.raises(AddressRefused):
        outbound.destination("mail.rebind.example", checked.port)


def test_https_connects_to_the_checked_address_not_a_second_answer(
    policy, sandbox, monkeypatch
):
    port = int(sandbox.base_url.rsplit(":", 1)[1])
    policy.M365_AUTHORITY_HOST = policy.M365_GRAPH_HOST = ""
    policy.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1/32"]
    lookups = fake_dns(monkeypatch, {"localhost": [["127.0.0.1"], ["127.0.0.2"]]})
    peers = []
    real_connect = outbound.connect

    def connect(destination, *args, **kwargs):
        sock = real_connect(destination, *args, **kwargs)
        peers.append(sock.getpeername()[0])
        return sock

    monkeypatch.setattr(outbound, "connect", connect)

    with M365Session() as session:
        response = session.get(f"https://localhost:{port}/_sandbox/ca.pem")

    assert response.status_code == 200
    assert lookups["localhost"] == 1
    assert peers == ["127.0.0.1"]


# --- TLS is still verified for the name -----------------------------------------------


def test_https_verifies_the_certificate_for_the_name(policy, sandbox, monkeypatch):
    """The connection goes to the checked IP; SNI and the certificate check use the
    name. The sandbox's certificate names 127.0.0.1 and localhost, not this name."""
    assert os.environ.get("REQUESTS_CA_BUNDLE")  # as on the machines we run on
    port = int(sandbox.base_url.rsplit(":", 1)[1])
    policy.M365_AUTHORITY_HOST = policy.M365_GRAPH_HOST = ""
    policy.OUTBOUND_ALLOWED_HOSTS = ["localhost", "idp.other.example"]
    fake_dns(
        monkeypatch,
        {"localhost": [["127.0.0.1"]], "idp.other.example": [["127.0.0.1"]]},
    )
    from integrations.providers.http import error_from_exception

    with M365Session() as session:
        assert session.get(f"https://localhost:{port}/_sandbox/ca.pem").ok
        with pytest.raises(Exception) as failure:
            session.get(f"https://idp.other.example:{port}/_sandbox/ca.pem")

    error = error_from_exception(failure.value)
    assert isinstance(error, TlsError)
    assert "idp.other.example" in error.detail or "match" in error.detail


def test_msal_goes_through_the_policy(policy, sandbox, monkeypatch):
    """The identity platform's client (msal, through our http_client) meets the
    policy too: an authority on a private address nobody allowed is refused."""
    port = int(sandbox.base_url.rsplit(":", 1)[1])
    fake_dns(monkeypatch, {"login.internal.example": [["127.0.0.1"]]})
    creds = identity.AppCredentials(
        authority_host=f"https://login.internal.example:{port}",
        tenant=sandbox.seed["tenant_id"],
        client_id=sandbox.seed["client_id"],
        client_secret=sandbox.seed["client_secret"],
    )

    with pytest.raises(AddressRefused) as refused:
        identity.acquire_app_token(creds, ["https://graph.microsoft.com/.default"])

    assert refused.value.code == "address_private"


def test_smtp_starttls_verifies_the_certificate_for_the_name(
    policy, sandbox, monkeypatch
):
    seed = sandbox.seed
    policy.M365_SMTP_HOST = ""  # "localhost" below is an admin's, not the operator's
    policy.M365_SMTP_PORT = sandbox.smtp_port
    policy.OUTBOUND_ALLOWED_HOSTS = ["localhost", "mail.other.example"]
    fake_dns(
        monkeypatch,
        {"localhost": [["127.0.0.1"]], "mail.other.example": [["127.0.0.1"]]},
    )

    def provider(host):
        return SmtpProvider(
            config={
                "cloud": "other",
                "smtp_host": host,
                "smtp_port": sandbox.smtp_port,
                "security": "starttls",
                "sender": seed["user"],
                "recipients": [seed["recipient"]],
                "auth_type": "basic",
                "username": seed["user"],
            },
            secrets={"password": seed["password"]},
        )

    report = provider("localhost").test_connection()
    assert report.ok, [(s.key, s.status, s.error) for s in report.steps]

    report = provider("mail.other.example").test_connection()
    assert report.failed_step.key == "starttls"
    assert isinstance(report.error, TlsError)


# --- replies: codes shown, text kept for the log --------------------------------------


def test_an_smtp_reply_shows_its_codes_never_its_text():
    error = error_from_reply(
        535, b"5.7.3 Authentication unsuccessful <b>Evil-Banner</b>", stage="auth"
    )

    assert error.code == "smtp_auth_failed"
    assert error.request_id == "535 5.7.3"
    assert "Evil-Banner" in error.detail
    assert "Evil-Banner" not in str(error.troubleshooting.text)


def test_a_line_that_is_not_an_smtp_reply_is_no_answer():
    error = error_from_reply(-1, b"2.0-OpenSSH_9.2", stage="connect")

    assert error.code == "smtp_no_answer"
    assert error.request_id == ""
    assert "OpenSSH" in error.detail


# --- the settings -----------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "relay corp", "https://relay", "a/b"])
def test_an_allow_list_entry_that_is_no_host_or_network_stops_start_up(entry):
    from django.core.exceptions import ImproperlyConfigured

    from config import settings as project_settings

    project_settings._check_outbound_allowed_hosts(["relay.corp", "10.0.0.0/8", "::1"])
    with pytest.raises(ImproperlyConfigured, match="OUTBOUND_ALLOWED_HOSTS"):
        project_settings._check_outbound_allowed_hosts([entry])


def test_graph_send_mail_goes_through_the_policy(policy, sandbox, monkeypatch):
    """The worker's sendMail (`M365Session.post_json`, straight to the adapter's
    pool) meets the policy and the name's certificate check as every request does."""
    from integrations.providers.graph import GraphClient

    port = int(sandbox.base_url.rsplit(":", 1)[1])
    fake_dns(
        monkeypatch,
        {"graph.internal.example": [["127.0.0.1"]], "localhost": [["127.0.0.1"]]},
    )
    payload = {"message": {"subject": "policy"}, "saveToSentItems": False}

    private = GraphClient(f"https://graph.internal.example:{port}")
    with pytest.raises(AddressRefused) as refused:
        private.send_mail(access_token="t", sender="a@b.example", payload=payload)
    assert refused.value.code == "address_private"

    policy.OUTBOUND_ALLOWED_HOSTS = ["graph.internal.example"]
    with pytest.raises(TlsError):
        private.send_mail(access_token="t", sender="a@b.example", payload=payload)


def test_graph_send_mail_checks_a_name_again_after_its_pin_lapses(
    policy, sandbox, monkeypatch
):
    """libcurl connects only where the name was checked, and the name is resolved
    and checked again once `PIN_SECONDS` have passed: a name that moves to a
    refused address is refused then, on the same kept-alive handle."""
    from integrations.providers import curl
    from integrations.providers.graph import GraphClient

    port = int(sandbox.base_url.rsplit(":", 1)[1])
    lookups = fake_dns(
        monkeypatch, {"localhost": [["127.0.0.1"], ["127.0.0.1"], ["169.254.169.254"]]}
    )
    policy.OUTBOUND_ALLOWED_HOSTS = ["localhost"]
    client = GraphClient(f"https://localhost:{port}")
    payload = {"message": {"subject": "pinned"}, "saveToSentItems": False}

    for _ in range(3):
        # Graph refuses the made-up token: the request got there all the same.
        with pytest.raises(AuthenticationFailed):
            client.send_mail(access_token="t", sender="a@b.example", payload=payload)
    assert lookups["localhost"] == 1

    monkeypatch.setattr(curl, "PIN_SECONDS", 0.0)
    with pytest.raises(AuthenticationFailed):
        client.send_mail(access_token="t", sender="a@b.example", payload=payload)
    with pytest.raises(AddressRefused) as refused:
        client.send_mail(access_token="t", sender="a@b.example", payload=payload)
    assert refused.value.code == "address_never_allowed"
    assert lookups["localhost"] == 3
