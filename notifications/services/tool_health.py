"""Emails about the notification tools themselves (issue 14: expiry reminders, a tool
that broke and recovered, a delegated grant that needs a person), to the tool-health
recipients, through the delivery log like every other email.

`tool_health_email_send` is the one way to send one. It records an `Event` of kind
TOOL_HEALTH (no project) and a `Delivery` whose `dedupe_key` the caller chooses, so a
reminder or an incident email is sent once however many workers ask. It goes through
the tool it is about when that tool can send, else through another active tool: a
broken tool cannot report its own breakage.
"""

import logging

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations.models import Integration, IntegrationState, ToolHealthSettings
from integrations.permissions import SECURITY_ADMINS_GROUP
from notifications.models import Delivery, DeliveryStatus, Event, EventKind
from notifications.services.outbox import enqueue_on_commit

logger = logging.getLogger(__name__)


def tool_health_recipients() -> list[str]:
    """The addresses security admins chose on the Notification Tools page, else
    every active security admin's address."""
    chosen = ToolHealthSettings.objects.filter(pk=1).values_list(
        "recipients", flat=True
    )
    if chosen and chosen[0]:
        return list(chosen[0])
    users = (
        get_user_model()
        .objects.filter(is_active=True, groups__name=SECURITY_ADMINS_GROUP)
        .exclude(email="")
        .order_by("email")
        .values_list("email", flat=True)
    )
    return list(dict.fromkeys(email.lower() for email in users))


def sending_tool_for(about: Integration) -> Integration | None:
    """`about` when it can send (active, not waiting for a person), else the first
    other tool that can; None when no tool can send."""
    if about.state == IntegrationState.ACTIVE:
        return about
    return (
        Integration.objects.filter(state=IntegrationState.ACTIVE)
        .exclude(pk=about.pk)
        .order_by("provider")
        .first()
    )


@transaction.atomic
def tool_health_email_send(
    *,
    about: Integration,
    dedupe_key: str,
    subject: str,
    text: str,
    action_url: str = "",
    action_label: str = "",
) -> Delivery | None:
    """Queue one tool-health email about `about`, once per `dedupe_key`.

    `text` is plain text (paragraphs separated by blank lines); `action_url` an
    absolute link to the page where a person acts (Re-authorize, the tool's
    settings). Returns the new delivery, or None when it was queued before, or when
    nobody is to be told or no tool can send (logged, so that operators see it).
    """
    key = f"health:{dedupe_key}"[:200]
    if Delivery.objects.filter(dedupe_key=key).exists():
        return None
    recipients = tool_health_recipients()
    sender = sending_tool_for(about)
    if not recipients or sender is None:
        logger.warning(
            "Tool health email about %s not sent: %s",
            about.provider,
            "no recipients" if not recipients else "no tool can send",
        )
        return None
    event = Event.objects.create(
        project=None,
        kind=EventKind.TOOL_HEALTH,
        payload={
            "about": about.provider,
            "subject": subject,
            "text": text,
            "action_url": action_url,
            "action_label": action_label,
        },
    )
    delivery = Delivery(
        dedupe_key=key,
        project=None,
        event=event,
        integration=sender,
        recipients=recipients,
        subject=subject[:300],
        next_attempt_at=timezone.now(),
        status=DeliveryStatus.PENDING,
    )
    try:
        with transaction.atomic():
            delivery.save()
    except IntegrityError:  # a concurrent worker queued the same one
        return None
    enqueue_on_commit([delivery])
    return delivery
