"""The fixed values of the seeded tenant, app and mailboxes.

They are documented in README.md so that a person can paste them into the
product's forms; change both together.
"""

TENANT_ID = "b5a0c1e2-3f47-4d8a-9c6b-2e1f0a9d8c7b"
DOMAIN = "contoso.onmicrosoft.com"
CLIENT_ID = "4e9d2a71-8c3b-4f05-a6d2-91b7e0c3f58a"
CLIENT_SECRET = "Sbx8Q~sandbox.client-secret.value_0123456789"
CLIENT_SECRET_ID = "0f6c3d2e-1b4a-4c5d-8e9f-a0b1c2d3e4f5"
APP_DISPLAY_NAME = "Sandbox notifications"
SENDER = "notifications@contoso.onmicrosoft.com"
RECIPIENT = "security-team@contoso.onmicrosoft.com"
USER = "alex@contoso.onmicrosoft.com"
PASSWORD = "Sandbox-Passw0rd!"
REDIRECT_URIS = [
    "http://127.0.0.1:8000/integrations/oauth/callback/",
    "http://localhost:8000/integrations/oauth/callback/",
]
APPLICATION_PERMISSIONS = ["Mail.Send", "SMTP.SendAsApp", "IMAP.AccessAsApp"]
DELEGATED_PERMISSIONS = [
    "SMTP.Send",
    "IMAP.AccessAsUser.All",
    "Mail.Send",
    "Mail.Read",
    "User.Read",
    "openid",
    "profile",
    "offline_access",
    "email",
]

# Stable object IDs, so that tokens and Graph answers look the same every run.
SENDER_OID = "7d1c0b5e-2a94-4e1f-8c3d-5b6a7e8f9012"
RECIPIENT_OID = "3a8e6f10-9b2c-4d7e-a1f5-0c4b8d2e6f37"
USER_OID = "c2f49a83-6e1d-4b70-9a25-d8e3f1076b4c"
APP_OBJECT_ID = "9e3b5c71-0d28-4a6f-b4e9-1f7c2a8d5e60"
