"""Where a saved integration keeps its msal token cache and its delegated grant,
and the provider instance that sends for it."""

from django.db import transaction

from integrations.exceptions import AuthorizationRequired
from integrations.models import Integration
from integrations.providers.base import NotificationToolProvider
from integrations.registry import get_provider_class
from integrations.services.attention import integration_mark_needs_reauthorization


class IntegrationTokenStore:
    """msal's token cache for a saved integration, encrypted in its row."""

    def __init__(self, integration_id: int):
        self.integration_id = integration_id

    def load(self) -> str:
        row = Integration.objects.filter(pk=self.integration_id).values_list(
            "token_cache", flat=True
        )
        return next(iter(row), "")

    def save(self, serialized: str) -> None:
        Integration.objects.filter(pk=self.integration_id).update(
            token_cache=serialized
        )


class IntegrationGrantStore:
    """A delegated grant (access and refresh token) kept in a saved integration's
    encrypted secrets, refreshed by one process at a time.

    The row lock (SELECT ... FOR UPDATE; on SQLite the IMMEDIATE transaction takes
    the write lock at BEGIN) serialises refreshes across threads and processes; the
    rotated refresh token is saved in the same transaction. A grant that is gone
    (invalid_grant) puts the integration in "Needs re-authorization".
    """

    def __init__(self, integration_id: int):
        self.integration_id = integration_id

    def refresh(self, update) -> dict:
        try:
            with transaction.atomic():
                row = (
                    Integration.objects.select_for_update()
                    .only("secrets")
                    .get(pk=self.integration_id)
                )
                secrets = dict(row.secrets)
                changes = update(secrets)
                if changes:
                    secrets.update(changes)
                    Integration.objects.filter(pk=self.integration_id).update(
                        secrets=secrets
                    )
                return secrets
        except AuthorizationRequired as error:
            integration_mark_needs_reauthorization(
                integration_id=self.integration_id, error=error
            )
            raise


def provider_for(integration: Integration) -> NotificationToolProvider:
    """The provider instance that sends for a saved integration."""
    cls = get_provider_class(integration.provider)
    return cls(
        config=integration.config,
        secrets=integration.secrets,
        token_store=IntegrationTokenStore(integration.pk) if integration.pk else None,
        grant_store=IntegrationGrantStore(integration.pk) if integration.pk else None,
    )
