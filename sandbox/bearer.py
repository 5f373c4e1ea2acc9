"""Checking bearer tokens presented to Graph and to SMTP AUTH XOAUTH2."""

from dataclasses import dataclass

from sandbox.tokens import TokenError

# The sandbox's wording for a delegated token of a disabled account.
DISABLED = "Access token validation failure. The user account is disabled."


@dataclass
class Caller:
    """Who a valid access token speaks for."""

    claims: dict
    tenant: object
    app: object
    user: object  # None for app-only tokens

    @property
    def delegated(self) -> bool:
        return self.user is not None

    @property
    def permissions(self) -> list:
        if self.delegated:
            return self.claims.get("scp", "").split()
        return self.claims.get("roles", [])

    def authenticated_as(self) -> dict:
        if self.delegated:
            return {
                "kind": "user",
                "client_id": self.app.client_id,
                "user": self.user.user_principal_name,
            }
        return {"kind": "app", "client_id": self.app.client_id}


def check_bearer(ctx, token: str, audience: str) -> Caller:
    """The caller behind ``token``; raises TokenError when it is not acceptable."""
    if not token:
        raise TokenError("Access token is empty.")
    state = ctx.state
    claims = ctx.signer.verify(token, audience=audience, now=state.clock.now())
    with state.lock:
        tenant = state.tenants.get(claims.get("tid"))
        app = tenant.apps.get(claims.get("appid")) if tenant else None
        if app is None:
            raise TokenError("Access token validation failure.")
        user = None
        if "scp" in claims:
            user = state.user(tenant, claims.get("oid"))
            if user is None:
                raise TokenError("Access token validation failure.")
            if not user.account_enabled:
                # Exchange Online refuses a disabled user's own access at once
                # (continuous access evaluation), not when the token expires.
                raise TokenError(DISABLED)
    return Caller(claims, tenant, app, user)
