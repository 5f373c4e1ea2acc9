"""
Tokens from the Microsoft identity platform through msal, shared by every provider.

One `ConfidentialClientApplication` per (authority, client, credential), reused across
calls so that its token cache answers until the token nears expiry: one token request
per token lifetime. For a saved integration the cache is also persisted, encrypted, in
the integration's row, so separate processes (server, worker) share one token.

AADSTS error references:
https://learn.microsoft.com/entra/identity-platform/reference-error-codes
"""

import hashlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import jwt
import msal
import requests

from integrations.exceptions import (
    AuthenticationFailed,
    AuthorizationRequired,
    ConfigurationError,
    IntegrationError,
    PermissionMissing,
    ServiceUnavailable,
    Throttled,
    UnexpectedResponse,
)
from integrations.providers.http import (
    M365Session,
    error_from_exception,
    retry_after_seconds,
)
from operations import metrics

logger = logging.getLogger(__name__)

# AADSTS code -> (exception class, our code)
AADSTS_ERRORS = {
    90002: (AuthenticationFailed, "tenant_not_found"),
    900023: (AuthenticationFailed, "tenant_not_found"),
    700016: (AuthenticationFailed, "client_not_found"),
    7000215: (AuthenticationFailed, "secret_invalid"),
    7000222: (AuthenticationFailed, "secret_expired"),
    7000218: (AuthenticationFailed, "credential_missing"),
    700027: (AuthenticationFailed, "certificate_invalid"),
    700023: (AuthenticationFailed, "certificate_invalid"),
    70011: (ConfigurationError, "invalid_scope"),
    65001: (PermissionMissing, "consent_required"),
    50011: (ConfigurationError, "redirect_mismatch"),
    700082: (AuthorizationRequired, "reauthorization_required"),
    50173: (AuthorizationRequired, "reauthorization_required"),
    70008: (AuthorizationRequired, "reauthorization_required"),
    54005: (AuthorizationRequired, "reauthorization_required"),
    501481: (AuthorizationRequired, "reauthorization_required"),
    # A delegated grant a person must renew by signing in again (issue 14):
    # MFA now required (suberror basic_action), the account disabled.
    50076: (AuthorizationRequired, "mfa_required"),
    50079: (AuthorizationRequired, "mfa_required"),
    50057: (AuthorizationRequired, "account_disabled"),
}

# Refresh an access token this many seconds before it expires.
EXPIRY_MARGIN = 300


def error_from_aad(result: dict) -> IntegrationError:
    """Translate an msal/AAD error dict into the error hierarchy."""
    codes = result.get("error_codes") or []
    description = (result.get("error_description") or "").split("\r\n")[0]
    detail = f"{result.get('error')}: {description}"
    request_id = result.get("correlation_id") or result.get("trace_id") or ""
    for code in codes:
        if code in AADSTS_ERRORS:
            cls, our_code = AADSTS_ERRORS[code]
            return cls(detail, code=our_code, request_id=request_id)
    error = result.get("error")
    if error in ("temporarily_unavailable", "server_error"):
        return ServiceUnavailable(detail, request_id=request_id)
    if error == "invalid_grant":
        return AuthorizationRequired(detail, request_id=request_id)
    if error in ("invalid_client", "unauthorized_client"):
        return AuthenticationFailed(detail, request_id=request_id)
    if error == "invalid_scope":
        return ConfigurationError(detail, code="invalid_scope", request_id=request_id)
    return UnexpectedResponse(detail, request_id=request_id)


def error_from_status(response: requests.Response) -> IntegrationError | None:
    """A 429 or 5xx from the identity platform, with the Retry-After it sent; None for
    any other answer (an OAuth error body, which `error_from_aad` translates)."""
    status = response.status_code
    if status != 429 and status < 500:
        return None
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    description = (body.get("error_description") or "").split("\r\n")[0]
    detail = f"HTTP {status} {body.get('error') or ''}: {description}".strip(" :")
    request_id = (
        body.get("correlation_id")
        or body.get("trace_id")
        or response.headers.get("x-ms-request-id", "")
    )
    cls = Throttled if status == 429 else ServiceUnavailable
    return cls(
        detail,
        retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        request_id=request_id,
        status=status,
    )


class IdentityHttpClient:
    """The http client msal is given: the shared session, with 429 and 5xx answers
    raised as our errors.

    msal would keep only the body of such an answer (losing Retry-After and the
    status), and turns a 5xx from the token endpoint into its own MsalServiceError.
    """

    def __init__(self, session: M365Session):
        self.session = session

    def _checked(self, response: requests.Response) -> requests.Response:
        error = error_from_status(response)
        if error is not None:
            logger.warning("Identity platform answered %s", error.detail)
            raise error
        return response

    def get(self, url, **kwargs):
        return self._checked(self.session.get(url, **kwargs))

    def post(self, url, **kwargs):
        return self._checked(self.session.post(url, **kwargs))

    def close(self):
        """The session is shared: it outlives any one msal application."""


class TokenStore(Protocol):
    """Where a saved integration keeps its serialized, encrypted msal cache."""

    def load(self) -> str: ...

    def save(self, serialized: str) -> None: ...


@dataclass(frozen=True)
class AppCredentials:
    authority_host: str
    tenant: str
    client_id: str
    client_secret: str = ""
    #: PEM private key and certificate, for a certificate credential.
    private_key: str = ""
    certificate: str = ""
    thumbprint: str = ""

    @property
    def authority(self) -> str:
        return f"{self.authority_host}/{self.tenant}"

    def msal_credential(self):
        if self.private_key:
            return {
                "private_key": self.private_key,
                "thumbprint": self.thumbprint,
                "public_certificate": self.certificate,
            }
        return self.client_secret

    def cache_key(self) -> str:
        material = "\x00".join(
            [self.authority, self.client_id, self.client_secret, self.private_key]
        )
        return hashlib.sha256(material.encode()).hexdigest()


def app_credentials(authority_host: str, config: dict, secrets: dict) -> AppCredentials:
    """Client credentials from a tool's saved settings (`tenant_id`, `client_id`, and
    `client_secret` or a certificate): the certificate when one is configured (a
    stored private key without a certificate thumbprint is left over and ignored),
    otherwise the client secret."""
    use_certificate = bool(config.get("certificate_thumbprint")) and bool(
        secrets.get("private_key")
    )
    return AppCredentials(
        authority_host=authority_host,
        tenant=config["tenant_id"],
        client_id=config["client_id"],
        client_secret="" if use_certificate else secrets.get("client_secret", ""),
        private_key=secrets.get("private_key", "") if use_certificate else "",
        certificate=config.get("certificate", "") if use_certificate else "",
        thumbprint=config.get("certificate_thumbprint", "") if use_certificate else "",
    )


_apps: dict[str, msal.ConfidentialClientApplication] = {}
_apps_lock = threading.Lock()
_session = None


def shared_session() -> M365Session:
    """One keep-alive session for the identity platform, shared by all apps."""
    global _session
    if _session is None:
        _session = M365Session()
    return _session


def msal_http_client() -> IdentityHttpClient:
    """What to pass to msal as `http_client`."""
    return IdentityHttpClient(shared_session())


def _app(creds: AppCredentials) -> msal.ConfidentialClientApplication:
    key = creds.cache_key()
    with _apps_lock:
        app = _apps.get(key)
    if app is not None:
        return app
    try:
        app = msal.ConfidentialClientApplication(
            creds.client_id,
            client_credential=creds.msal_credential(),
            authority=creds.authority,
            http_client=msal_http_client(),
            token_cache=msal.SerializableTokenCache(),
            # Known authorities only: no call to Microsoft's instance discovery, so
            # sovereign clouds and the sandbox work the same way.
            instance_discovery=False,
        )
    except ValueError as exc:
        # msal raises ValueError when tenant discovery answers 4xx (unknown tenant).
        raise AuthenticationFailed(str(exc).split(". ")[0], code="tenant_not_found")
    except requests.RequestException as exc:
        raise error_from_exception(exc)
    except IntegrationError:
        raise
    except Exception as exc:  # a malformed private key, for instance
        if "key" in str(exc).lower() or "certificate" in str(exc).lower():
            raise ConfigurationError(
                f"{type(exc).__name__} loading the certificate credential",
                code="certificate_invalid",
            )
        raise
    with _apps_lock:
        return _apps.setdefault(key, app)


def forget_apps() -> None:
    """Drop every cached application (tests, key changes)."""
    with _apps_lock:
        _apps.clear()


def _has_fresh_token(cache: msal.SerializableTokenCache, scopes) -> bool:
    now = time.time()
    for entry in cache.search(
        msal.TokenCache.CredentialType.ACCESS_TOKEN, target=scopes
    ):
        if int(entry.get("expires_on", 0)) - now > EXPIRY_MARGIN:
            return True
    return False


def acquire_app_token(
    creds: AppCredentials, scopes: list[str], *, store: TokenStore | None = None
) -> str:
    """An app-only access token for `scopes` (client credentials grant).

    Served from the in-memory cache, then from the persisted cache (another process
    may have fetched one), and only then from the token endpoint.
    """
    app = _app(creds)
    cache = app.token_cache
    if store is not None and not _has_fresh_token(cache, scopes):
        serialized = store.load()
        if serialized:
            cache.deserialize(serialized)
    try:
        result = app.acquire_token_for_client(scopes=scopes)
    except requests.RequestException as exc:
        raise error_from_exception(exc)
    except ValueError as exc:
        raise AuthenticationFailed(str(exc).split(". ")[0], code="tenant_not_found")
    metrics.token_request(grant="client_credentials", result=result)
    if "access_token" not in result:
        error = error_from_aad(result)
        logger.warning("Token request failed: %s", error.detail)
        raise error
    if store is not None and cache.has_state_changed:
        store.save(cache.serialize())
        cache.has_state_changed = False
    return result["access_token"]


def discover_tenant(authority_host: str, tenant: str) -> dict:
    """Fetch the tenant's OpenID configuration; an unknown tenant is an error."""
    url = f"{authority_host}/{tenant}/v2.0/.well-known/openid-configuration"
    try:
        response = shared_session().get(url)
    except requests.RequestException as exc:
        raise error_from_exception(exc)
    if response.status_code == 200:
        try:
            return response.json()
        except ValueError:
            raise UnexpectedResponse("discovery document is not JSON")
    error = error_from_status(response)
    if error is not None:
        raise error
    try:
        body = response.json()
    except ValueError:
        body = {}
    if body.get("error_codes"):
        raise error_from_aad(body)
    raise AuthenticationFailed(
        f"discovery answered {response.status_code}", code="tenant_not_found"
    )


def token_claims(access_token: str) -> dict:
    """The claims of a token we just received over TLS (signature not re-checked)."""
    try:
        return jwt.decode(access_token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise UnexpectedResponse(f"access token is not a JWT: {type(exc).__name__}")
