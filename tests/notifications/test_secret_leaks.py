"""A tool's client secret and SMTP password never leave the tool's settings.

Both are set to sentinel values the sandbox accepts, deliveries are sent (some
retried) through the database task backend and its worker, then both are changed to
wrong sentinels so that deliveries fail authenticating. None of the four sentinels
may then appear in the delivery log pages, in Delivery or Event rows, in the task
rows (arguments and results) or in any log record, at DEBUG.
"""

import json
import logging
import time

import pytest
from django.db import connection
from django.urls import reverse
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult

from integrations.forms.smtp import SmtpForm
from integrations.models import (
    HealthCheck,
    HealthIncident,
    Integration,
    IntegrationState,
)
from integrations.services import integration_save
from notifications.models import Delivery, DeliveryStatus, Event, EventKind, ToolLink
from notifications.services import event_emit
from tests.integrations.smtp_support import drawer_data
from tests.tools import GRAPH_PROVIDER, activate_azure_mail

# URL-safe characters only: a form-encoded request body logged by mistake would
# show them as they are.
GOOD_SECRET = "SENTINEL-client-secret-Q7v3xK9pL2"
WRONG_SECRET = "SENTINEL-wrong-secret-Z4m8nR1tB6"
GOOD_PASSWORD = "SENTINEL-smtp-password-H5c2wJ8yD3"
WRONG_PASSWORD = "SENTINEL-wrong-password-V9k4sF7gA1"
SENTINELS = (GOOD_SECRET, WRONG_SECRET, GOOD_PASSWORD, WRONG_PASSWORD)

# The sandbox is the stand-in for Microsoft's servers, not the product: what it
# logs about the requests it receives is not the product's to keep secret.
SANDBOX_LOGGERS = ("sandbox", "aiosmtpd", "mail.log", "aiohttp")
DEBUG_LOGGERS = (
    "integrations",
    "notifications",
    "projects",
    "django",
    "django.db.backends",
    "django_tasks",
    "django_tasks_db",
    "msal",
    "urllib3",
    "requests",
)


@pytest.fixture
def sql_logged():
    """SQL statements and their parameters logged (django.db.backends, DEBUG)."""
    connection.force_debug_cursor = True
    yield
    connection.force_debug_cursor = False


@pytest.fixture
def db_tasks(settings):
    """The database task backend, as in production, instead of the immediate one."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


def save_graph_tool(sandbox, secret):
    return activate_azure_mail(sandbox.seed, client_secret=secret)


def save_smtp_tool(sandbox, password):
    form = SmtpForm(drawer_data(sandbox, "basic", password=password))
    assert form.is_valid(), form.errors
    return integration_save(
        provider_key="smtp", cleaned_data=form.cleaned_data, actor=None
    )


def work(timeout=20.0):
    """Run the database worker until no delivery is left open (retries included)."""
    deadline = time.monotonic() + timeout
    while True:
        Worker(
            queue_names=["*"],
            interval=0,
            batch=True,
            backend_name="default",
            startup_delay=False,
            max_tasks=None,
            worker_id="sentinel-test",
            excluded_queue_names=[],
        ).run()
        open_ = Delivery.objects.filter(
            status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING]
        )
        if not open_.exists() or time.monotonic() > deadline:
            return
        time.sleep(0.1)


def emit_for_both_tools(project):
    event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
    event_emit(
        project=project,
        kind=EventKind.NEW_VULNERABILITIES,
        payload={"counts": {"high": 1}},
    )


def rows_text(model) -> str:
    """Every column of every row of `model`, as text."""
    fields = model._meta.concrete_fields
    return "\n".join(
        json.dumps([f.value_from_object(row) for f in fields], default=str)
        for row in model.objects.all()
    )


def assert_no_sentinel(text: str, where: str):
    for sentinel in SENTINELS:
        assert sentinel not in text, f"{sentinel} found in {where}"


@pytest.mark.django_db(transaction=True)
def test_secrets_never_reach_pages_rows_tasks_or_logs(
    client, sandbox, project, owner, security_admin, db_tasks, sql_logged, caplog
):
    caplog.set_level(logging.DEBUG)
    for name in DEBUG_LOGGERS:  # some are quieter in settings.LOGGING
        caplog.set_level(logging.DEBUG, logger=name)
    seed = sandbox.seed
    sandbox.control(
        "POST",
        f"/tenants/{seed['tenant_id']}/apps/{seed['client_id']}/secrets",
        json={"value": GOOD_SECRET},
    )
    sandbox.control(
        "PATCH",
        f"/tenants/{seed['tenant_id']}/users/{seed['user']}",
        json={"password": GOOD_PASSWORD},
    )
    for tool in (
        save_graph_tool(sandbox, GOOD_SECRET),
        save_smtp_tool(sandbox, GOOD_PASSWORD),
    ):
        ToolLink.objects.create(
            project=project,
            integration=tool,
            minimum_severity="info",
            notify_scan_completed=True,
        )

    # Right secrets: sent, one of them after a retry.
    sandbox.add_fault(target="graph", status=503, count=1)
    emit_for_both_tools(project)
    work()
    sent = Delivery.objects.filter(status=DeliveryStatus.SENT)
    assert sent.count() == 4, list(Delivery.objects.values("status", "error_code"))
    assert sent.filter(attempts=2).exists()
    assert len(sandbox.messages()) == 4

    # Wrong secrets: authentication fails, for good; the tools need attention
    # (their reason and health history recorded) and the deliveries wait.
    save_graph_tool(sandbox, WRONG_SECRET)
    save_smtp_tool(sandbox, WRONG_PASSWORD)
    emit_for_both_tools(project)
    work()
    waiting = Delivery.objects.filter(status=DeliveryStatus.PENDING)
    assert waiting.count() == 4
    tried = waiting.filter(error_code="tool_needs_attention")
    assert set(tried.values_list("integration__provider", flat=True)) == {
        GRAPH_PROVIDER,
        "smtp",
    }
    broken = Integration.objects.filter(state=IntegrationState.NEEDS_ATTENTION)
    assert broken.count() == 2
    assert all(broken.values_list("attention_code", flat=True))
    assert len(sandbox.messages()) == 4

    # the delivery logs, the project's and every project's, and the tools page
    client.force_login(owner)
    for url in (
        reverse("projects:deliveries", kwargs={"slug": project.slug}),
        reverse("projects:notification_tools", kwargs={"slug": project.slug}),
    ):
        response = client.get(url)
        assert response.status_code == 200
        assert_no_sentinel(response.content.decode(), url)
    client.force_login(security_admin)
    url = reverse("notifications:deliveries")
    response = client.get(url)
    assert response.status_code == 200
    assert "Waiting for the tool" in response.content.decode()
    assert_no_sentinel(response.content.decode(), url)

    # the rows: deliveries, events, and the tasks' arguments and results
    assert DBTaskResult.objects.filter(return_value__isnull=False).exists()
    for model in (Delivery, Event, DBTaskResult, HealthCheck, HealthIncident):
        assert model.objects.exists()
        assert_no_sentinel(rows_text(model), model.__name__)

    # the log records, message, arguments and tracebacks
    product_records = [
        r for r in caplog.records if not r.name.startswith(SANDBOX_LOGGERS)
    ]
    assert any(r.name.startswith("notifications") for r in product_records)
    assert any(r.levelno == logging.DEBUG for r in product_records)
    logged = "\n".join(
        f"{caplog.handler.format(r)} {r.args!r} {r.__dict__!r}" for r in product_records
    )
    assert_no_sentinel(logged, "the log records")
