"""Fixtures for notification tests: an active Microsoft Azure Mail tool (and an SMTP
one) pointed at the sandbox, linked to the shared `project` (tests/conftest.py), and a
way to drain the outbox."""

import time
import uuid

import pytest
from django.utils import timezone

from notifications.models import Delivery, DeliveryStatus, ToolLink
from tests.tools import activate_azure_mail


@pytest.fixture(autouse=True)
def fast_retries(settings):
    """Retries in tenths of a second, so fault drills finish quickly."""
    settings.NOTIFICATIONS_RETRY_BASE_SECONDS = 0.05
    settings.NOTIFICATIONS_RETRY_MAX_SECONDS = 2.0
    settings.NOTIFICATIONS_MAX_ATTEMPTS = 6
    settings.SITE_URL = "https://appsec.example.test"


@pytest.fixture
def graph_tool(db, sandbox):
    """Microsoft Azure Mail, activated with the sandbox tenant's values."""
    return activate_azure_mail(sandbox.seed)


@pytest.fixture
def link(project, graph_tool):
    """The tool linked to the project: every event, every severity, immediately."""
    return ToolLink.objects.create(
        project=project,
        integration=graph_tool,
        notify_new_vulnerabilities=True,
        minimum_severity="info",
        notify_scan_completed=True,
        notify_status_changed=True,
    )


def settle(timeout: float = 20.0) -> list[Delivery]:
    """Run the recovery path until no delivery is pending or sending (or timeout)."""
    from notifications.services import deliveries_send

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deliveries_send()
        open_ = Delivery.objects.filter(
            status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING]
        )
        if not open_.exists():
            break
        time.sleep(0.05)
    return list(Delivery.objects.order_by("pk"))


def call_task(task, *args):
    """Run `task` here, as db_worker would: with a context of its own (a fresh task
    id), but without going through a backend."""
    from django_tasks.base import TaskContext, TaskResult, TaskResultStatus

    now = timezone.now()
    result = TaskResult(
        task=task,
        id=str(uuid.uuid4()),
        status=TaskResultStatus.RUNNING,
        enqueued_at=now,
        started_at=now,
        finished_at=None,
        last_attempted_at=now,
        args=list(args),
        kwargs={},
        backend=task.backend,
        errors=[],
        worker_ids=["test"],
    )
    return task.call(TaskContext(task_result=result), *args)
