"""Watching the notification tools (issue 14, items 3 and 4): silent health checks,
incidents, and the deliveries that wait for a broken tool.

- `integration_health_check` runs a tool's `health_check()` (no mail is sent) and
  records a `HealthCheck(kind=check)`; the periodic jobs `notifications.health_checks`
  (every active tool, INTEGRATION_HEALTH_CHECK_SECONDS) and
  `notifications.attention_rechecks` (tools in "Needs attention",
  INTEGRATION_ATTENTION_RECHECK_SECONDS) call it.
- A failure a person must fix (authentication, consent, permission, mailbox not
  found, secret or certificate expired: `IntegrationError.needs_attention`), on a
  check or a send (`notifications.services.delivery`), marks the tool "Needs
  attention" and opens a `HealthIncident` (at most one open per tool); the
  tool-health recipients get one email about it (`incident:<id>:opened`), through
  another active tool when this one cannot send. Deliveries through the tool wait
  meanwhile (`delivery._Run.attention_wait`).
- The next success, of a check or a send, closes the incident (a second email,
  `incident:<id>:closed`), makes the tool active again and releases the deliveries
  that waited. A security admin saving the tool makes it active; the next recheck
  (or send) then closes the incident the same way.

A send records a `HealthCheck(kind=send)` only when it changes the tool's state
(opens or closes an incident), not for every message.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from integrations.exceptions import AuthorizationRequired, IntegrationError
from integrations.models import (
    HealthCheck,
    HealthCheckKind,
    HealthIncident,
    Integration,
    IntegrationState,
)
from integrations.registry import providers
from integrations.services import integration_mark_needs_attention, provider_for
from integrations.troubleshooting import troubleshooting_for
from notifications.emails import site_url
from notifications.models import Delivery, DeliveryStatus
from notifications.services.outbox import enqueue_on_commit
from notifications.services.tool_health import tool_health_email_send

logger = logging.getLogger(__name__)

#: Health results kept per tool (the card shows the latest 30, the drawer more).
KEEP_PER_TOOL = 200
#: A delivery waiting for its tool (pending, due at the next recheck), and one that
#: waited longer than NOTIFICATIONS_ATTENTION_MAX_AGE_SECONDS (failed).
TOOL_NEEDS_ATTENTION = "tool_needs_attention"
TOOL_NEEDS_ATTENTION_TOO_LONG = "tool_needs_attention_too_long"
#: States in which a tool cannot send until something changes: its deliveries wait.
WAITING_STATES = (
    IntegrationState.NEEDS_ATTENTION,
    IntegrationState.NEEDS_REAUTHORIZATION,
)


def needs_a_person(error: IntegrationError) -> bool:
    """Whether `error` means the tool is broken until someone fixes it (not a
    network blip or a throttle)."""
    return bool(error.needs_attention) and not error.retryable


def attention_wait_until(now: datetime | None = None) -> datetime:
    """When a delivery waiting for a broken tool is looked at again: at the next
    recheck (INTEGRATION_ATTENTION_RECHECK_SECONDS; with rechecks off, the longest
    retry backoff)."""
    now = now or timezone.now()
    seconds = float(settings.INTEGRATION_ATTENTION_RECHECK_SECONDS) or float(
        settings.NOTIFICATIONS_RETRY_MAX_SECONDS
    )
    return now + timedelta(seconds=seconds)


def _tool_name(integration: Integration) -> str:
    cls = providers().get(integration.provider)
    return str(cls.name) if cls else integration.provider


# --- recording ------------------------------------------------------------------------


def health_check_record(
    *,
    integration: Integration,
    kind: str,
    ok: bool,
    step: str = "",
    step_label: str = "",
    error: IntegrationError | None = None,
) -> HealthCheck:
    """Add one result to the tool's history and drop what is beyond
    KEEP_PER_TOOL. The detail is the reason in words (never the provider's raw
    text, which stays in the logs)."""
    check = HealthCheck.objects.create(
        integration=integration,
        kind=kind,
        ok=ok,
        step=step[:64],
        step_label=step_label[:200],
        error_code=(error.code if error else "")[:64],
        detail=str(error.troubleshooting.title)[:500] if error else "",
        checked_at=timezone.now(),
    )
    stale = HealthCheck.objects.filter(integration=integration).values_list(
        "pk", flat=True
    )[KEEP_PER_TOOL:]
    stale_ids = list(stale)
    if stale_ids:
        HealthCheck.objects.filter(pk__in=stale_ids).delete()
    return check


# --- the check --------------------------------------------------------------------------


def integration_health_check(*, integration: Integration) -> HealthCheck:
    """Check one tool without sending mail and record the result; a failure a
    person must fix marks the tool and opens an incident, a success closes one."""
    provider = provider_for(integration)
    report = provider.health_check()
    if report.healthy:
        check = health_check_record(
            integration=integration, kind=HealthCheckKind.CHECK, ok=True
        )
        health_recovered(integration=integration, kind=None)
        return check
    step = report.failed_step
    error = (step.error if step else None) or IntegrationError("no step ran")
    logger.warning(
        "Health check of %s failed at %s: %s",
        integration.provider,
        step.key if step else "-",
        error,
    )
    check = health_check_record(
        integration=integration,
        kind=HealthCheckKind.CHECK,
        ok=False,
        step=step.key if step else "",
        step_label=step.label if step else "",
        error=error,
    )
    if needs_a_person(error):
        health_broken(
            integration=integration,
            error=error,
            step_label=step.label if step else "",
            kind=None,
        )
    return check


def health_checks_run() -> int:
    """The periodic job: check every active tool. Returns how many were checked."""
    return _check_all(
        Integration.objects.filter(
            state=IntegrationState.ACTIVE, provider__in=list(providers())
        )
    )


def attention_rechecks_run() -> int:
    """The periodic job: check again each tool in "Needs attention" (a success
    makes it active and sends what waited), and close the incidents of tools a
    security admin saved (active again). Returns how many tools were checked."""
    for incident in HealthIncident.objects.filter(
        closed_at__isnull=True, integration__state=IntegrationState.ACTIVE
    ).select_related("integration"):
        health_recovered(integration=incident.integration, kind=None)
    return _check_all(
        Integration.objects.filter(
            state=IntegrationState.NEEDS_ATTENTION, provider__in=list(providers())
        )
    )


def _check_all(integrations) -> int:
    checked = 0
    for integration in integrations.order_by("provider"):
        try:
            integration_health_check(integration=integration)
        except Exception:
            # One tool's bug must not stop the others' checks.
            logger.exception("Health check of %s crashed", integration.provider)
            continue
        checked += 1
    return checked


# --- sends --------------------------------------------------------------------------------


def health_send_failed(
    *, integration: Integration, error: IntegrationError
) -> HealthIncident | None:
    """A send failed in a way a person must fix: mark the tool and open the
    incident (recorded as a send result when it is new)."""
    return health_broken(
        integration=integration,
        error=error,
        step_label="",
        kind=HealthCheckKind.SEND,
    )


def health_send_succeeded(*, integration: Integration) -> HealthIncident | None:
    """A send went through: close the tool's open incident, if any (one query
    when there is none)."""
    if not HealthIncident.objects.filter(
        integration_id=integration.pk, closed_at__isnull=True
    ).exists():
        return None
    return health_recovered(integration=integration, kind=HealthCheckKind.SEND)


# --- incidents ------------------------------------------------------------------------------


def health_broken(
    *,
    integration: Integration,
    error: IntegrationError,
    step_label: str,
    kind: str | None,
) -> HealthIncident | None:
    """Mark the tool ("Needs attention", or "Needs re-authorization" for a grant
    that is gone) and open its incident if none is open; the first time, tell the
    tool-health recipients and, for a send (`kind`), record the state change."""
    integration_mark_needs_attention(integration=integration, error=error)
    integration.refresh_from_db(fields=["state", "attention_code", "attention_detail"])
    if integration.state not in WAITING_STATES:
        return None  # deactivated meanwhile
    incident = _incident_open(integration=integration, error=error)
    if incident is None:
        return None
    if kind is not None:
        health_check_record(integration=integration, kind=kind, ok=False, error=error)
    _incident_email_opened(
        incident=incident, integration=integration, error=error, step_label=step_label
    )
    return incident


def _incident_open(
    *, integration: Integration, error: IntegrationError
) -> HealthIncident | None:
    """A new open incident, or None when one is open already (also when another
    worker opened it at the same moment: the partial unique constraint)."""
    if HealthIncident.objects.filter(
        integration=integration, closed_at__isnull=True
    ).exists():
        return None
    try:
        with transaction.atomic():
            return HealthIncident.objects.create(
                integration=integration,
                error_code=error.code[:64],
                detail=str(error.troubleshooting.title)[:500],
                opened_at=timezone.now(),
            )
    except IntegrityError:
        return None


def health_recovered(
    *, integration: Integration, kind: str | None
) -> HealthIncident | None:
    """A check or a send succeeded: a tool in "Needs attention" is active again,
    its open incident closes (a second email; a send's success recorded when
    `kind`), and the deliveries that waited for it are sent now."""
    now = timezone.now()
    if Integration.objects.filter(
        pk=integration.pk, state=IntegrationState.NEEDS_ATTENTION
    ).update(state=IntegrationState.ACTIVE, attention_code="", attention_detail=""):
        logger.info("%s works again", integration.provider)
    integration.refresh_from_db(fields=["state", "attention_code", "attention_detail"])
    closed = None
    incident = HealthIncident.objects.filter(
        integration=integration, closed_at__isnull=True
    ).first()
    if incident is not None and integration.state == IntegrationState.ACTIVE:
        if HealthIncident.objects.filter(pk=incident.pk, closed_at__isnull=True).update(
            closed_at=now
        ):
            incident.closed_at = now
            closed = incident
            if kind is not None:
                health_check_record(integration=integration, kind=kind, ok=True)
            _incident_email_closed(incident=incident, integration=integration)
    if integration.state == IntegrationState.ACTIVE:
        deliveries_release(integration=integration)
    return closed


def deliveries_release(*, integration: Integration | int, error_code: str = "") -> int:
    """The deliveries waiting for the tool (pending, due later: the one whose send
    failed, and the others the run pushed back with it) are due now; with
    `error_code`, only those that wait for that reason."""
    now = timezone.now()
    waiting = Delivery.objects.filter(
        integration=integration,
        status=DeliveryStatus.PENDING,
        next_attempt_at__gt=now,
    )
    if error_code:
        waiting = waiting.filter(error_code=error_code)
    ids = list(waiting.values_list("pk", flat=True))
    if not ids:
        return 0
    Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.PENDING).update(
        next_attempt_at=now, updated_at=now
    )
    enqueue_on_commit(list(Delivery.objects.filter(pk__in=ids)))
    return len(ids)


def tool_ready_received(sender, *, integration_id: int, **kwargs) -> None:
    """A security admin saved or re-authorized the tool (`integrations.signals.
    tool_ready`): what waited for it goes now, not at the next recheck. Its open
    incident closes at the next success, as after a recheck."""
    deliveries_release(integration=integration_id, error_code=TOOL_NEEDS_ATTENTION)


# --- the emails ---------------------------------------------------------------------------


def _tool_url(integration: Integration) -> str:
    return site_url(reverse("integrations:tool", args=[integration.provider]))


def _incident_email_opened(
    *,
    incident: HealthIncident,
    integration: Integration,
    error: IntegrationError,
    step_label: str,
) -> None:
    name = _tool_name(integration)
    words = troubleshooting_for(error.code)
    hours = round(float(settings.NOTIFICATIONS_ATTENTION_MAX_AGE_SECONDS) / 3600, 1)
    reauthorize = isinstance(error, AuthorizationRequired) or (
        integration.state == IntegrationState.NEEDS_REAUTHORIZATION
    )
    paragraphs = [
        _("%(name)s cannot send notifications: %(reason)s.")
        % {"name": name, "reason": words.title},
        str(words.text),
    ]
    if step_label:
        paragraphs.append(
            _("The health check failed at the step “%(step)s”.") % {"step": step_label}
        )
    paragraphs.append(
        _(
            "Notifications through this tool are waiting, not lost: they are sent "
            "as soon as it works again, and given up after %(hours)s hours."
        )
        % {"hours": f"{hours:g}"}
    )
    paragraphs.append(
        _(
            "Re-authorize the tool in its settings."
            if reauthorize
            else "Fix the cause, then save the tool in its settings (or wait for the "
            "next check, every few minutes)."
        )
    )
    tool_health_email_send(
        about=integration,
        dedupe_key=f"incident:{incident.pk}:opened",
        subject=_("%(name)s needs attention: %(reason)s")
        % {"name": name, "reason": words.title},
        text="\n\n".join(str(p) for p in paragraphs),
        action_url=_tool_url(integration),
        action_label=_("Re-authorize")
        if reauthorize
        else _("Open the tool's settings"),
    )


def _incident_email_closed(
    *, incident: HealthIncident, integration: Integration
) -> None:
    name = _tool_name(integration)
    tool_health_email_send(
        about=integration,
        dedupe_key=f"incident:{incident.pk}:closed",
        subject=_("%(name)s works again") % {"name": name},
        text=_(
            "%(name)s sends notifications again. The notifications that waited "
            "for it are being sent now."
        )
        % {"name": name},
        action_url=_tool_url(integration),
        action_label=_("Open the tool's settings"),
    )
