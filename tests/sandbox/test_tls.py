"""TLS: the sandbox's own CA, its server certificate, and REQUESTS_CA_BUNDLE."""

import ipaddress
import os
import smtplib
import socket
import ssl
import threading

import requests
from cryptography import x509

from sandbox import Sandbox
from tests.sandbox.m365 import trusted_session


def server_certificate(host, port, ca_path):
    """The certificate the server presents, after verifying it for ``host``."""
    context = ssl.create_default_context(cafile=str(ca_path))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der)


def https_port(sb):
    return int(sb.base_url.rsplit(":", 1)[1])


def test_tests_run_with_requests_ca_bundle_set():
    assert os.environ.get("REQUESTS_CA_BUNDLE")


def test_ca_pem_is_served_and_equals_the_ca_file(sb, http):
    response = http.get(f"{sb.base_url}/_sandbox/ca.pem")

    assert response.status_code == 200
    assert response.text.strip() == sb.ca_path.read_text().strip()
    ca = x509.load_pem_x509_certificate(response.content)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_seed_points_at_the_ca_url(sb, http, seed):
    assert http.get(seed["ca_url"]).text.strip() == sb.ca_path.read_text().strip()


def test_default_requests_verification_fails_without_the_sandbox_ca(sb):
    # REQUESTS_CA_BUNDLE points at certifi, which does not know the sandbox CA.
    try:
        requests.get(f"{sb.base_url}/_sandbox/ca.pem", timeout=10)
    except requests.exceptions.SSLError:
        pass
    else:
        raise AssertionError("the sandbox certificate must not be publicly trusted")


def test_session_verify_is_overridden_by_the_environment_unless_trust_env_is_off(sb):
    # requests merges REQUESTS_CA_BUNDLE over Session.verify: the product must
    # pass verify per request or switch trust_env off, as trusted_session does.
    naive = requests.Session()
    naive.verify = str(sb.ca_path)
    try:
        naive.get(f"{sb.base_url}/_sandbox/ca.pem", timeout=10)
    except requests.exceptions.SSLError:
        pass
    else:
        raise AssertionError("REQUESTS_CA_BUNDLE should have replaced Session.verify")
    finally:
        naive.close()

    per_request = requests.get(
        f"{sb.base_url}/_sandbox/ca.pem", verify=str(sb.ca_path), timeout=10
    )
    assert per_request.status_code == 200


def test_server_certificate_is_valid_for_127_0_0_1_and_localhost(sb):
    port = https_port(sb)

    for host in ("127.0.0.1", "localhost"):
        cert = server_certificate(host, port, sb.ca_path)
        names = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
        assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(
            x509.IPAddress
        )
        assert "localhost" in names.get_values_for_type(x509.DNSName)


def test_requests_to_localhost_verify(sb, http):
    port = https_port(sb)

    response = http.get(f"https://localhost:{port}/_sandbox/ca.pem")

    assert response.status_code == 200


def test_smtp_starttls_presents_the_same_certificate(sb):
    with smtplib.SMTP(sb.smtp_host, sb.smtp_port, timeout=10) as client:
        client.starttls(context=ssl.create_default_context(cafile=str(sb.ca_path)))
        der = client.sock.getpeercert(binary_form=True)

    https = server_certificate("127.0.0.1", https_port(sb), sb.ca_path)
    assert x509.load_der_x509_certificate(der) == https


def test_ca_and_certificate_are_reused_across_restarts(tmp_path):
    with Sandbox(state_dir=tmp_path) as first:
        ca_first = first.ca_path.read_bytes()
        cert_first = server_certificate("127.0.0.1", https_port(first), first.ca_path)

    with Sandbox(state_dir=tmp_path) as second:
        assert second.ca_path.read_bytes() == ca_first
        cert_second = server_certificate(
            "127.0.0.1", https_port(second), second.ca_path
        )
        with trusted_session(second.ca_path) as http:
            assert http.get(f"{second.base_url}/_sandbox/ca.pem").ok

    assert cert_second == cert_first


def test_sandboxes_in_different_state_dirs_have_different_cas(tmp_path, sb):
    with Sandbox(state_dir=tmp_path) as other:
        assert other.ca_path.read_bytes() != sb.ca_path.read_bytes()


def test_stopped_sandbox_leaves_no_thread_behind(tmp_path):
    before = set(threading.enumerate())

    with Sandbox(state_dir=tmp_path) as sb:
        with trusted_session(sb.ca_path) as http:
            assert http.get(f"{sb.base_url}/_sandbox/seed").ok
        with smtplib.SMTP(sb.smtp_host, sb.smtp_port, timeout=10) as client:
            client.starttls(context=ssl.create_default_context(cafile=str(sb.ca_path)))
            client.login(sb.seed["user"], sb.seed["password"])
        assert set(threading.enumerate()) - before

    assert set(threading.enumerate()) == before


def test_start_and_stop_can_be_called_without_the_context_manager(tmp_path):
    before = set(threading.enumerate())
    sb = Sandbox(state_dir=tmp_path)
    sb.start()
    try:
        with trusted_session(sb.ca_path) as http:
            assert http.get(f"{sb.base_url}/_sandbox/seed").ok
    finally:
        sb.stop()

    assert set(threading.enumerate()) == before
