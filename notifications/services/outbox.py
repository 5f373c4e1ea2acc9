"""The outbox's hand-off: deliveries written in a transaction go to a task once it
commits, so a rolled-back change never sends anything."""

from django.db import transaction

from notifications.models import DeliveryStatus


def enqueue_on_commit(deliveries) -> None:
    """Start sending `deliveries` once the current transaction commits.

    Deliveries created in one transaction (a scan's several events) go out in one
    task, so they share one connection: every call registers a callback, and the
    first callback to run takes all the ids gathered so far. A callback discarded
    with a rolled-back savepoint loses nothing, since a later one drains the list.
    """
    ids = [d.pk for d in deliveries if d.status == DeliveryStatus.PENDING]
    if not ids:
        return
    connection = transaction.get_connection()
    pending = connection.__dict__.setdefault("notifications_pending_ids", [])
    pending.extend(ids)

    def enqueue():
        gathered = list(dict.fromkeys(pending))
        pending.clear()
        if gathered:
            # The one import cycle of the app, and it is inherent: the `deliver`
            # task calls the services (notifications.tasks imports them), and the
            # services hand deliveries to that task. Imported here, at commit time,
            # so that importing the services never loads the task framework.
            from notifications import tasks

            tasks.deliveries_enqueue(delivery_ids=gathered)

    transaction.on_commit(enqueue)
