"""Identity (Entra ID): discovery, keys, client credentials and their errors."""

import base64
import datetime
import time
import uuid

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.sandbox.m365 import (
    GRAPH_AUDIENCE,
    GRAPH_DEFAULT,
    OUTLOOK_AUDIENCE,
    OUTLOOK_DEFAULT,
    assert_aad_error,
    confidential_app,
    token_endpoint,
)


def discovery(sb, http, tenant):
    return http.get(f"{sb.base_url}/{tenant}/v2.0/.well-known/openid-configuration")


def verified_claims(sb, http, token, audience, tenant=None):
    """Decode an access token with PyJWT against the keys the tenant publishes."""
    config = discovery(sb, http, tenant or sb.seed["tenant_id"]).json()
    jwks = jwt.PyJWKSet.from_dict(http.get(config["jwks_uri"]).json())
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    key = jwks[header["kid"]]
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=audience)


def self_signed_certificate(common_name="sandbox-test-app"):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return key_pem, cert_pem, cert.fingerprint(hashes.SHA1()).hex()


# --- discovery and keys ---------------------------------------------------------


def test_discovery_document_names_the_tenant_endpoints(sb, http, seed):
    response = discovery(sb, http, seed["tenant_id"])

    assert response.status_code == 200
    config = response.json()
    tenant_url = f"{sb.base_url}/{seed['tenant_id']}"
    assert config["issuer"] == f"{tenant_url}/v2.0"
    assert config["authorization_endpoint"] == f"{tenant_url}/oauth2/v2.0/authorize"
    assert config["token_endpoint"] == f"{tenant_url}/oauth2/v2.0/token"
    assert config["jwks_uri"].startswith(sb.base_url)
    assert {"query", "form_post"} <= set(config["response_modes_supported"])


def test_tenant_can_be_addressed_by_its_domain(sb, http, seed):
    config = discovery(sb, http, seed["domain"]).json()

    assert config["issuer"] == f"{sb.base_url}/{seed['tenant_id']}/v2.0"
    result = confidential_app(sb, http, tenant=seed["domain"]).acquire_token_for_client(
        [GRAPH_DEFAULT]
    )
    assert (
        verified_claims(sb, http, result["access_token"], GRAPH_AUDIENCE)["tid"]
        == seed["tenant_id"]
    )


def test_jwks_publishes_rsa_signing_keys(sb, http, seed):
    config = discovery(sb, http, seed["tenant_id"]).json()
    keys = http.get(config["jwks_uri"]).json()["keys"]

    assert keys
    for key in keys:
        assert key["kty"] == "RSA"
        assert key["kid"] and key["n"] and key["e"]
        assert key.get("use", "sig") == "sig"


def test_unknown_tenant_discovery_is_aadsts90002(sb, http):
    response = discovery(sb, http, str(uuid.uuid4()))

    assert response.status_code == 400
    assert_aad_error(response.json(), 90002, "invalid_request")


def test_msal_refuses_an_unknown_tenant_authority(sb, http):
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        confidential_app(sb, http, tenant="nobody.onmicrosoft.com")


def test_unknown_tenant_token_request_is_aadsts90002(sb, http, seed):
    response = http.post(
        token_endpoint(sb, tenant=str(uuid.uuid4())),
        data={
            "grant_type": "client_credentials",
            "client_id": seed["client_id"],
            "client_secret": seed["client_secret"],
            "scope": GRAPH_DEFAULT,
        },
    )

    assert response.status_code == 400
    assert_aad_error(response.json(), 90002, "invalid_request")


# --- client credentials ---------------------------------------------------------


def test_client_secret_gets_graph_token_with_mail_send_role(sb, http, seed):
    before = time.time()
    result = confidential_app(sb, http).acquire_token_for_client([GRAPH_DEFAULT])

    assert result["token_type"] == "Bearer"
    assert result["expires_in"] > 300
    claims = verified_claims(sb, http, result["access_token"], GRAPH_AUDIENCE)
    assert claims["aud"] == GRAPH_AUDIENCE
    assert claims["tid"] == seed["tenant_id"]
    assert claims["appid"] == seed["client_id"]
    assert claims["azp"] == seed["client_id"]
    assert seed["tenant_id"] in claims["iss"]
    assert claims["roles"] == ["Mail.Send"]
    assert "scp" not in claims
    assert claims["exp"] > before + 300
    assert claims["iat"] <= time.time() + 5


def test_client_secret_gets_outlook_token_with_smtp_send_as_app_role(sb, http, seed):
    result = confidential_app(sb, http).acquire_token_for_client([OUTLOOK_DEFAULT])

    claims = verified_claims(sb, http, result["access_token"], OUTLOOK_AUDIENCE)
    assert claims["aud"] == OUTLOOK_AUDIENCE
    assert claims["appid"] == seed["client_id"]
    assert "SMTP.SendAsApp" in claims["roles"]
    assert set(claims["roles"]) <= {"SMTP.SendAsApp", "IMAP.AccessAsApp"}


def test_client_secret_in_http_basic_authentication_is_accepted(sb, http, seed):
    response = http.post(
        token_endpoint(sb),
        data={"grant_type": "client_credentials", "scope": GRAPH_DEFAULT},
        auth=(seed["client_id"], seed["client_secret"]),
    )

    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"


def test_added_secret_works_alongside_the_seeded_one(sb, http, ctl, seed):
    secret = ctl.add_secret(seed["client_id"])

    result = confidential_app(
        sb, http, credential=secret["value"]
    ).acquire_token_for_client([GRAPH_DEFAULT])

    assert "access_token" in result, result
    assert secret["secret_id"] != secret["value"]


def test_registered_certificate_signs_client_assertion(sb, http, ctl, seed):
    key_pem, cert_pem, sha1 = self_signed_certificate()
    registered = ctl.add_certificate(seed["client_id"], cert_pem)
    assert registered["thumbprint"].lower().replace(":", "") == sha1

    app = confidential_app(
        sb, http, credential={"private_key": key_pem, "thumbprint": sha1}
    )
    result = app.acquire_token_for_client([GRAPH_DEFAULT])

    assert "access_token" in result, result
    claims = verified_claims(sb, http, result["access_token"], GRAPH_AUDIENCE)
    assert claims["appid"] == seed["client_id"]
    assert claims["roles"] == ["Mail.Send"]


def test_certificate_with_public_certificate_header_is_accepted(sb, http, ctl, seed):
    key_pem, cert_pem, sha1 = self_signed_certificate()
    ctl.add_certificate(seed["client_id"], cert_pem)

    app = confidential_app(
        sb,
        http,
        credential={
            "private_key": key_pem,
            "thumbprint": sha1,
            "public_certificate": cert_pem,
        },
    )
    result = app.acquire_token_for_client([OUTLOOK_DEFAULT])

    assert "access_token" in result, result


def test_certificate_by_sha256_thumbprint_as_msal_defaults_to(sb, http, ctl, seed):
    # msal >= 1.35 given only public_certificate signs with PS256 and x5t#S256.
    key_pem, cert_pem, _ = self_signed_certificate()
    ctl.add_certificate(seed["client_id"], cert_pem)

    app = confidential_app(
        sb, http, credential={"private_key": key_pem, "public_certificate": cert_pem}
    )
    result = app.acquire_token_for_client([GRAPH_DEFAULT])

    assert "access_token" in result, result


JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def client_assertion(sb, key_pem, sha1, **claims):
    """A client assertion built by hand, for what msal would never send."""
    now = int(time.time())
    client_id = sb.seed["client_id"]
    payload = {
        "aud": token_endpoint(sb),
        "iss": client_id,
        "sub": client_id,
        "jti": str(uuid.uuid4()),
        "nbf": now,
        "exp": now + 600,
    }
    payload.update(claims)
    x5t = base64.urlsafe_b64encode(bytes.fromhex(sha1)).decode().rstrip("=")
    return jwt.encode(payload, key_pem, algorithm="RS256", headers={"x5t": x5t})


def post_assertion(sb, http, assertion):
    return http.post(
        token_endpoint(sb),
        data={
            "grant_type": "client_credentials",
            "client_id": sb.seed["client_id"],
            "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion,
            "scope": GRAPH_DEFAULT,
        },
    )


@pytest.fixture
def registered_key(sb, ctl, seed):
    key_pem, cert_pem, sha1 = self_signed_certificate()
    ctl.add_certificate(seed["client_id"], cert_pem)
    return key_pem, sha1


def test_hand_built_client_assertion_is_accepted(sb, http, registered_key):
    response = post_assertion(sb, http, client_assertion(sb, *registered_key))

    assert response.status_code == 200, response.text


def test_certificate_registration_reports_both_thumbprints(sb, ctl, seed):
    _, cert_pem, sha1 = self_signed_certificate()
    cert = x509.load_pem_x509_certificate(cert_pem.encode())

    registered = ctl.add_certificate(seed["client_id"], cert_pem)

    assert registered["thumbprint"].lower() == sha1
    assert registered["thumbprint_sha256"].lower() == (
        cert.fingerprint(hashes.SHA256()).hex()
    )


def test_client_assertion_for_another_audience_is_aadsts700027(
    sb, http, registered_key
):
    assertion = client_assertion(
        sb,
        *registered_key,
        aud="https://login.microsoftonline.com/common/oauth2/v2.0/token",
    )

    response = post_assertion(sb, http, assertion)

    assert_aad_error(response.json(), 700027, "invalid_client")


def test_client_assertion_with_a_bad_signature_is_aadsts700027(
    sb, http, registered_key
):
    head, body, signature = client_assertion(sb, *registered_key).split(".")
    tampered = f"{head}.{body}.{signature[:-4]}AAAA"

    response = post_assertion(sb, http, tampered)

    assert_aad_error(response.json(), 700027, "invalid_client")


def test_unregistered_certificate_is_aadsts700027(sb, http, seed):
    key_pem, _, sha1 = self_signed_certificate()

    result = confidential_app(
        sb, http, credential={"private_key": key_pem, "thumbprint": sha1}
    ).acquire_token_for_client([GRAPH_DEFAULT])

    assert_aad_error(result, 700027, "invalid_client")


def test_client_assertion_issued_by_another_client_is_aadsts700021(
    sb, http, registered_key
):
    other = str(uuid.uuid4())
    assertion = client_assertion(sb, *registered_key, iss=other, sub=other)

    response = post_assertion(sb, http, assertion)

    assert_aad_error(response.json(), 700021, "invalid_client")


def test_expired_client_assertion_is_aadsts700024(sb, http, registered_key):
    now = int(time.time())
    assertion = client_assertion(
        sb, *registered_key, nbf=now - 3600, exp=now - 1800, iat=now - 3600
    )

    response = post_assertion(sb, http, assertion)

    assert_aad_error(response.json(), 700024, "invalid_client")


def test_client_assertion_that_is_not_a_jwt_is_aadsts50027(sb, http):
    response = post_assertion(sb, http, "not-a-jwt")

    assert_aad_error(response.json(), 50027, "invalid_request")


# --- errors, each by its code ---------------------------------------------------


def test_unknown_client_id_is_aadsts700016(sb, http):
    result = confidential_app(
        sb, http, client_id=str(uuid.uuid4())
    ).acquire_token_for_client([GRAPH_DEFAULT])

    assert_aad_error(result, 700016, "unauthorized_client")


def test_wrong_secret_is_aadsts7000215(sb, http):
    result = confidential_app(
        sb, http, credential="Wrong8Q~not.the.secret_0123456789abcdef"
    ).acquire_token_for_client([GRAPH_DEFAULT])

    assert_aad_error(result, 7000215, "invalid_client")


def test_secret_id_pasted_as_secret_value_is_aadsts7000215(sb, http, seed):
    result = confidential_app(
        sb, http, credential=seed["client_secret_id"]
    ).acquire_token_for_client([GRAPH_DEFAULT])

    assert_aad_error(result, 7000215, "invalid_client")


def test_expired_secret_is_aadsts7000222(sb, http, ctl, seed):
    past = (
        datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    ).isoformat()
    secret = ctl.add_secret(seed["client_id"], expires_at=past)

    result = confidential_app(
        sb, http, credential=secret["value"]
    ).acquire_token_for_client([GRAPH_DEFAULT])

    assert_aad_error(result, 7000222, "invalid_client")


def test_secret_expires_when_the_sandbox_clock_passes_it(sb, http, ctl, seed):
    soon = (
        datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    ).isoformat()
    secret = ctl.add_secret(seed["client_id"], expires_at=soon)
    ctl.advance_clock(2 * 3600)

    result = confidential_app(
        sb, http, credential=secret["value"]
    ).acquire_token_for_client([GRAPH_DEFAULT])

    assert_aad_error(result, 7000222, "invalid_client")


def test_token_request_without_credential_is_aadsts7000218(sb, http, seed):
    response = http.post(
        token_endpoint(sb),
        data={
            "grant_type": "client_credentials",
            "client_id": seed["client_id"],
            "scope": GRAPH_DEFAULT,
        },
    )

    assert response.status_code in (400, 401)
    assert_aad_error(response.json(), 7000218, "invalid_client")


def test_scopes_of_two_resources_are_aadsts70011(sb, http):
    result = confidential_app(sb, http).acquire_token_for_client(
        [GRAPH_DEFAULT, OUTLOOK_DEFAULT]
    )

    assert_aad_error(result, 70011, "invalid_scope")


def test_unknown_scope_is_aadsts70011(sb, http):
    result = confidential_app(sb, http).acquire_token_for_client(["not-a-scope"])

    assert_aad_error(result, 70011, "invalid_scope")


def test_client_credentials_with_a_non_default_scope_is_aadsts1002012(sb, http):
    result = confidential_app(sb, http).acquire_token_for_client(
        ["https://graph.microsoft.com/Mail.Send"]
    )

    assert_aad_error(result, 1002012, "invalid_scope")


def test_unsupported_grant_type_is_aadsts70003(sb, http, seed):
    response = http.post(
        token_endpoint(sb),
        data={
            "grant_type": "password",
            "client_id": seed["client_id"],
            "client_secret": seed["client_secret"],
            "username": seed["user"],
            "password": seed["password"],
            "scope": GRAPH_DEFAULT,
        },
    )

    assert response.status_code == 400
    assert_aad_error(response.json(), 70003, "unsupported_grant_type")


@pytest.mark.parametrize("missing", ["grant_type", "client_id"])
def test_token_request_missing_a_required_parameter_is_aadsts900144(
    sb, http, seed, missing
):
    data = {
        "grant_type": "client_credentials",
        "client_id": seed["client_id"],
        "client_secret": seed["client_secret"],
        "scope": GRAPH_DEFAULT,
    }
    del data[missing]

    response = http.post(token_endpoint(sb), data=data)

    assert response.status_code == 400
    assert_aad_error(response.json(), 900144, "invalid_request")


def test_app_without_admin_consent_gets_a_token_without_roles(sb, http, ctl):
    # As in Entra ID: client credentials still succeed, the roles claim is absent
    # and the resource refuses the token (Graph answers 403, see test_graph.py).
    client_id, secret = ctl.add_app(
        application_permissions=["Mail.Send"], admin_consent=False
    )

    result = confidential_app(
        sb, http, client_id=client_id, credential=secret
    ).acquire_token_for_client([GRAPH_DEFAULT])

    claims = verified_claims(sb, http, result["access_token"], GRAPH_AUDIENCE)
    assert claims["appid"] == client_id
    assert "roles" not in claims


def test_app_without_permissions_on_the_resource_gets_no_roles_for_it(sb, http, ctl):
    client_id, secret = ctl.add_app(application_permissions=["Mail.Send"])

    result = confidential_app(
        sb, http, client_id=client_id, credential=secret
    ).acquire_token_for_client([OUTLOOK_DEFAULT])

    claims = verified_claims(sb, http, result["access_token"], OUTLOOK_AUDIENCE)
    assert "roles" not in claims


def test_app_registered_in_another_tenant_is_unknown_here(sb, http, ctl, seed):
    other = ctl.add_tenant(domains=["fabrikam.onmicrosoft.com"])
    client_id, secret = ctl.add_app(tenant=other, application_permissions=["Mail.Send"])

    here = confidential_app(sb, http, client_id=client_id, credential=secret)
    there = confidential_app(
        sb, http, client_id=client_id, credential=secret, tenant=other
    )

    assert_aad_error(
        here.acquire_token_for_client([GRAPH_DEFAULT]), 700016, "unauthorized_client"
    )
    claims = verified_claims(
        sb,
        http,
        there.acquire_token_for_client([GRAPH_DEFAULT])["access_token"],
        GRAPH_AUDIENCE,
        tenant=other,
    )
    assert claims["tid"] == other


def test_msal_token_cache_answers_repeat_requests_without_the_sandbox(sb, http):
    app = confidential_app(sb, http)
    first = app.acquire_token_for_client([GRAPH_DEFAULT])
    second = app.acquire_token_for_client([GRAPH_DEFAULT])

    assert second["access_token"] == first["access_token"]
    assert sb.counters()["token_requests"]["client_credentials"] == 1
