"""Delegated grants kept alive (issue 14): the `notifications.grant_keepalive`
periodic job (every INTEGRATION_GRANT_KEEPALIVE_SECONDS, daily by default).

Each delegated grant not refreshed for INTEGRATION_GRANT_IDLE_DAYS is refreshed
(`integrations.services.grants`), well inside Entra ID's 90 days. When the grant is
gone for a reason a person must fix, the tool is "Needs re-authorization" and the
tool-health recipients get one email (per tool, error and day) with the reason in
words and a link to the tool's settings, where Save & Authorize signs in again. A
transient failure is tried again on the next run, without an email.
"""

import datetime
import logging
from dataclasses import dataclass

from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from integrations.registry import providers
from integrations.services.grants import (
    GrantRefreshResult,
    idle_grants,
    integration_grant_refresh,
)
from notifications.emails import site_url
from notifications.services.tool_health import tool_health_email_send

logger = logging.getLogger(__name__)


@dataclass
class KeepaliveSummary:
    refreshed: int = 0
    reauthorization: int = 0
    failed: int = 0


def grant_keepalive_run(*, now: datetime.datetime | None = None) -> KeepaliveSummary:
    """The periodic job: refresh every idle delegated grant; tell people about the
    ones that need a new sign-in."""
    now = now or timezone.now()
    summary = KeepaliveSummary()
    for integration in idle_grants(now=now):
        result = integration_grant_refresh(integration=integration, now=now)
        if result.ok:
            summary.refreshed += 1
        elif result.needs_reauthorization:
            summary.reauthorization += 1
            reauthorization_email_send(result=result, now=now)
        else:
            summary.failed += 1
    return summary


def reauthorization_email_send(
    *, result: GrantRefreshResult, now: datetime.datetime | None = None
):
    """One email (per tool, error and day) saying why the tool needs a new sign-in,
    with a link to Re-authorize."""
    now = now or timezone.now()
    integration, error = result.integration, result.error
    provider_cls = providers().get(integration.provider)
    tool = str(provider_cls.name) if provider_cls else integration.provider
    words = error.troubleshooting
    account = (integration.config or {}).get("username", "")
    subject = _("%(tool)s needs re-authorization: %(reason)s") % {
        "tool": tool,
        "reason": words.title,
    }
    paragraphs = [
        _(
            "The notification tool %(tool)s can no longer send: its delegated "
            "sign-in could not be refreshed. %(reason)s"
        )
        % {"tool": tool, "reason": words.text},
        _(
            "Notifications through it wait until someone signs in again. Open the "
            "tool's settings and click Re-authorize (Save & Authorize), then sign in "
            "as %(account)s."
        )
        % {"account": account or _("the configured user")},
    ]
    return tool_health_email_send(
        about=integration,
        dedupe_key=(
            f"reauth:{integration.pk}:{error.code}:{timezone.localdate(now).isoformat()}"
        ),
        subject=subject,
        text="\n\n".join(str(p) for p in paragraphs),
        action_url=site_url(reverse("integrations:tool", args=[integration.provider])),
        action_label=_("Re-authorize"),
    )
