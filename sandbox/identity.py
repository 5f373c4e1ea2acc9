"""Entra ID v2.0 endpoints: OpenID discovery, keys and the token endpoint.

https://learn.microsoft.com/en-us/entra/identity-platform/v2-protocols-oidc
https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow
https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow
"""

import asyncio
import base64
import contextlib
import datetime
import hashlib
import json
import re
import socket
import struct
import time
import uuid
from urllib.parse import unquote_plus, urlparse

import jwt
from aiohttp import web

from sandbox import scopes
from sandbox.errors import AADError
from sandbox.keys import CTX
from sandbox.state import iso
from sandbox.tokens import b64url, b64url_decode, peek_header

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRANT_TYPES = ("client_credentials", "authorization_code", "refresh_token")
CODE_LIFETIME = 600
ID_TOKEN_LIFETIME = 3600
TOKEN_PATH = re.compile(r"^/([^/]+)/oauth2/v2\.0/token$")


def base_url(request: web.Request) -> str:
    return f"https://{request.host}"


def issuer(request: web.Request, tenant_id: str) -> str:
    return f"{base_url(request)}/{tenant_id}/v2.0"


def service_principal_id(tenant_id: str, client_id: str) -> str:
    """A stable object ID for the app's service principal in a tenant."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{tenant_id}:{client_id}"))


def pairwise_sub(client_id: str, user_oid: str) -> str:
    digest = hashlib.sha256(f"{client_id}:{user_oid}".encode()).digest()
    return b64url(digest)[:43]


def tenant_or_error(ctx, key: str):
    tenant = ctx.state.tenant(key)
    if tenant is None:
        raise AADError(90002, tenant=key)
    return tenant


# -- discovery ---------------------------------------------------------------


async def openid_configuration(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        tenant = tenant_or_error(ctx, request.match_info["tenant"])
    except AADError as error:
        return error.response(request)
    root = f"{base_url(request)}/{tenant.tenant_id}"
    return web.json_response(
        {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": [
                "code",
                "id_token",
                "code id_token",
                "id_token token",
            ],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{root}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base_url(request)}/oidc/userinfo",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "acr",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "at_hash",
                "c_hash",
                "email",
            ],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }
    )


async def keys(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        tenant_or_error(ctx, request.match_info["tenant"])
    except AADError as error:
        return error.response(request)
    return web.json_response(ctx.signer.jwks())


# -- token endpoint ---------------------------------------------------------------


async def token(request: web.Request) -> web.Response:
    """POST /{tenant}/oauth2/v2.0/token for the three grants the product uses."""
    ctx = request.app[CTX]
    fault = ctx.state.take_fault("token")
    if fault:
        response = await apply_fault(request, fault)
        if response is not None:
            return response
    form = await request.post()
    try:
        body = handle_token(ctx, request, form)
    except AADError as error:
        return error.response(request)
    return web.json_response(
        body, headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
    )


async def apply_fault(request: web.Request, fault: dict):
    """Delay, drop or answer an injected token-endpoint fault."""
    if fault.get("delay"):
        await asyncio.sleep(float(fault["delay"]))
    if fault.get("drop") or fault.get("reset"):
        drop_connection(request, reset=bool(fault.get("reset")))
        return web.Response(status=500)
    if not fault.get("status"):
        return None
    status = int(fault["status"])
    code = int(fault.get("error_code") or (50196 if status == 429 else 90033))
    error = AADError(code, status=status)
    headers = {}
    if fault.get("retry_after") is not None:
        headers["Retry-After"] = str(fault["retry_after"])
    return error.response(request, headers=headers)


def reset_transport(transport) -> None:
    """Abort a connection with a TCP reset (RST), so that the client reads
    ECONNRESET ("connection reset by peer") rather than an orderly close."""
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            linger = struct.pack("ii", 1, 0)  # on, 0 seconds: close() sends RST
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    transport.abort()


def drop_connection(request: web.Request, *, reset: bool = False) -> None:
    """Close the TCP connection without an answer, as a broken proxy would;
    with ``reset``, by a TCP reset."""
    if reset:
        reset_transport(request.transport)
    elif request.transport is not None:
        request.transport.abort()
    raise asyncio.CancelledError()


def handle_token(ctx, request: web.Request, form) -> dict:
    state = ctx.state
    tenant = tenant_or_error(ctx, request.match_info["tenant"])
    grant_type = form.get("grant_type")
    if not grant_type:
        raise AADError(900144, field="grant_type")
    if grant_type not in GRANT_TYPES:
        raise AADError(70003, grant_type=grant_type)
    state.count("token_requests", grant_type)
    app, appidacr = authenticate_client(ctx, request, form, tenant)
    if grant_type == "client_credentials":
        return client_credentials(ctx, request, form, tenant, app, appidacr)
    if grant_type == "authorization_code":
        return redeem_code(ctx, request, form, tenant, app, appidacr)
    return redeem_refresh_token(ctx, request, form, tenant, app, appidacr)


def authenticate_client(ctx, request, form, tenant) -> tuple:
    """(app, appidacr) after checking the client's secret or assertion."""
    client_id = form.get("client_id")
    secret = form.get("client_secret")
    assertion = form.get("client_assertion")
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(header[6:].strip()).decode()
        except ValueError:
            decoded = ""
        basic_id, _, basic_secret = decoded.partition(":")
        client_id = client_id or unquote_plus(basic_id)
        secret = secret or unquote_plus(basic_secret)
    if not client_id and assertion:
        client_id = _unverified_claims(assertion).get("iss")
    if not client_id:
        raise AADError(900144, field="client_id")
    app = ctx.state.app(tenant, client_id)
    if app is None:
        raise AADError(700016, client_id=client_id, tenant=request.match_info["tenant"])
    if assertion:
        if form.get("client_assertion_type") != JWT_BEARER:
            raise AADError(900144, field="client_assertion_type")
        check_assertion(ctx, request, assertion, tenant, app)
        return app, "2"
    if secret:
        now = ctx.state.clock.now()
        for stored in app.secrets:
            if stored.value == secret:
                if stored.expires_at is not None and stored.expires_at <= now:
                    raise AADError(7000222, client_id=app.client_id)
                return app, "1"
        raise AADError(7000215, client_id=app.client_id)
    raise AADError(7000218)


def _unverified_claims(assertion: str) -> dict:
    try:
        return json.loads(b64url_decode(assertion.split(".")[1]))
    except (ValueError, IndexError):
        return {}


def check_assertion(ctx, request, assertion: str, tenant, app) -> None:
    """Check a certificate-signed client assertion (RFC 7523).

    https://learn.microsoft.com/en-us/entra/identity-platform/certificate-credentials
    """
    header = peek_header(assertion)
    if not header:
        raise AADError(50027)
    try:
        x5t = b64url_decode(header["x5t"]) if header.get("x5t") else None
        x5t_s256 = b64url_decode(header["x5t#S256"]) if header.get("x5t#S256") else None
    except ValueError as exc:
        raise AADError(50027) from exc
    cert = app.certificate(x5t, x5t_s256)
    if cert is not None and _expired(cert, ctx.state.clock.now()):
        raise AADError(
            700027,
            description="The certificate with identifier used to sign the client "
            "assertion is expired on application. [Reason - The key used is "
            f"expired., Thumbprint of key used by client: '{cert.thumbprint}', "
            f"Found key 'Start={_key_date(cert.not_before)}, "
            f"End={_key_date(cert.expires_at)}', Please visit the Azure Portal, "
            "Graph Explorer or directly use MS Graph to see configured keys for app "
            f"Id '{app.client_id}'.]",
        )
    if cert is None:
        shown = (x5t_s256 or x5t or b"").hex().upper()
        raise AADError(
            700027,
            detail="The certificate with identifier used to sign the client "
            "assertion is not registered on application. [Reason - The key was not "
            f"found., Thumbprint of key used by client: '{shown}']",
        )
    try:
        claims = jwt.decode(
            assertion,
            cert.public_key,
            algorithms=["RS256", "PS256"],
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
            },
        )
    except jwt.InvalidSignatureError as exc:
        raise AADError(700027, detail="Signature verification failed.") from exc
    except jwt.PyJWTError as exc:
        raise AADError(50027) from exc
    if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
        raise AADError(700021)
    audiences = claims.get("aud")
    audiences = audiences if isinstance(audiences, list) else [audiences]
    if not any(_is_token_endpoint(ctx, a, tenant) for a in audiences):
        raise AADError(
            700027,
            detail=f"The audience '{claims.get('aud')}' is not the token endpoint.",
        )
    # The client signs with the wall clock, so its assertion's lifetime is checked
    # against it, not the sandbox clock (which tests move forward by days).
    now = time.time()
    if not isinstance(claims.get("exp"), (int, float)) or now > claims["exp"] + 300:
        raise AADError(700024)
    if isinstance(claims.get("nbf"), (int, float)) and claims["nbf"] > now + 300:
        raise AADError(700024)


def _expired(cert, now: float) -> bool:
    return cert.expires_at is not None and cert.expires_at <= now


def _key_date(ts: float | None) -> str:
    """A key's date as Entra ID writes it in 700027 (MM/dd/yyyy HH:mm:ss, UTC)."""
    if not ts:
        return ""
    moment = datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
    return moment.strftime("%m/%d/%Y %H:%M:%S")


def _is_token_endpoint(ctx, audience, tenant) -> bool:
    if not isinstance(audience, str):
        return False
    parsed = urlparse(audience)
    match = TOKEN_PATH.match(parsed.path)
    if parsed.scheme != "https" or not match:
        return False
    return ctx.state.tenant(match.group(1)) is tenant


# -- grants ------------------------------------------------------------------------


def access_claims(ctx, request, tenant, app, audience: str, appidacr: str) -> dict:
    now = int(ctx.state.clock.now())
    return {
        "aud": audience,
        "iss": issuer(request, tenant.tenant_id),
        "iat": now,
        "nbf": now,
        "exp": now + int(tenant.access_token_lifetime),
        "tid": tenant.tenant_id,
        "appid": app.client_id,
        "azp": app.client_id,
        "appidacr": appidacr,
        "app_displayname": app.display_name,
        "ver": "1.0",
    }


def client_credentials(ctx, request, form, tenant, app, appidacr) -> dict:
    requested = scopes.parse(form.get("scope"))
    if not requested.default:
        raise AADError(1002012, scope=form.get("scope"))
    claims = access_claims(ctx, request, tenant, app, requested.audience, appidacr)
    sp_id = service_principal_id(tenant.tenant_id, app.client_id)
    claims.update({"oid": sp_id, "sub": sp_id, "idtyp": "app"})
    roles = scopes.application_roles(requested, app)
    if roles:  # Entra ID leaves the claim out when nothing is granted
        claims["roles"] = roles
    lifetime = int(tenant.access_token_lifetime)
    return {
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": ctx.signer.issue(claims),
    }


def _grant_for(store: dict, key: str, tenant, app, *, spent: str, spent_error: int):
    """The grant `key` names in `store` (codes or refresh tokens), if this client of
    this tenant may redeem it; AADError otherwise. Call with the state's lock held.

    `spent` is the grant's flag set once redeemed; a spent grant is `spent_error`.
    """
    grant = store.get(key)
    if grant is None or grant["tenant_id"] != tenant.tenant_id:
        raise AADError(70008)
    if grant["client_id"] != app.client_id:
        raise AADError(70000)
    if grant[spent]:
        raise AADError(spent_error)
    return grant


def _grant_user(state, tenant, grant, *, issued: float):
    """The grant's user; AADError if deleted, or if their tokens were revoked after
    the grant was issued. The error dates the grant at `issued` (for a refresh
    token, when its chain was first issued)."""
    user = state.user(tenant, grant["user"])
    if user is None:
        raise AADError(70008)
    if not user.account_enabled:
        raise AADError(50057)
    if user.tokens_valid_from > grant["issued_at"]:
        raise AADError(
            50173, issued=iso(issued), valid_from=iso(user.tokens_valid_from)
        )
    return user


# The application ids Entra ID names resources by in AADSTS50076.
RESOURCE_APP_IDS = {
    scopes.GRAPH: "00000003-0000-0000-c000-000000000000",
    scopes.EXCHANGE: "00000002-0000-0ff1-ce00-000000000000",
}


def mfa_error(audience: str) -> AADError:
    """AADSTS50076: MFA is now required and the grant was obtained without it."""
    return AADError(
        50076,
        resource=RESOURCE_APP_IDS.get(audience, audience),
        extra={"suberror": "basic_action"},
    )


def redeem_code(ctx, request, form, tenant, app, appidacr) -> dict:
    state = ctx.state
    code = form.get("code")
    if not code:
        raise AADError(900144, field="code")
    with state.lock:
        grant = _grant_for(
            state.codes, code, tenant, app, spent="redeemed", spent_error=54005
        )
        if state.clock.now() > grant["issued_at"] + CODE_LIFETIME:
            raise AADError(70008)
        redirect_uri = form.get("redirect_uri")
        if redirect_uri != grant["redirect_uri"] or redirect_uri not in (
            app.redirect_uris
        ):
            raise AADError(50011, redirect_uri=redirect_uri, client_id=app.client_id)
        challenge = grant.get("code_challenge")
        if challenge:
            verifier = form.get("code_verifier") or ""
            if grant.get("code_challenge_method", "plain").upper() == "S256":
                computed = b64url(hashlib.sha256(verifier.encode()).digest())
            else:
                computed = verifier
            if computed != challenge:
                raise AADError(501481)
        grant["redeemed"] = True
        user = _grant_user(state, tenant, grant, issued=grant["issued_at"])
    requested = scopes.parse(grant["scope"])
    if user.mfa_required and not grant.get("mfa"):
        raise mfa_error(requested.audience)
    return delegated_response(
        ctx,
        request,
        form,
        tenant,
        app,
        user,
        requested,
        appidacr,
        nonce=grant.get("nonce"),
        mfa=bool(grant.get("mfa")),
    )


def redeem_refresh_token(ctx, request, form, tenant, app, appidacr) -> dict:
    state = ctx.state
    token = form.get("refresh_token")
    if not token:
        raise AADError(900144, field="refresh_token")
    with state.lock:
        grant = _grant_for(
            state.refresh_tokens, token, tenant, app, spent="used", spent_error=70008
        )
        user = _grant_user(state, tenant, grant, issued=grant["first_issued_at"])
        now = state.clock.now()
        inactive = now - grant["last_used"]
        if inactive > float(tenant.refresh_token_inactivity):
            raise AADError(
                700082,
                issued=iso(grant["first_issued_at"]),
                inactive=_duration(inactive),
            )
        requested = scopes.parse(form.get("scope") or grant["scope"])
        if user.mfa_required and not grant.get("mfa"):
            raise mfa_error(requested.audience)
        body = delegated_response(
            ctx,
            request,
            form,
            tenant,
            app,
            user,
            requested,
            appidacr,
            first_issued_at=grant["first_issued_at"],
            mfa=bool(grant.get("mfa")),
        )
        grant["used"] = True
        state.count("refresh_redemptions")
    return body


def _duration(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}.{hours:02d}:{minutes:02d}:{secs:02d}"


def delegated_response(
    ctx,
    request,
    form,
    tenant,
    app,
    user,
    requested,
    appidacr,
    *,
    nonce=None,
    first_issued_at=None,
    mfa=False,
) -> dict:
    """Access, refresh and ID token for a signed-in user, as msal expects."""
    granted = scopes.delegated_scopes(requested, app)
    claims = access_claims(ctx, request, tenant, app, requested.audience, appidacr)
    claims.update(
        {
            "oid": user.object_id,
            "sub": pairwise_sub(app.client_id, user.object_id),
            "scp": " ".join(granted),
            "upn": user.user_principal_name,
            "unique_name": user.user_principal_name,
            "preferred_username": user.user_principal_name,
            "name": user.display_name,
            "idtyp": "user",
        }
    )
    lifetime = int(tenant.access_token_lifetime)
    body = {
        "token_type": "Bearer",
        "scope": " ".join(
            scopes.full_names(requested.audience, granted) + requested.oidc
        ),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": ctx.signer.issue(claims),
    }
    if "offline_access" in requested.oidc:
        grant = {
            "tenant_id": tenant.tenant_id,
            "client_id": app.client_id,
            "user": user.user_principal_name.lower(),
            "scope": requested.raw,
            # Whether the user did MFA when signing in (carried by the chain).
            "mfa": mfa,
        }
        if first_issued_at is not None:
            grant["first_issued_at"] = first_issued_at
        body["refresh_token"] = ctx.state.new_refresh_token(grant)
    if "openid" in requested.oidc:
        now = int(ctx.state.clock.now())
        id_claims = {
            "aud": app.client_id,
            "iss": issuer(request, tenant.tenant_id),
            "iat": now,
            "nbf": now,
            "exp": now + ID_TOKEN_LIFETIME,
            "name": user.display_name,
            "oid": user.object_id,
            "preferred_username": user.user_principal_name,
            "sub": pairwise_sub(app.client_id, user.object_id),
            "tid": tenant.tenant_id,
            "ver": "2.0",
        }
        if nonce:
            id_claims["nonce"] = nonce
        if "email" in requested.oidc:
            id_claims["email"] = user.user_principal_name
        body["id_token"] = ctx.signer.issue(id_claims)
    if form.get("client_info") in ("1", "true"):
        info = {"uid": user.object_id, "utid": tenant.tenant_id}
        body["client_info"] = b64url(json.dumps(info).encode())
    return body
