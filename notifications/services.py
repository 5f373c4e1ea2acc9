"""Writes for events and deliveries."""

from django.db import transaction

from notifications.models import Event, EventKind


@transaction.atomic
def event_emit(*, project, kind: EventKind, scan=None, payload=None, actor=None) -> Event:
    """Record an event for `project` in the caller's transaction.

    Call it inside the transaction that made the change (a scan import, a status
    change), so that a rolled-back change leaves no event behind.
    """
    return Event.objects.create(
        project=project, kind=kind, scan=scan, payload=payload or {}, actor=actor
    )
