"""The transactional outbox: an event and the deliveries it causes, in one transaction.

Sending starts once that transaction commits (`outbox.enqueue_on_commit`)."""

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations.models import IntegrationState
from integrations.services import provider_for
from notifications.models import (
    Delivery,
    DeliveryMode,
    DeliveryStatus,
    Event,
    EventKind,
    ToolLink,
)
from notifications.routing import link_wants
from notifications.services.bounces import suppressed_addresses
from notifications.services.outbox import enqueue_on_commit

logger = logging.getLogger(__name__)


def link_addresses(link: ToolLink) -> list[str]:
    """The project's own list for this tool, or the tool's To."""
    if link.recipients:
        return list(link.recipients)
    try:
        return list(provider_for(link.integration).default_recipients)
    except KeyError:  # the provider is no longer registered
        return []


def link_recipients(link: ToolLink) -> list[str]:
    """`link_addresses` without those suppressed on this link after bounces."""
    addresses = link_addresses(link)
    suppressed = suppressed_addresses(link.pk) if link.pk else set()
    return [a for a in addresses if a.lower() not in suppressed]


def links_sending_for(project) -> list[ToolLink]:
    """The project's enabled links whose tool is active (not deactivated by an admin)."""
    return list(
        ToolLink.objects.filter(project=project, enabled=True)
        .exclude(integration__state=IntegrationState.INACTIVE)
        .select_related("integration")
    )


def delivery_create(
    *, event: Event, link: ToolLink, dedupe_key: str
) -> Delivery | None:
    """Add a delivery for `event` through `link` unless `dedupe_key` exists already.

    Returns the new delivery, or None when one existed (the same event, or the same
    scan's digest, never yields two deliveries: the key is unique in the database).
    """
    existing = (
        Delivery.objects.select_for_update().filter(dedupe_key=dedupe_key).first()
    )
    if existing is not None:
        if existing.is_digest and event.pk not in existing.digest_event_ids:
            existing.digest_event_ids = [*existing.digest_event_ids, event.pk]
            existing.save(update_fields=["digest_event_ids", "updated_at"])
        return None
    recipients = link_recipients(link)
    delivery = Delivery(
        dedupe_key=dedupe_key,
        project_id=event.project_id,
        event=event,
        digest_event_ids=[event.pk] if dedupe_key.startswith("digest:") else [],
        link=link,
        integration=link.integration,
        recipients=recipients,
        next_attempt_at=timezone.now(),
    )
    if not recipients:
        # Nobody to send to: recorded, so the log says why nothing arrived.
        delivery.status = DeliveryStatus.FAILED
        delivery.error_code = (
            "recipients_suppressed" if link_addresses(link) else "no_recipients"
        )
    try:
        with transaction.atomic():
            delivery.save()
    except IntegrityError:
        # A concurrent transaction inserted the same key first (PostgreSQL).
        if Delivery.objects.filter(dedupe_key=dedupe_key).exists():
            return None
        raise
    return delivery


@transaction.atomic
def event_emit(
    *, project, kind: EventKind, scan=None, payload=None, actor=None
) -> Event:
    """Record an event for `project` and its deliveries, in the caller's transaction.

    Call it inside the transaction that made the change (a scan import, a status
    change), so that a rolled-back change leaves no event and sends nothing. Each
    link of the project that wants the event gets one Delivery row; a link set to
    "one digest per scan" gets one Delivery per scan, which collects the scan's
    events. Sending starts after commit, in a background task.
    """
    event = Event.objects.create(
        project=project, kind=kind, scan=scan, payload=payload or {}, actor=actor
    )
    created = []
    for link in links_sending_for(project):
        if not link_wants(link, event.kind, event.payload):
            continue
        if link.delivery_mode == DeliveryMode.DIGEST and scan is not None:
            key = f"digest:{scan.pk}:link:{link.pk}"
        else:
            key = f"event:{event.pk}:link:{link.pk}"
        delivery = delivery_create(event=event, link=link, dedupe_key=key)
        if delivery is not None:
            created.append(delivery)
    enqueue_on_commit(created)
    return event
