"""Scopes, resources and the permissions that end up in tokens.

The v2.0 endpoint takes scopes of one resource per request, written as
``{resource}/{permission}`` (``/.default`` for everything granted), plus the
OpenID Connect scopes.
https://learn.microsoft.com/en-us/entra/identity-platform/scopes-oidc
"""

from dataclasses import dataclass

from sandbox.errors import AADError

GRAPH = "https://graph.microsoft.com"
EXCHANGE = "https://outlook.office365.com"
OIDC_SCOPES = ("openid", "profile", "offline_access", "email")

# Scope prefix -> audience of the issued token.
RESOURCES = {
    "https://graph.microsoft.com": GRAPH,
    "00000003-0000-0000-c000-000000000000": GRAPH,
    "https://outlook.office365.com": EXCHANGE,
    "https://outlook.office.com": EXCHANGE,
    "00000002-0000-0ff1-ce00-000000000000": EXCHANGE,
}

# Audience -> (application permissions, delegated permissions) it knows.
PERMISSIONS = {
    GRAPH: (
        {
            "Mail.Send",
            "User.Read.All",
            "Mail.ReadWrite",
            "Mail.Read",
            "Mail.ReadBasic.All",
            # Reading app registrations (GET /applications).
            "Application.Read.All",
            "Application.ReadWrite.All",
            "Application.ReadWrite.OwnedBy",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        },
        {
            "Application.Read.All",
            "Application.ReadWrite.All",
            "Directory.Read.All",
            "Mail.Send",
            "User.Read",
            "Mail.ReadWrite",
            "Mail.Send.Shared",
            "Mail.Read",
            "Mail.ReadBasic",
        },
    ),
    EXCHANGE: (
        {"SMTP.SendAsApp", "IMAP.AccessAsApp", "POP.AccessAsApp"},
        {"SMTP.Send", "IMAP.AccessAsUser.All", "POP.AccessAsUser.All"},
    ),
}


@dataclass
class ScopeRequest:
    audience: str
    permissions: list  # empty with ``default``
    default: bool
    oidc: list
    raw: str


def parse(scope: str) -> ScopeRequest:
    """Split a ``scope`` parameter; raises AADError 70011 when not valid."""
    items = [s for s in (scope or "").split() if s]
    if not items:
        raise AADError(70011, scope="")
    oidc = [s for s in items if s in OIDC_SCOPES]
    audience = None
    permissions = []
    default = False
    for item in items:
        if item in OIDC_SCOPES:
            continue
        if "/" in item:
            prefix, _, name = item.rpartition("/")
            item_audience = RESOURCES.get(prefix.lower().rstrip("/"))
        else:
            name, item_audience = item, GRAPH  # bare names mean Graph
        if item_audience is None:
            raise AADError(70011, scope=item)
        if audience is not None and item_audience != audience:
            raise AADError(70011, scope=scope)
        audience = item_audience
        if name == ".default":
            default = True
            continue
        application, delegated = PERMISSIONS[audience]
        if name not in delegated and name not in application:
            raise AADError(70011, scope=item)
        permissions.append(name)
    if default and permissions:
        raise AADError(70011, scope=scope)
    return ScopeRequest(audience or GRAPH, permissions, default, oidc, scope)


def application_roles(request: ScopeRequest, app) -> list:
    """The app-only roles granted for the requested resource (maybe none)."""
    if not app.admin_consent:
        return []
    known = PERMISSIONS[request.audience][0]
    return [p for p in app.application_permissions if p in known]


def delegated_scopes(request: ScopeRequest, app) -> list:
    """The delegated permissions to put in ``scp``; raises AADError 65001."""
    known = PERMISSIONS[request.audience][1]
    granted = [p for p in app.delegated_permissions if p in known]
    if request.default:
        wanted = granted
    else:
        wanted = list(request.permissions)
    # OpenID Connect scopes need no grant of their own here, as in most tenants.
    missing = [p for p in wanted if p not in granted]
    if missing or not app.admin_consent:
        raise AADError(65001, client_id=app.client_id, app_name=app.display_name)
    if not wanted and "User.Read" in granted:
        wanted = ["User.Read"]  # sign-in only: Entra ID grants Graph User.Read
    return wanted


def full_names(audience: str, permissions: list) -> list:
    """Permissions as the ``scope`` of a token response writes them."""
    prefix = GRAPH if audience == GRAPH else "https://outlook.office.com"
    return [f"{prefix}/{p}" for p in permissions]
