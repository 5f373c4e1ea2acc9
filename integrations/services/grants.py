"""Keeping delegated grants alive (issue 14).

Entra ID drops a refresh token unused for 90 days (AADSTS700082). A tool that sends
rarely would lose its sign-in that way, so the keep-alive job
(`notifications.grant_keepalive`) redeems each grant not refreshed for
INTEGRATION_GRANT_IDLE_DAYS, here, under the same row lock as sends
(`delegated.fresh_grant(force=True)` through `IntegrationGrantStore`), and records
the result as a `HealthCheck` of kind "refresh". A grant that is gone (expired,
revoked, password changed, consent revoked, MFA now required, account disabled)
puts the tool in "Needs re-authorization" at once (the grant store does it).

https://learn.microsoft.com/entra/identity-platform/refresh-tokens
"""

import datetime
import logging
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from integrations.exceptions import AuthorizationRequired, IntegrationError
from integrations.models import (
    HealthCheck,
    HealthCheckKind,
    Integration,
    IntegrationState,
)
from integrations.providers import delegated
from integrations.selectors import delegated_authorization
from integrations.services.stores import IntegrationGrantStore, provider_for
from integrations.text import single_line

logger = logging.getLogger(__name__)

#: The step a refresh HealthCheck names.
REFRESH_STEP = ("refresh", _("Delegated grant refreshed"))


@dataclass(frozen=True)
class GrantRefreshResult:
    integration: Integration
    ok: bool
    error: IntegrationError | None = None

    @property
    def needs_reauthorization(self) -> bool:
        """A person must sign in again (the tool is now "Needs re-authorization")."""
        return isinstance(self.error, AuthorizationRequired)


def idle_grants(*, now: datetime.datetime | None = None) -> list[Integration]:
    """The working delegated tools whose grant was not signed in for or refreshed
    for INTEGRATION_GRANT_IDLE_DAYS (or whose times are not known)."""
    now = now or timezone.now()
    idle_since = now - datetime.timedelta(days=settings.INTEGRATION_GRANT_IDLE_DAYS)
    found = []
    for integration in Integration.objects.filter(
        state__in=[IntegrationState.ACTIVE, IntegrationState.NEEDS_ATTENTION]
    ):
        grant = delegated_authorization(integration)
        if grant is None or not (integration.secrets or {}).get("refresh_token"):
            continue
        last = max(
            (t for t in (grant.authorized_at, grant.refreshed_at) if t), default=None
        )
        if last is None or last <= idle_since:
            found.append(integration)
    return found


def integration_grant_refresh(
    *, integration: Integration, now: datetime.datetime | None = None
) -> GrantRefreshResult:
    """Redeem the tool's refresh token now (even if its access token is fresh),
    store the rotated one under the row lock, and record a refresh HealthCheck.

    Never raises `IntegrationError`: the result carries it. A grant that is gone
    has put the tool in "Needs re-authorization"; a transient failure (network,
    5xx, throttling) changes nothing and is tried again on the next run.
    """
    now = now or timezone.now()
    provider = provider_for(integration)
    step, label = REFRESH_STEP
    try:
        delegated.fresh_grant(
            integration.secrets,
            redeem=provider.redeem_refresh_token,
            store=IntegrationGrantStore(integration.pk),
            force=True,
            now=now.timestamp(),
        )
    except IntegrationError as error:
        logger.warning(
            "Keep-alive refresh of %s failed: %s", integration.provider, error
        )
        HealthCheck.objects.create(
            integration=integration,
            kind=HealthCheckKind.REFRESH,
            ok=False,
            step=step,
            step_label=str(label),
            error_code=error.code,
            detail=single_line(error.detail, 500),
            checked_at=now,
        )
        integration.refresh_from_db()
        return GrantRefreshResult(integration, False, error)
    HealthCheck.objects.create(
        integration=integration,
        kind=HealthCheckKind.REFRESH,
        ok=True,
        step=step,
        step_label=str(label),
        checked_at=now,
    )
    integration.refresh_from_db()
    return GrantRefreshResult(integration, True)
