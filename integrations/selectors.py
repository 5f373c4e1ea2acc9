"""Reads for notification tools."""

import datetime
from dataclasses import dataclass

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from integrations.models import (
    AuditEntry,
    HealthCheck,
    Integration,
    IntegrationState,
    ToolHealthSettings,
)
from integrations.registry import providers
from integrations.troubleshooting import troubleshooting_for

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
    def authorization(self) -> "DelegatedAuthorization | None":
        """Who signed in for a delegated tool, and when (`delegated_authorization`)."""
        return delegated_authorization(self.integration)

    @property
    def expiry(self) -> "CredentialExpiryView | None":
        """When the credential in use expires (`credential_expiry_view`)."""
        return credential_expiry_view(self.integration)

    @property
    def health_marks(self) -> list[HealthCheck]:
        """The latest 30 health results, oldest first (the card's row of marks)."""
        if not self.integration.pk or not self.integration.is_active:
            return []
        return health_history(self.integration, limit=HEALTH_MARKS)[::-1]


@dataclass(frozen=True)
class CredentialExpiryView:
    """A tool's credential expiry as the card and the Operations page show it."""

    #: "client_secret" or "certificate".
    credential: str
    expires_on: datetime.date
    days_left: int
    #: "certificate", "app_registration" or "typed".
    source: str

    @property
    def expired(self) -> bool:
        return self.days_left < 0

    @property
    def warning(self) -> bool:
        """Within SECRET_EXPIRY_WARNING_DAYS (the first reminder) or past."""
        return self.days_left < SECRET_EXPIRY_WARNING_DAYS

    @property
    def credential_label(self) -> str:
        if self.credential == "certificate":
            return _("Certificate")
        return _("Client secret")

    @property
    def source_label(self) -> str:
        return {
            "certificate": _("read from the certificate"),
            "app_registration": _("read from the app registration"),
            "typed": _("the date entered in the settings"),
        }.get(self.source, "")


def credential_expiry_view(
    integration: Integration, *, today: datetime.date | None = None
) -> CredentialExpiryView | None:
    """The expiry of an active tool's credential, with the days left from `today`
    (default: the local date); None when it is not known or the tool is off."""
    expires_on = integration.credential_expires_on
    if not expires_on or not integration.is_active:
        return None
    today = today or timezone.localdate()
    credential = (
        "certificate"
        if integration.credential_expiry_source == "certificate"
        else "client_secret"
    )
    return CredentialExpiryView(
        credential=credential,
        expires_on=expires_on,
        days_left=(expires_on - today).days,
        source=integration.credential_expiry_source,
    )


def credential_expiries() -> list[tuple[str, "CredentialExpiryView | None"]]:
    """Every registered tool's name and credential expiry (None: not known or not
    active), for the Operations page, in card order."""
    saved = {
        i.provider: i
        for i in Integration.objects.only(
            "provider", "state", "credential_expires_on", "credential_expiry_source"
        )
    }
    return [
        (
            cls.name,
            credential_expiry_view(saved[key]) if key in saved else None,
        )
        for key, cls in providers().items()
    ]


@dataclass(frozen=True)
class DelegatedAuthorization:
    """A delegated tool's grant as people see it: the account that signed in, when,
    and when its access token was last refreshed (None: not since the sign-in)."""

    account: str
    authorized_at: datetime.datetime | None
    refreshed_at: datetime.datetime | None


def _moment(value) -> datetime.datetime | None:
    """A stored time (epoch seconds, or ISO 8601 as saved before) as a datetime."""
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return datetime.datetime.fromtimestamp(value, tz=datetime.UTC)
    try:
        return datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return None


def delegated_authorization(integration: Integration) -> DelegatedAuthorization | None:
    """The grant an active delegated tool holds, or None: the tool needs no sign-in,
    is not active, was never authorized, needs re-authorization, or its grant was
    dropped with the settings it was given for. A plain Save keeps it."""
    if not integration.pk or integration.state not in (
        IntegrationState.ACTIVE,
        IntegrationState.NEEDS_ATTENTION,
    ):
        return None
    provider_cls = providers().get(integration.provider)
    if provider_cls is None:
        return None
    if not provider_cls(config=integration.config, secrets={}).needs_authorization:
        return None
    secrets = integration.secrets or {}
    if not (secrets.get("refresh_token") or secrets.get("access_token")):
        return None
    # Tools authorized before the grant kept these: the account and time were
    # in the settings.
    return DelegatedAuthorization(
        account=secrets.get("authorized_account")
        or integration.config.get("authorized_account", ""),
        authorized_at=_moment(
            secrets.get("authorized_at") or integration.config.get("authorized_at")
        ),
        refreshed_at=_moment(secrets.get("refreshed_at")),
    )


#: How many health results the card shows as marks.
HEALTH_MARKS = 30


def health_history(integration: Integration, *, limit: int = 200) -> list[HealthCheck]:
    """A tool's health results, newest first, each with `reason` (its error code
    in words) for display."""
    if not integration.pk:
        return []
    checks = list(HealthCheck.objects.filter(integration=integration)[:limit])
    for check in checks:
        check.reason = (
            troubleshooting_for(check.error_code).title if check.error_code else ""
        )
    return checks


def tool_health_recipients_chosen() -> list[str]:
    """The addresses security admins chose for tool-health emails ([]: all of
    them)."""
    row = ToolHealthSettings.objects.filter(pk=1).first()
    return list(row.recipients) if row else []


def notification_tool_cards() -> list[ToolCard]:
    """One card per registered provider, in registry order."""
    saved = {i.provider: i for i in Integration.objects.defer("secrets", "token_cache")}
    return [
        ToolCard(cls, saved.get(key) or Integration(provider=key))
        for key, cls in providers().items()
    ]


def projects_paused_by_deactivation(integration: Integration) -> list[str]:
    """The names of the projects whose enabled link sends through `integration`:
    what deactivating it pauses (the links stay, inactive, until it is active)."""
    if not integration.pk:
        return []
    # Through the reverse relation: this app does not import notifications.
    return list(
        integration.tool_links.filter(enabled=True)
        .order_by("project__name")
        .values_list("project__name", flat=True)
    )


def active_integrations():
    """Integrations that may send (active or needing attention)."""
    return Integration.objects.exclude(state=IntegrationState.INACTIVE).filter(
        provider__in=list(providers())
    )


def audit_entries(*, limit: int = 200) -> list[AuditEntry]:
    """The newest entries, each with `provider_name` and, for a failure, its code
    in words (`error_title`, the troubleshooting title) for display."""
    names = {key: cls.name for key, cls in providers().items()}
    entries = list(AuditEntry.objects.all()[:limit])
    for entry in entries:
        entry.provider_name = names.get(entry.provider, entry.provider)
        entry.error_title = (
            troubleshooting_for(entry.error_code).title if entry.error_code else ""
        )
    return entries


def oauth_redirect_url() -> str:
    """The one OAuth callback URL (absolute, from SITE_URL) every app registers."""
    return settings.SITE_URL.rstrip("/") + reverse("integrations:oauth_callback")
