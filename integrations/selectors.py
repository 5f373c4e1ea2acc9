"""Reads for notification tools."""

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from integrations.models import AuditEntry, Integration, IntegrationState
from integrations.registry import providers

SECRET_EXPIRY_WARNING_DAYS = 30


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

    @property
    def secret_expiry_warning(self) -> str:
        """A reminder when the saved client secret expires within 30 days."""
        value = self.integration.config.get("secret_expires_on")
        if not value or not self.integration.is_active:
            return ""
        days = (datetime.date.fromisoformat(value) - timezone.localdate()).days
        if days < 0:
            return _("The client secret expired on %(date)s.") % {"date": value}
        if days <= SECRET_EXPIRY_WARNING_DAYS:
            return _("The client secret expires in %(days)d days.") % {"days": days}
        return ""


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


def oauth_redirect_url() -> str:
    """The one OAuth callback URL (absolute, from SITE_URL) every app registers."""
    return settings.SITE_URL.rstrip("/") + reverse("integrations:oauth_callback")
