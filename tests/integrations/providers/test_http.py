"""The TLS trust of `integrations/providers/http.py`: requests' connections share
one parsed CA bundle (`trust_context`), SMTP and IMAP sessions one built context
(`ssl_context`), each built again when its file changes."""

import os
import shutil

import certifi
import pytest
import requests

from integrations.exceptions import TlsError
from integrations.providers import http


@pytest.fixture
def fresh_trust():
    """`trust_context`'s cache, empty (its `cache_info()` counts the parses)."""
    http._trust_context.cache_clear()
    yield http._trust_context
    http._trust_context.cache_clear()


def openid_configuration(sandbox, session, **kwargs):
    seed = sandbox.seed
    url = f"{sandbox.authority_host}/{seed['tenant_id']}/v2.0/.well-known/openid-configuration"
    return session.get(url, **kwargs)


def test_new_connections_share_one_parsed_bundle(sandbox, fresh_trust):
    first, second = http.M365Session(), http.M365Session()

    assert openid_configuration(sandbox, first).status_code == 200
    with openid_configuration(sandbox, second, stream=True) as response:
        assert response.status_code == 200
        connection = response.raw.connection
        context = connection.sock.context
    # No bundle path left for urllib3 to parse again into the shared context.
    assert connection.ca_certs is None and connection.ca_cert_dir is None

    # Two sessions, two connections (their pools are their own), one parse.
    assert fresh_trust.cache_info().misses == 1
    assert fresh_trust.cache_info().hits >= 1
    assert context is http.trust_context(http.ca_bundle())


def test_the_shared_context_still_refuses_an_untrusted_certificate(
    sandbox, settings, fresh_trust
):
    # REQUESTS_CA_BUNDLE (tests/conftest.py) does not hold the sandbox's CA.
    assert os.environ.get("REQUESTS_CA_BUNDLE")
    settings.M365_CA_BUNDLE = ""

    with pytest.raises(requests.exceptions.SSLError) as raised:
        openid_configuration(sandbox, http.M365Session())

    assert isinstance(http.error_from_exception(raised.value), TlsError)
    assert fresh_trust.cache_info().misses == 1


def test_a_bundle_rewritten_in_place_is_parsed_again(tmp_path, sandbox, fresh_trust):
    bundle = tmp_path / "bundle.pem"
    shutil.copyfile(sandbox.ca_path, bundle)
    before = http.trust_context(str(bundle))
    assert http.trust_context(str(bundle)) is before

    shutil.copyfile(certifi.where(), bundle)
    after = http.trust_context(str(bundle))

    assert after is not before
    assert len(after.get_ca_certs()) > len(before.get_ca_certs()) == 1


def test_an_unreadable_bundle_is_left_for_the_request_to_report(tmp_path, fresh_trust):
    broken = tmp_path / "broken.pem"
    broken.write_text("not a certificate")

    assert http.OutboundPolicyAdapter.trust("https", str(broken)) is None
    assert http.OutboundPolicyAdapter.trust("https", str(tmp_path / "gone")) is None
    assert http.OutboundPolicyAdapter.trust("http", str(broken)) is None


# --- SMTP and IMAP: `ssl_context` -------------------------------------------------


@pytest.fixture
def fresh_ssl_contexts():
    """`ssl_context`'s cache, empty (its `cache_info()` counts the builds)."""
    http._ssl_context.cache_clear()
    yield http._ssl_context
    http._ssl_context.cache_clear()


def starttls_session(sandbox, **kwargs):
    from integrations.providers.smtp_client import SmtpSession

    session = SmtpSession(host=sandbox.smtp_host, port=sandbox.smtp_port, **kwargs)
    session.connect()
    session.starttls()
    return session


def test_smtp_sessions_share_one_built_context(sandbox, fresh_ssl_contexts):
    first, second = starttls_session(sandbox), starttls_session(sandbox)
    try:
        assert first.client.sock.context is second.client.sock.context
        assert first.client.sock.context is http.ssl_context()
        assert fresh_ssl_contexts.cache_info().misses == 1
        # Each minimum version has its own.
        strict = starttls_session(sandbox, minimum_tls="1.3")
        assert strict.client.sock.context is not first.client.sock.context
        assert strict.client.sock.version() == "TLSv1.3"
        strict.close()
    finally:
        first.close()
        second.close()


def test_a_rewritten_m365_ca_bundle_is_loaded_again(
    tmp_path, sandbox, settings, fresh_ssl_contexts
):
    bundle = tmp_path / "extra.pem"
    shutil.copyfile(certifi.where(), bundle)  # not the sandbox's CA
    settings.M365_CA_BUNDLE = str(bundle)
    with pytest.raises(TlsError):
        starttls_session(sandbox)

    shutil.copyfile(sandbox.ca_path, bundle)
    session = starttls_session(sandbox)

    assert session.tls_version
    session.close()
    assert fresh_ssl_contexts.cache_info().misses == 2


def test_an_unreadable_m365_ca_bundle_is_a_tls_error(
    tmp_path, settings, fresh_ssl_contexts
):
    settings.M365_CA_BUNDLE = str(tmp_path / "gone.pem")
    with pytest.raises(TlsError, match="M365_CA_BUNDLE cannot be loaded"):
        http.ssl_context()

    broken = tmp_path / "broken.pem"
    broken.write_text("not a certificate")
    settings.M365_CA_BUNDLE = str(broken)
    with pytest.raises(TlsError, match="M365_CA_BUNDLE cannot be loaded"):
        http.ssl_context()
