"""Activate notification tools with the sandbox's seeded tenant, as an admin would.

Shared by tests, the worker drill subprocess and bench/delivery.py. Django must be
set up before these are called.
"""

GRAPH_PROVIDER = "microsoft_azure_mail"


def azure_mail_values(seed: dict) -> dict:
    """Microsoft Azure Mail's cleaned drawer values for the seeded tenant."""
    return {
        "tenant_id": seed["tenant_id"],
        "client_id": seed["client_id"],
        "client_secret": seed["client_secret"],
        "sender": seed["sender"],
        "recipients": [seed["recipient"]],
        "cloud": "global",
        "secret_expires_on": None,
    }


def activate_azure_mail(seed: dict, **overrides):
    """Save (activate) Microsoft Azure Mail with the seed's values."""
    from integrations.services import integration_save

    return integration_save(
        provider_key=GRAPH_PROVIDER,
        cleaned_data={**azure_mail_values(seed), **overrides},
        actor=None,
    )


def grant_application_permissions(sandbox, *extra: str) -> None:
    """Give the seeded app `extra` application permissions besides the seeded ones
    (as an administrator would, with consent), until the sandbox's next reset."""
    seed = sandbox.seed
    sandbox.control(
        "PATCH",
        f"/tenants/{seed['tenant_id']}/apps/{seed['client_id']}",
        json={
            "application_permissions": [
                "Mail.Send",
                "SMTP.SendAsApp",
                "IMAP.AccessAsApp",
                *extra,
            ]
        },
    )
