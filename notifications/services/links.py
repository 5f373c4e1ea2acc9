"""Project › Settings › Notification Tools: link, configure, unlink, test."""

from django.db import transaction
from django.utils.translation import gettext as _

from integrations.models import Integration
from integrations.selectors import active_integrations
from notifications.exceptions import NotificationError, RecipientsRefused
from notifications.models import (
    Delivery,
    DeliveryMode,
    Event,
    EventKind,
    ToolLink,
)
from notifications.services.events import delivery_create, link_recipients
from notifications.services.outbox import enqueue_on_commit
from notifications.services.recipients import (
    recipients_check_for_project,
    refusal_message,
)
from projects.models import Severity


@transaction.atomic
def link_create(*, project, integration: Integration, actor=None) -> ToolLink:
    """Link a globally active tool to `project`, with the default events."""
    if not active_integrations().filter(pk=integration.pk).exists():
        raise NotificationError(
            _(
                "This notification tool is not active. Ask a security admin to activate it."
            )
        )
    link, _created = ToolLink.objects.get_or_create(
        project=project, integration=integration, defaults={"created_by": actor}
    )
    return link


def link_update(
    *,
    link: ToolLink,
    enabled: bool,
    notify_new_vulnerabilities: bool,
    minimum_severity: str,
    notify_scan_completed: bool,
    notify_status_changed: bool,
    status_transitions: list[str],
    recipients: list[str],
    delivery_mode: str,
    actor=None,
) -> ToolLink:
    """Change which events reach whom through `link`.

    The project's own recipients must be within the tool's allowed recipient
    domains: otherwise `RecipientsRefused`, audited (outside the transaction, so
    the entry stays although nothing is saved).
    """
    if minimum_severity not in Severity.values:
        raise NotificationError(_("Choose a minimum severity."))
    if delivery_mode not in DeliveryMode.values:
        raise NotificationError(_("Choose how to deliver."))
    _refuse_outside_domains(link, recipients, actor)
    with transaction.atomic():
        link.enabled = enabled
        link.notify_new_vulnerabilities = notify_new_vulnerabilities
        link.minimum_severity = minimum_severity
        link.notify_scan_completed = notify_scan_completed
        link.notify_status_changed = notify_status_changed
        link.status_transitions = list(dict.fromkeys(status_transitions))
        link.recipients = list(dict.fromkeys(recipients))
        link.delivery_mode = delivery_mode
        link.save()
    return link


def _refuse_outside_domains(link: ToolLink, recipients, actor) -> None:
    """Raise `RecipientsRefused` (audited) when the tool must not send to one of
    `recipients` for the link's project."""
    verdict = recipients_check_for_project(
        integration=link.integration,
        recipients=recipients,
        project=link.project,
        actor=actor,
    )
    if not verdict.ok:
        raise RecipientsRefused(refusal_message(verdict))


@transaction.atomic
def link_delete(*, link: ToolLink) -> None:
    """Unlink. Past deliveries stay in the log; pending ones will not be sent."""
    link.delete()


def link_send_test(*, link: ToolLink, actor=None) -> Delivery:
    """Send a test notification through `link` to its recipients, in the background.

    Refused while the link is inactive (a security admin deactivated the tool) or
    switched off (Enabled unticked): neither sends anything, tests included. Refused
    too (`RecipientsRefused`, audited) when a recipient is outside the tool's
    allowed recipient domains; the delivery is checked again when it is sent.
    """
    if not active_integrations().filter(pk=link.integration_id).exists():
        raise NotificationError(
            _(
                "This link is inactive: a security admin deactivated the notification "
                "tool, so it sends nothing, not even a test. Ask them to activate it "
                "again."
            )
        )
    if not link.enabled:
        raise NotificationError(
            _(
                "This link is switched off, so it sends nothing, not even a test. "
                "Tick Enabled and save, then send the test."
            )
        )
    _refuse_outside_domains(link, link_recipients(link), actor)
    with transaction.atomic():
        event = Event.objects.create(
            project=link.project, kind=EventKind.TEST, payload={}, actor=actor
        )
        delivery = delivery_create(
            event=event, link=link, dedupe_key=f"test:{event.pk}:link:{link.pk}"
        )
        enqueue_on_commit([delivery])
    return delivery
