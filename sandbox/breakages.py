"""What the control API can break on purpose, and what Microsoft answers then.

``GET /_sandbox/seed`` carries this list under ``breakages`` so that a test or a
person finds, next to the seed values, how to make a tool fail the way it fails
months after it was set up. sandbox/README.md ("Breaking things on purpose")
says the same in prose.
"""

TENANT = "/_sandbox/tenants/{tenant}"
APP = TENANT + "/apps/{client_id}"


def described(tenant_id: str, client_id: str) -> list:
    """The breakages, with the seeded tenant and app in an ``example`` path."""
    entries = []
    for entry in BREAKAGES:
        entry = dict(entry)
        entry["example"] = entry["path"].format(
            tenant=tenant_id,
            client_id=client_id,
            secret_id="{secret_id}",
            thumbprint="{thumbprint}",
            upn="{upn}",
        )
        entries.append(entry)
    return entries


BREAKAGES = [
    {
        "name": "secret_expiry",
        "method": "PATCH",
        "path": APP + "/secrets/{secret_id}",
        "body": {"expires_at": "ISO 8601 date and time, or null (never)"},
        "effect": "Once the sandbox clock passes expires_at, the token endpoint "
        "refuses the secret (any grant).",
        "errors": ["AADSTS7000222 invalid_client (401)"],
    },
    {
        "name": "certificate_expiry",
        "method": "PATCH",
        "path": APP + "/certificates/{thumbprint}",
        "body": {
            "expires_at": "ISO 8601 date and time, or null (the certificate's "
            "notAfter, the default)"
        },
        "effect": "Once the sandbox clock passes expires_at, a client assertion "
        "signed with that certificate's key is refused ('The key used is "
        "expired.'). thumbprint: SHA-1 or SHA-256, hex.",
        "errors": ["AADSTS700027 invalid_client (401)"],
    },
    {
        "name": "revoke_consent",
        "method": "POST",
        "path": APP + "/revoke_consent",
        "body": None,
        "effect": "admin_consent becomes false (PATCH the app with "
        '{"admin_consent": true} to grant it again). Delegated: code and refresh '
        "token redemption and the sign-in page answer 65001. App-only: client "
        "credentials still succeed but the token carries no roles, so Graph and "
        "SMTP refuse it. Tokens issued before keep their roles until they expire.",
        "errors": [
            "AADSTS65001 invalid_grant (400) (delegated)",
            "Graph 403 ErrorAccessDenied (app-only sendMail and reads)",
            "SMTP 535 5.7.3 Authentication unsuccessful (app-only XOAUTH2)",
            "IMAP NO AUTHENTICATE failed. (app-only XOAUTH2)",
        ],
    },
    {
        "name": "change_password",
        "method": "PATCH",
        "path": TENANT + "/users/{upn}",
        "body": {"password": "the new password"},
        "effect": "Entra ID revokes the user's refresh tokens: every refresh token "
        "and authorization code issued before answers 50173. Access tokens stay "
        "valid until they expire. Signing in again with the new password works.",
        "errors": ["AADSTS50173 invalid_grant (400)"],
    },
    {
        "name": "disable_account",
        "method": "PATCH",
        "path": TENANT + "/users/{upn}",
        "body": {"account_enabled": False},
        "effect": "The sign-in page shows AADSTS50057 and redirects nowhere; "
        "refresh tokens and codes answer 50057; the user's own access is refused "
        "at once: Graph 401 for delegated tokens, SMTP and IMAP sign-in (OAuth "
        "or password) refused. App-only access to the mailbox goes on, as for a "
        "shared mailbox (whose account is disabled too).",
        "errors": [
            "AADSTS50057 invalid_grant (400)",
            "Graph 401 InvalidAuthenticationToken (delegated)",
            "SMTP 535 5.7.3 Authentication unsuccessful",
            "IMAP NO AUTHENTICATE failed. / NO LOGIN failed.",
        ],
    },
    {
        "name": "require_mfa",
        "method": "PATCH",
        "path": TENANT + "/users/{upn}",
        "body": {"mfa_required": True},
        "effect": "Refresh tokens and codes obtained without MFA answer 50076 "
        "(suberror basic_action). The sandbox has no second factor: signing in "
        "again on its page counts as MFA done, and that grant refreshes.",
        "errors": ["AADSTS50076 invalid_grant (400)"],
    },
    {
        "name": "remove_application_permission",
        "method": "PATCH",
        "path": APP,
        "body": {"application_permissions": ["the permissions that remain"]},
        "effect": "New app-only tokens lack the role; a token issued before the "
        "change keeps its roles until it expires (as in Entra ID), so the error "
        "shows on the first new token.",
        "errors": [
            "Graph 403 ErrorAccessDenied (Mail.Send, Mail.Read...)",
            "Graph 403 Authorization_RequestDenied (Application.Read.All)",
            "SMTP 535 5.7.3 Authentication unsuccessful (SMTP.SendAsApp)",
            "IMAP NO AUTHENTICATE failed. (IMAP.AccessAsApp)",
        ],
    },
    {
        "name": "remove_mailbox_permission",
        "method": "PATCH",
        "path": APP,
        "body": {"mailbox_permissions": ["the mailboxes that remain"]},
        "effect": "Exchange checks mailbox permissions when a session signs in, "
        "so the change applies to the next SMTP or IMAP AUTH at once, whatever "
        "the token.",
        "errors": [
            "SMTP 535 5.7.3 Authentication unsuccessful",
            "IMAP NO AUTHENTICATE failed.",
        ],
    },
    {
        "name": "revoke_refresh_tokens",
        "method": "POST",
        "path": TENANT + "/users/{upn}/revoke",
        "body": None,
        "effect": "As an admin's revokeSignInSessions: refresh tokens and codes "
        "issued before answer 50173.",
        "errors": ["AADSTS50173 invalid_grant (400)"],
    },
    {
        "name": "refresh_inactivity",
        "method": "POST",
        "path": "/_sandbox/clock",
        "body": {"advance_seconds": "more than the tenant's refresh_token_inactivity"},
        "effect": "A refresh token unused for longer than the tenant's "
        "refresh_token_inactivity (90 days by default) answers 700082. Tokens "
        "issued after the clock moved are valid on the sandbox clock.",
        "errors": ["AADSTS700082 invalid_grant (400)"],
    },
]
