"""
Delegated OAuth 2.0 (authorization code flow with PKCE and a nonce), for a mailbox that
a person signs in to once: start the flow, redeem the code, refresh the tokens, and
keep a stored grant's access token fresh (`fresh_grant`, one refresh at a time).

Microsoft tenants go through msal's `ConfidentialClientApplication`; any other OAuth
server (given its authorization and token endpoints) through msal's bundled OpenID
Connect client, which implements the same flow.

https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow
https://learn.microsoft.com/entra/identity-platform/refresh-tokens
"""

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import msal
import requests
from django.conf import settings
from msal.oauth2cli import oidc

from integrations.exceptions import (
    AuthenticationFailed,
    AuthorizationRequired,
    ConfigurationError,
    IntegrationError,
    PermissionMissing,
)
from integrations.providers.http import error_from_exception
from integrations.providers.identity import (
    EXPIRY_MARGIN,
    error_from_aad,
    msal_http_client,
)
from operations import metrics

logger = logging.getLogger(__name__)

#: Scopes msal adds by itself and refuses to be given.
_RESERVED = {"openid", "profile", "offline_access"}

#: Keys of `Integration.secrets` that hold a delegated grant: its tokens, the account
#: that signed in, when (epoch seconds) and when its access token was last refreshed.
#: They go together: settings that make a grant useless drop all of them.
GRANT_KEYS = (
    "access_token",
    "refresh_token",
    "token_expires_at",
    "authorized_account",
    "authorized_at",
    "refreshed_at",
)


@dataclass(frozen=True)
class DelegatedClient:
    """An OAuth client registration: a Microsoft tenant, or explicit endpoints."""

    client_id: str
    client_secret: str
    authority_host: str = ""
    tenant: str = ""
    authorization_endpoint: str = ""
    token_endpoint: str = ""

    @property
    def is_microsoft(self) -> bool:
        return not (self.authorization_endpoint and self.token_endpoint)


@dataclass(frozen=True)
class Grant:
    access_token: str
    refresh_token: str
    expires_at: float
    #: The signed-in account (id token's preferred_username, upn or email), lowercased.
    account: str = ""

    def as_secrets(self) -> dict:
        """The tokens, as `Integration.secrets` keeps them."""
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_expires_at": self.expires_at,
        }

    def as_authorized_secrets(self, *, at: float) -> dict:
        """A new sign-in's grant, with who signed in and when (never refreshed yet)."""
        return {
            **self.as_secrets(),
            "authorized_account": self.account,
            "authorized_at": at,
            "refreshed_at": None,
        }


class GrantStore(Protocol):
    """Where a saved integration keeps a delegated grant (access and refresh token).

    `refresh(update)` locks the integration's row, calls `update(secrets)` with the
    stored secrets and saves what it returns (nothing when it returns None) in the
    same transaction, so one process at a time redeems a refresh token and the
    rotated one is never lost. It returns the secrets as they are after the call.
    """

    def refresh(self, update: Callable[[dict], dict | None]) -> dict: ...


def clean_scopes(scopes) -> list[str]:
    return [s for s in scopes if s and s.lower() not in _RESERVED]


def _check_endpoints(client: DelegatedClient) -> None:
    """Explicit endpoints must be https:// (the form checks it too; this covers
    settings saved before it did), unless OAUTH_ALLOW_INSECURE_ENDPOINTS is on."""
    if client.is_microsoft or settings.OAUTH_ALLOW_INSECURE_ENDPOINTS:
        return
    for url in (client.authorization_endpoint, client.token_endpoint):
        if urlsplit(url).scheme.lower() != "https":
            raise ConfigurationError(
                "OAuth endpoint is not https://", code="oauth_endpoint_insecure"
            )


def _client(client: DelegatedClient):
    _check_endpoints(client)
    try:
        if client.is_microsoft:
            return msal.ConfidentialClientApplication(
                client.client_id,
                client_credential=client.client_secret,
                authority=f"{client.authority_host}/{client.tenant}",
                http_client=msal_http_client(),
                instance_discovery=False,
            )
        return oidc.Client(
            {
                "authorization_endpoint": client.authorization_endpoint,
                "token_endpoint": client.token_endpoint,
            },
            client.client_id,
            client_secret=client.client_secret,
            http_client=msal_http_client(),
        )
    except ValueError as exc:
        raise AuthenticationFailed(str(exc).split(". ")[0], code="tenant_not_found")
    except requests.RequestException as exc:
        raise error_from_exception(exc)


def start_flow(
    client: DelegatedClient, *, scopes: list[str], redirect_uri: str, login_hint: str
) -> dict:
    """A new auth code flow (state, PKCE verifier, nonce, auth_uri), to keep server-side."""
    app = _client(client)
    scopes = clean_scopes(scopes)
    # The callback is a GET (response_mode=query): msal advises form_post, which
    # would need a cross-site POST into the admin's session (SameSite cookies).
    warnings.filterwarnings("ignore", message="response_mode='form_post'")
    if client.is_microsoft:
        return app.initiate_auth_code_flow(
            scopes,
            redirect_uri=redirect_uri,
            login_hint=login_hint or None,
            response_mode="query",
        )
    return app.initiate_auth_code_flow(
        scope=[*scopes, "offline_access"],
        redirect_uri=redirect_uri,
        login_hint=login_hint or None,
        response_mode="query",
    )


def _account(result: dict) -> str:
    claims = result.get("id_token_claims") or {}
    for key in ("preferred_username", "upn", "email"):
        if claims.get(key):
            return str(claims[key]).lower()
    return ""


def _grant(result: dict, *, previous_refresh_token: str = "") -> Grant:
    expires_in = int(result.get("expires_in") or 3600)
    return Grant(
        access_token=result["access_token"],
        # A server that does not rotate refresh tokens keeps the old one valid.
        refresh_token=result.get("refresh_token") or previous_refresh_token,
        expires_at=time.time() + expires_in,
        account=_account(result),
    )


def _error(result: dict) -> IntegrationError:
    if result.get("error_codes"):
        return error_from_aad(result)
    error = result.get("error")
    detail = f"{error}: {(result.get('error_description') or '')[:200]}"
    if error == "invalid_grant":
        return AuthorizationRequired(detail)
    if error in ("access_denied",):
        return PermissionMissing(detail, code="authorization_denied")
    if error in ("consent_required", "interaction_required"):
        return PermissionMissing(detail, code="consent_required")
    return error_from_aad(result)


def complete_flow(client: DelegatedClient, *, flow: dict, auth_response: dict) -> Grant:
    """Check the response against the flow (state, nonce, PKCE) and redeem the code."""
    app = _client(client)
    try:
        if client.is_microsoft:
            result = app.acquire_token_by_auth_code_flow(flow, auth_response)
        else:
            result = app.obtain_token_by_auth_code_flow(flow, auth_response)
    except requests.RequestException as exc:
        raise error_from_exception(exc)
    except (ValueError, RuntimeError) as exc:
        # msal: state mismatch or nonce mismatch (a forged or replayed response).
        raise AuthenticationFailed(
            f"{type(exc).__name__}: auth response does not match the flow",
            code="authorization_state_invalid",
        )
    metrics.token_request(grant="authorization_code", result=result)
    if "access_token" not in result:
        error = _error(result)
        logger.warning("Authorization code redemption failed: %s", error.detail)
        raise error
    return _grant(result)


def refresh(client: DelegatedClient, *, refresh_token: str, scopes: list[str]) -> Grant:
    """Redeem the refresh token for a new access token (and rotated refresh token)."""
    app = _client(client)
    scopes = clean_scopes(scopes)
    try:
        if client.is_microsoft:
            result = app.acquire_token_by_refresh_token(refresh_token, scopes)
        else:
            result = app.obtain_token_by_refresh_token(
                refresh_token, scope=[*scopes, "offline_access"]
            )
    except requests.RequestException as exc:
        raise error_from_exception(exc)
    metrics.token_request(grant="refresh_token", result=result)
    if "access_token" not in result:
        error = _error(result)
        if error.code == "consent_required":
            # AADSTS65001 on a refresh: consent this grant was given with was
            # taken back. Only a new sign-in (after consent is granted again)
            # brings it back, as for a revoked grant.
            error = AuthorizationRequired(
                error.detail, code="consent_revoked", request_id=error.request_id
            )
        logger.warning("Refresh token redemption failed: %s", error.detail)
        raise error
    return _grant(result, previous_refresh_token=refresh_token)


def _is_fresh(secrets: dict) -> bool:
    """Whether `secrets` hold an access token good for EXPIRY_MARGIN more seconds."""
    expires_at = float(secrets.get("token_expires_at") or 0)
    return bool(secrets.get("access_token")) and (
        expires_at - time.time() > EXPIRY_MARGIN
    )


def fresh_grant(
    secrets: dict,
    *,
    redeem: Callable[[str], Grant],
    store: GrantStore | None = None,
    force: bool = False,
    now: float | None = None,
) -> dict:
    """`secrets` with a grant whose access token is not near expiry.

    A fresh stored token is used as it is. Otherwise `redeem(refresh_token)` (for
    instance `refresh` with the tool's client and scopes) gets a new one, under the
    store's row lock when there is a store: a process that waited for the lock uses
    the token another one just obtained, and the rotated refresh token is saved with
    the time of the refresh (`refreshed_at`: `now`, epoch seconds, default the
    current time).

    `force` redeems the refresh token even when the access token is fresh (the
    keep-alive job: a refresh token unused for 90 days lapses), unless another
    process redeemed it while we waited for the lock (the stored refresh token is
    no longer the one in `secrets`).
    Raises `AuthorizationRequired` when no grant is stored.
    """
    if _is_fresh(secrets) and not force:
        return secrets
    if not secrets.get("refresh_token") and not (store and secrets.get("access_token")):
        raise AuthorizationRequired(
            "no delegated grant stored", code="authorization_missing"
        )

    def update(current: dict) -> dict | None:
        if _is_fresh(current) and (
            not force or current.get("refresh_token") != secrets.get("refresh_token")
        ):
            return None  # another process refreshed while we waited for the lock
        if not current.get("refresh_token"):
            raise AuthorizationRequired(
                "no delegated grant stored", code="authorization_missing"
            )
        return {
            **redeem(current["refresh_token"]).as_secrets(),
            "refreshed_at": time.time() if now is None else now,
        }

    if store is not None:
        stored = store.refresh(update)
    else:
        stored = {**secrets, **(update(secrets) or {})}
    return {**secrets, **{key: stored.get(key) for key in GRANT_KEYS}}
