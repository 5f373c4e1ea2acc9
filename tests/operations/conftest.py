"""Rows the operations tests need: a tool and pending deliveries through it."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.models import Delivery, DeliveryStatus, Event, EventKind
from tests.tools import activate_azure_mail


@pytest.fixture
def tool(db, sandbox):
    return activate_azure_mail(sandbox.seed)


@pytest.fixture
def pending_delivery(project, tool):
    """Write a pending delivery that has been due for `due_seconds_ago`."""
    created = []

    def make(*, due_seconds_ago: float) -> Delivery:
        event = Event.objects.create(project=project, kind=EventKind.TEST)
        delivery = Delivery.objects.create(
            dedupe_key=f"test:{event.pk}",
            project=project,
            event=event,
            integration=tool,
            recipients=["someone@example.com"],
            status=DeliveryStatus.PENDING,
            next_attempt_at=timezone.now() - timedelta(seconds=due_seconds_ago),
        )
        created.append(delivery)
        return delivery

    return make
