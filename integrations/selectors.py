"""Reads for notification tools."""

from dataclasses import dataclass

from integrations.models import AuditEntry, Integration, IntegrationState
from integrations.registry import providers


def integration_for(provider_key: str) -> Integration:
    """The saved integration for a provider, or an unsaved, inactive one."""
    return Integration.objects.filter(provider=provider_key).first() or Integration(
        provider=provider_key, state=IntegrationState.INACTIVE
    )


@dataclass
class ToolCard:
    provider: type
    integration: Integration

    @property
    def key(self):
        return self.provider.key

    @property
    def state(self):
        return IntegrationState(self.integration.state)


def notification_tool_cards() -> list[ToolCard]:
    """One card per registered provider, in registry order."""
    saved = {i.provider: i for i in Integration.objects.defer("secrets", "token_cache")}
    return [
        ToolCard(cls, saved.get(key) or Integration(provider=key))
        for key, cls in providers().items()
    ]


def active_integrations():
    """Integrations that may send (active or needing attention)."""
    return Integration.objects.exclude(state=IntegrationState.INACTIVE).filter(
        provider__in=list(providers())
    )


def audit_entries(*, limit: int = 200) -> list[AuditEntry]:
    """The newest entries, each with `provider_name` for display."""
    names = {key: cls.name for key, cls in providers().items()}
    entries = list(AuditEntry.objects.all()[:limit])
    for entry in entries:
        entry.provider_name = names.get(entry.provider, entry.provider)
    return entries
