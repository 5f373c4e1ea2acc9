"""Credential expiry reminders (issue 14): the `notifications.expiry_reminders`
periodic job (every INTEGRATION_EXPIRY_CHECK_SECONDS, daily by default).

For each active tool it reads when its client secret or certificate expires
(`integrations.services.expiry`: the certificate, the app registration, or the typed
date) and tells the tool-health recipients 30, 14, 7 and 1 days before, once each.
An `ExpiryReminder` row marks a reminder done: a job that first notices the expiry
with 10 days left sends the 14-day reminder and marks the 30-day one done without
an email of its own (one email, not two on the same day).
"""

import datetime
import logging

from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from integrations.models import ExpiryReminder, Integration
from integrations.registry import providers
from integrations.selectors import active_integrations
from integrations.services.expiry import (
    CERTIFICATE,
    SOURCE_APP_REGISTRATION,
    SOURCE_CERTIFICATE,
    credential_in_use,
    integration_credential_expiry_update,
)
from notifications.emails import site_url
from notifications.services.tool_health import tool_health_email_send

logger = logging.getLogger(__name__)

#: Days before expiry at which a reminder goes out, most distant first.
REMINDER_DAYS = (30, 14, 7, 1)


def expiry_reminders_run(*, now: datetime.datetime | None = None) -> int:
    """The periodic job: refresh each active tool's credential expiry, then send the
    reminders that are due. Returns the number of reminder emails queued."""
    now = now or timezone.now()
    sent = 0
    for integration in active_integrations():
        integration_credential_expiry_update(integration=integration)
        if expiry_reminder_send(integration=integration, now=now):
            sent += 1
    return sent


def due_reminder_days(days_left: int) -> list[int]:
    """The reminder days reached with `days_left` days to go (none once expired)."""
    if days_left < 0:
        return []
    return [days for days in REMINDER_DAYS if days_left <= days]


def expiry_reminder_send(
    *, integration: Integration, now: datetime.datetime | None = None
) -> bool:
    """Send the most urgent reminder due for `integration` and not sent yet, and
    mark the earlier ones it passes as done. True when an email was queued."""
    now = now or timezone.now()
    expires_on = integration.credential_expires_on
    if not expires_on or not integration.is_active:
        return False
    credential = credential_in_use(integration.config or {}, integration.secrets or {})
    if not credential:
        return False
    days_left = (expires_on - timezone.localdate(now)).days
    due = due_reminder_days(days_left)
    done = set(
        ExpiryReminder.objects.filter(
            integration=integration, credential=credential, expires_on=expires_on
        ).values_list("days_before", flat=True)
    )
    pending = [days for days in due if days not in done]
    if not pending:
        return False
    reminder = min(pending)
    try:
        with transaction.atomic():
            for days in pending:
                ExpiryReminder.objects.create(
                    integration=integration,
                    credential=credential,
                    expires_on=expires_on,
                    days_before=days,
                    sent_at=now,
                )
            subject, text = reminder_words(
                integration, credential, expires_on, days_left
            )
            delivery = tool_health_email_send(
                about=integration,
                dedupe_key=(
                    f"expiry:{integration.pk}:{credential}:{expires_on.isoformat()}"
                    f":{reminder}"
                ),
                subject=subject,
                text=text,
                action_url=site_url(
                    reverse("integrations:tool", args=[integration.provider])
                ),
                action_label=_("Open the tool's settings"),
            )
    except IntegrityError:  # another run marked them first
        return False
    logger.info(
        "Expiry reminder (%d days) for %s: %s",
        reminder,
        integration.provider,
        "queued" if delivery else "not sent",
    )
    return delivery is not None


def reminder_words(
    integration: Integration,
    credential: str,
    expires_on: datetime.date,
    days_left: int,
) -> tuple[str, str]:
    """The reminder's subject and text: which tool, which credential, the date,
    what to do."""
    provider_cls = providers().get(integration.provider)
    tool = str(provider_cls.name) if provider_cls else integration.provider
    date = expires_on.isoformat()
    if credential == CERTIFICATE:
        what = _("certificate")
        thumbprint = (integration.config or {}).get("certificate_thumbprint", "")
        which = _("the certificate with thumbprint %(thumbprint)s") % {
            "thumbprint": thumbprint
        }
        renew = _(
            "Upload a new certificate (public part) to the app registration: in "
            "the Azure portal, open Microsoft Entra ID › App registrations › the "
            "app › Certificates & secrets › Certificates. Then paste the new "
            "certificate and its private key in the tool's settings and save."
        )
    else:
        what = _("client secret")
        which = _("the client secret")
        renew = _(
            "Create a new client secret: in the Azure portal, open Microsoft Entra "
            "ID › App registrations › the app › Certificates & secrets › Client "
            "secrets › New client secret. Then paste its Value in the tool's "
            "Client Secret setting and save (for a delegated tool, Save & "
            "Authorize)."
        )
    if days_left == 0:
        when = _("today")
    else:
        when = ngettext("in %(days)d day", "in %(days)d days", days_left) % {
            "days": days_left
        }
    subject = _("%(tool)s: the %(what)s expires %(when)s (%(date)s)") % {
        "tool": tool,
        "what": what,
        "when": when,
        "date": date,
    }
    source = {
        SOURCE_CERTIFICATE: _("This date is the certificate's own expiry."),
        SOURCE_APP_REGISTRATION: _(
            "This date was read from the app registration in Microsoft Entra ID."
        ),
    }.get(
        integration.credential_expiry_source,
        _(
            "This date is the one entered in the tool's settings. Grant the app the "
            "Application.Read.All application permission to have it read from the "
            "app registration."
        ),
    )
    client_id = (integration.config or {}).get("client_id", "")
    text = "\n\n".join(
        [
            _(
                "The notification tool %(tool)s signs in with %(which)s of the app "
                "registration %(client_id)s, which expires on %(date)s (%(when)s). "
                "After that the tool cannot send notifications."
            )
            % {
                "tool": tool,
                "which": which,
                "client_id": client_id,
                "date": date,
                "when": when,
            },
            renew,
            source,
        ]
    )
    return subject, text
