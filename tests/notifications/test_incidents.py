"""A broken tool is flagged and people are told (issue 14, items 4 and 5): a send
failure a person must fix opens one incident with one email (through another
active tool), deliveries wait instead of failing, and the next success closes the
incident with a second email and sends what waited. Who is told: the recipients
form on the Notification Tools page."""

import time

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from integrations.models import (
    AuditEntry,
    HealthCheck,
    HealthCheckKind,
    HealthIncident,
    IntegrationState,
    ToolHealthSettings,
)
from integrations.providers import identity
from notifications.models import Delivery, DeliveryStatus, EventKind
from notifications.services import deliveries_send, event_emit
from notifications.services.health_checks import attention_rechecks_run
from notifications.services.tool_health import tool_health_recipients
from notifications.troubleshooting import delivery_troubleshooting
from tests.tools import activate_azure_mail

pytestmark = pytest.mark.django_db(transaction=True)

SEEDED = ["Mail.Send", "SMTP.SendAsApp", "IMAP.AccessAsApp"]


@pytest.fixture
def security_admin(security_admin):
    security_admin.email = "secadmin@contoso.onmicrosoft.com"
    security_admin.save()
    return security_admin


def app_permissions(sandbox, permissions):
    seed = sandbox.seed
    sandbox.control(
        "PATCH",
        f"/tenants/{seed['tenant_id']}/apps/{seed['client_id']}",
        json={"application_permissions": permissions},
    )


def fresh_tokens(*integrations):
    identity.forget_apps()
    for integration in integrations:
        integration.token_cache = ""
        integration.save(update_fields=["token_cache"])


def emit(project, count=2):
    with transaction.atomic():
        for i in range(count):
            event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={"n": i})


def drain(timeout=20.0):
    """Send until nothing is due now (waiting deliveries stay pending)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deliveries_send()
        due = Delivery.objects.filter(
            status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING],
            next_attempt_at__lte=timezone.now(),
        )
        if not due.exists():
            return
        time.sleep(0.05)
    raise AssertionError("deliveries still due")


def health_emails(sandbox, to="secadmin@contoso.onmicrosoft.com"):
    return sandbox.messages(to=to)


def test_send_failure_opens_one_incident_deliveries_wait_and_a_recheck_closes_it(
    sandbox, security_admin, link, smtp_link
):
    graph_tool = link.integration
    app_permissions(sandbox, ["SMTP.SendAsApp", "IMAP.AccessAsApp"])  # no Mail.Send
    fresh_tokens(graph_tool)

    emit(link.project, 3)
    drain()

    graph_tool.refresh_from_db()
    assert graph_tool.state == IntegrationState.NEEDS_ATTENTION
    assert graph_tool.attention_detail == "Application permission not granted"
    [incident] = HealthIncident.objects.all()
    assert incident.closed_at is None and incident.error_code == "permission_missing"
    waiting = Delivery.objects.filter(integration=graph_tool, project=link.project)
    assert waiting.count() == 3
    for delivery in waiting:
        assert delivery.status == DeliveryStatus.PENDING
        assert delivery.attempts == 0
        assert delivery.next_attempt_at > timezone.now()
    assert "tool_needs_attention" in {d.error_code for d in waiting}
    assert delivery_troubleshooting("tool_needs_attention").title == (
        "Waiting for the tool"
    )
    # Exactly one email, through the SMTP tool (the broken one cannot send).
    [opened] = health_emails(sandbox)
    assert opened["transport"] == "smtp"
    assert opened["subject"] == (
        "Microsoft Azure Mail needs attention: Application permission not granted"
    )
    assert "waiting, not lost" in opened["text"]
    [send_check] = HealthCheck.objects.filter(kind=HealthCheckKind.SEND)
    assert not send_check.ok and send_check.error_code == "permission_missing"
    # The SMTP link's deliveries went out meanwhile.
    assert all(
        d.status == DeliveryStatus.SENT
        for d in Delivery.objects.filter(integration=smtp_link.integration)
    )

    # More failures change nothing: still one incident, one email.
    emit(link.project, 1)
    drain()
    assert HealthIncident.objects.count() == 1
    assert len(health_emails(sandbox)) == 1

    # The permission comes back: the recheck succeeds, closes, sends what waited.
    app_permissions(sandbox, SEEDED)
    fresh_tokens(graph_tool)
    assert attention_rechecks_run() == 1
    drain()

    graph_tool.refresh_from_db()
    assert graph_tool.state == IntegrationState.ACTIVE
    assert graph_tool.attention_detail == ""
    incident.refresh_from_db()
    assert incident.closed_at is not None
    assert {
        d.status
        for d in Delivery.objects.filter(integration=graph_tool, project=link.project)
    } == {DeliveryStatus.SENT}
    assert len(sandbox.messages(to=sandbox.seed["recipient"], subject=None)) >= 4
    subjects = [m["subject"] for m in health_emails(sandbox)]
    assert subjects[1:] == ["Microsoft Azure Mail works again"]
    assert [c.ok for c in HealthCheck.objects.filter(kind=HealthCheckKind.CHECK)] == [
        True
    ]


def test_a_save_then_a_successful_send_closes_the_incident(
    sandbox, security_admin, link, smtp_link
):
    graph_tool = link.integration
    seed = sandbox.seed
    app_permissions(sandbox, ["SMTP.SendAsApp", "IMAP.AccessAsApp"])  # no Mail.Send
    fresh_tokens(graph_tool)
    emit(link.project, 1)
    drain()
    [incident] = HealthIncident.objects.all()
    assert len(health_emails(sandbox)) == 1

    app_permissions(sandbox, SEEDED)
    fresh_tokens(graph_tool)
    activate_azure_mail(seed)  # a security admin saves the tool
    # What waited for the tool goes at once (its task is enqueued after the save's
    # commit; the tests' task backend runs it there and then), not at the next
    # recheck five minutes later.
    [waited] = Delivery.objects.filter(integration=graph_tool, project=link.project)
    assert waited.status == DeliveryStatus.SENT
    drain()

    incident.refresh_from_db()
    assert incident.closed_at is not None
    [delivery] = Delivery.objects.filter(integration=graph_tool, project=link.project)
    assert delivery.status == DeliveryStatus.SENT
    assert [m["subject"] for m in health_emails(sandbox)][1:] == [
        "Microsoft Azure Mail works again"
    ]
    assert [c.ok for c in HealthCheck.objects.filter(kind=HealthCheckKind.SEND)] == [
        True,
        False,
    ]


def test_a_delivery_waiting_longer_than_the_max_age_fails_with_words(
    sandbox, link, settings
):
    graph_tool = link.integration
    graph_tool.state = IntegrationState.NEEDS_ATTENTION
    graph_tool.save()
    emit(link.project, 1)
    drain()
    [delivery] = Delivery.objects.all()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.attempts == 0

    settings.NOTIFICATIONS_ATTENTION_MAX_AGE_SECONDS = 0
    Delivery.objects.update(next_attempt_at=timezone.now())
    drain()

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.error_code == "tool_needs_attention_too_long"
    words = delivery_troubleshooting(delivery.error_code)
    assert words.title == "The tool needed attention for too long"
    assert sandbox.messages() == []


def test_the_project_owner_sees_the_reason_and_that_notifications_wait(
    client, sandbox, link, owner
):
    graph_tool = link.integration
    graph_tool.state = IntegrationState.NEEDS_ATTENTION
    graph_tool.attention_detail = "Application permission not granted"
    graph_tool.save()
    client.force_login(owner)

    page = client.get(
        reverse("projects:notification_tools", args=[link.project.slug])
    ).content.decode()

    assert "Tool needs attention" in page
    assert "Application permission not granted" in page
    assert "Your notifications through this tool are waiting" in page


# --- who is told ----------------------------------------------------------------------


def test_recipients_form_saves_audits_and_defaults_to_security_admins(
    client, security_admin
):
    client.force_login(security_admin)
    url = reverse("integrations:health_recipients")
    page = client.get(reverse("integrations:notification_tools")).content.decode()
    assert "Tool health emails go to" in page
    assert tool_health_recipients() == ["secadmin@contoso.onmicrosoft.com"]

    response = client.post(
        url, {"health-recipients": "SOC@contoso.onmicrosoft.com; a@b.test"}
    )

    assert response.status_code == 302
    assert tool_health_recipients() == ["soc@contoso.onmicrosoft.com", "a@b.test"]
    entry = AuditEntry.objects.get(subject="tool-health:recipients")
    assert entry.actor == security_admin
    assert entry.detail == "soc@contoso.onmicrosoft.com, a@b.test"
    page = client.get(reverse("integrations:notification_tools")).content.decode()
    assert "soc@contoso.onmicrosoft.com, a@b.test" in page

    client.post(url, {"health-recipients": ""})
    assert ToolHealthSettings.objects.get(pk=1).recipients == []
    assert tool_health_recipients() == ["secadmin@contoso.onmicrosoft.com"]
    assert AuditEntry.objects.filter(subject="tool-health:recipients").count() == 2


def test_recipients_form_refuses_bad_addresses_and_non_admins(
    client, security_admin, owner
):
    client.force_login(security_admin)
    url = reverse("integrations:health_recipients")

    response = client.post(
        url, {"health-recipients": "soc@contoso.onmicrosoft.com, nope"}
    )

    assert response.status_code == 400
    assert "These are not valid email addresses: nope" in response.content.decode()
    assert not ToolHealthSettings.objects.exists()
    assert not AuditEntry.objects.filter(subject="tool-health:recipients").exists()

    client.force_login(owner)
    response = client.post(url, {"health-recipients": "x@contoso.onmicrosoft.com"})
    assert response.status_code in (302, 403)
    assert not ToolHealthSettings.objects.exists()


@pytest.mark.parametrize(
    "value, words",
    [
        (
            "soc@contoso.onmicrosoft.com\r\nBcc: x@evil.test",
            "not valid email addresses",
        ),
        ("<script>alert(1)</script>@x.test", "not valid email addresses"),
        ("a@b.test," * 400, "at most 2000 characters"),
        (",".join(f"u{i}@b.test" for i in range(60)), "Enter at most 50 addresses"),
    ],
    ids=["crlf", "html", "too long", "too many"],
)
def test_recipients_form_refuses_hostile_input_and_saves_nothing(
    client, security_admin, value, words
):
    client.force_login(security_admin)
    response = client.post(
        reverse("integrations:health_recipients"), {"health-recipients": value}
    )

    assert response.status_code == 400
    page = response.content.decode()
    assert words in page
    assert "<script>alert" not in page
    assert not ToolHealthSettings.objects.exists()
    assert not AuditEntry.objects.filter(subject="tool-health:recipients").exists()
