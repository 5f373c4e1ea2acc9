"""Microsoft Graph: reading app registrations (their secrets and certificates).

``GET /v1.0/applications(appId='{client id}')``, ``GET /v1.0/applications/{id}``
and ``GET /v1.0/applications?$filter=appId eq '{client id}'``, with ``$select``.
The product reads ``passwordCredentials`` and ``keyCredentials`` to learn when
its own secret or certificate expires.

https://learn.microsoft.com/en-us/graph/api/application-get
https://learn.microsoft.com/en-us/graph/api/application-list
https://learn.microsoft.com/en-us/graph/api/resources/passwordcredential
https://learn.microsoft.com/en-us/graph/api/resources/keycredential
"""

import base64
import datetime
import re

from aiohttp import web

from sandbox.errors import GraphError
from sandbox.graph import _answer, _caller

# Who may read any app registration, and who only the ones it owns. The sandbox
# counts an app as an owner of its own registration.
# https://learn.microsoft.com/en-us/graph/api/application-get#permissions
READ_ALL = {
    "Application.Read.All",
    "Application.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
}
READ_OWNED = {"Application.ReadWrite.OwnedBy"}
DELEGATED_READ = {"Application.Read.All", "Application.ReadWrite.All"}
DELEGATED_READ |= {"Directory.Read.All"}

# The properties the sandbox answers with, in Graph's order.
PROPERTIES = (
    "id",
    "deletedDateTime",
    "appId",
    "createdDateTime",
    "displayName",
    "publisherDomain",
    "signInAudience",
    "keyCredentials",
    "passwordCredentials",
)
_CANONICAL = {name.lower(): name for name in PROPERTIES}
_APP_ID_FILTER = re.compile(r"\s*appId\s+eq\s+'(?P<value>[^']*)'\s*", re.IGNORECASE)
_APP_ID_KEY = re.compile(r"^appId='(?P<value>[^']*)'$", re.IGNORECASE)
CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#applications"


def _time(ts: float | None) -> str | None:
    if not ts:
        return None
    moment = datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def password_credential(secret) -> dict:
    """A client secret as Graph's passwordCredential (never its value)."""
    return {
        "customKeyIdentifier": None,
        "displayName": secret.display_name or None,
        "endDateTime": _time(secret.expires_at),
        "hint": secret.hint,
        "keyId": secret.secret_id,
        "secretText": None,
        "startDateTime": _time(secret.start_at),
    }


def key_credential(cert, with_key: bool) -> dict:
    """A certificate as Graph's keyCredential; ``key`` (the DER, base64) only on
    a single application read with $select=keyCredentials, as Graph does."""
    return {
        "customKeyIdentifier": base64.b64encode(cert.sha1).decode(),
        "displayName": cert.display_name or None,
        "endDateTime": _time(cert.expires_at),
        "key": base64.b64encode(cert.der).decode() if with_key and cert.der else None,
        "keyId": cert.key_id,
        "startDateTime": _time(cert.not_before),
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
    }


def _resource(tenant, app, select, single: bool) -> dict:
    full = {
        "id": app.object_id,
        "deletedDateTime": None,
        "appId": app.client_id,
        "createdDateTime": _time(app.created_at),
        "displayName": app.display_name,
        "publisherDomain": tenant.domains[0] if tenant.domains else None,
        "signInAudience": "AzureADMyOrg",
        "keyCredentials": [
            key_credential(c, single and select is not None) for c in app.certificates
        ],
        "passwordCredentials": [password_credential(s) for s in app.secrets],
    }
    names = PROPERTIES if select is None else select
    return {name: full[name] for name in names}


def _select(query) -> list | None:
    text = _option(query, "select")
    if text is None:
        return None
    names = []
    for part in text.split(","):
        name = part.strip()
        canonical = _CANONICAL.get(name.lower())
        if canonical is None:
            raise GraphError(
                400,
                "Request_BadRequest",
                f"Could not find a property named '{name}' on type "
                "'microsoft.graph.application'.",
            )
        if canonical not in names:
            names.append(canonical)
    return names


def _option(query, name: str) -> str | None:
    for key, value in query.items():
        if key.lower() in (name, f"${name}"):
            return value
    return None


def _readable(caller, app) -> bool:
    """Whether the caller's token lets it read ``app``'s registration."""
    granted = set(caller.permissions)
    if caller.delegated:
        return bool(granted & DELEGATED_READ)
    if granted & READ_ALL:
        return True
    return bool(granted & READ_OWNED) and app.client_id == caller.app.client_id


def _denied() -> GraphError:
    return GraphError(403, "Authorization_RequestDenied")


def _may_read_some(caller) -> bool:
    granted = set(caller.permissions)
    if caller.delegated:
        return bool(granted & DELEGATED_READ)
    return bool(granted & (READ_ALL | READ_OWNED))


def _find(tenant, key: str, by_app_id: bool):
    for app in tenant.apps.values():
        if by_app_id and app.client_id == key.lower():
            return app
        if not by_app_id and app.object_id == key.lower():
            return app
    return None


async def get_application(request: web.Request) -> web.StreamResponse:
    """GET /v1.0/applications(appId='...') and /v1.0/applications/{id}."""
    return await _answer(request, _get_application)


async def _get_application(ctx, request: web.Request) -> web.StreamResponse:
    state = ctx.state
    caller = _caller(ctx, request)
    if not _may_read_some(caller):
        raise _denied()
    key = request.match_info.get("key")
    by_app_id = key is not None
    if by_app_id:
        match = _APP_ID_KEY.match(key)
        if match is None:
            raise GraphError(
                400, "Request_BadRequest", f"Invalid object identifier '{key}'."
            )
        key = match["value"]
    else:
        key = request.match_info["object_id"]
    select = _select(request.query)
    with state.lock:
        app = _find(caller.tenant, key, by_app_id)
        if app is None:
            raise GraphError(404, "Request_ResourceNotFound", id=key)
        if not _readable(caller, app):
            raise _denied()
        body = _resource(caller.tenant, app, select, single=True)
    context = CONTEXT
    if select is not None:
        context += "(" + ",".join(select) + ")"
    return web.json_response({"@odata.context": context + "/$entity", **body})


async def list_applications(request: web.Request) -> web.StreamResponse:
    """GET /v1.0/applications[?$filter=appId eq '...'][&$select=...]."""
    return await _answer(request, _list_applications)


async def _list_applications(ctx, request: web.Request) -> web.StreamResponse:
    state = ctx.state
    caller = _caller(ctx, request)
    if not _may_read_some(caller):
        raise _denied()
    select = _select(request.query)
    wanted = None
    text = _option(request.query, "filter")
    if text is not None:
        match = _APP_ID_FILTER.fullmatch(text)
        if match is None:
            raise GraphError(
                400,
                "Request_UnsupportedQuery",
                "The sandbox filters applications only with appId eq '...'.",
            )
        wanted = match["value"].lower()
    with state.lock:
        apps = [
            app
            for app in caller.tenant.apps.values()
            if (wanted is None or app.client_id == wanted) and _readable(caller, app)
        ]
        value = [_resource(caller.tenant, app, select, single=False) for app in apps]
    context = CONTEXT
    if select is not None:
        context += "(" + ",".join(select) + ")"
    return web.json_response({"@odata.context": context, "value": value})
