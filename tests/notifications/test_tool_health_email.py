"""Tool-health emails (issue 14): to the chosen recipients or every security admin,
through the tool they are about, or another active tool when that one cannot send;
once per key; in the security admins' delivery log."""

import pytest
from django.urls import reverse

from integrations.models import IntegrationState, ToolHealthSettings
from notifications.models import Delivery, DeliveryStatus, EventKind
from notifications.services.tool_health import (
    tool_health_email_send,
    tool_health_recipients,
)
from tests.notifications.conftest import settle

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def security_admin(security_admin):
    """A security admin with an address of the sandbox tenant."""
    security_admin.email = "SecAdmin@contoso.onmicrosoft.com"
    security_admin.save()
    return security_admin


def send(about, key="k1", **kwargs):
    return tool_health_email_send(
        about=about,
        dedupe_key=key,
        subject=kwargs.pop("subject", "The client secret expires in 14 days"),
        text=kwargs.pop(
            "text", "Microsoft Azure Mail's secret expires on 2027-01-01.\n\nRenew it."
        ),
        action_url=kwargs.pop(
            "action_url", "https://appsec.example.test/integrations/notification-tools/"
        ),
        action_label="Open the tool",
        **kwargs,
    )


def test_recipients_default_to_security_admins_and_follow_the_chosen_list(
    security_admin, owner
):
    assert tool_health_recipients() == [security_admin.email.lower()]
    ToolHealthSettings.objects.create(pk=1, recipients=["soc@contoso.onmicrosoft.com"])
    assert tool_health_recipients() == ["soc@contoso.onmicrosoft.com"]


def test_sent_through_the_tool_once_and_shown_in_the_admins_log(
    client, sandbox, security_admin, graph_tool
):
    delivery = send(graph_tool)
    assert delivery is not None
    assert send(graph_tool) is None  # the same key: once
    [sent] = [d for d in settle() if d.pk == delivery.pk]
    assert sent.status == DeliveryStatus.SENT
    assert sent.project is None and sent.event.kind == EventKind.TOOL_HEALTH
    [message] = sandbox.messages(to=security_admin.email.lower())
    assert message["subject"] == "The client secret expires in 14 days"
    # Graph carries the HTML part (Text only when there is no HTML).
    assert '<p style="margin:0 0 12px;">Renew it.</p>' in message["html"]
    assert (
        "https://appsec.example.test/integrations/notification-tools/"
        in (message["html"])
    )
    assert message["headers"]["X-AppSec-Event"] == "tool_health"

    client.force_login(security_admin)
    log = client.get(reverse("notifications:deliveries")).content.decode()
    assert "Tool health" in log
    assert "The client secret expires in 14 days" in log
    view = client.get(reverse("notifications:delivery", args=[delivery.uuid]))
    assert view.status_code == 200


def test_a_broken_tool_is_reported_through_another_active_tool(
    sandbox, security_admin, graph_tool, smtp_link
):
    graph_tool.state = IntegrationState.NEEDS_ATTENTION
    graph_tool.save()
    delivery = send(graph_tool, key="incident:1")
    assert delivery.integration_id == smtp_link.integration_id
    settle()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    [message] = sandbox.messages(to=security_admin.email.lower())
    assert message["transport"] == "smtp"
    assert "Renew it." in message["text"]


def test_nothing_is_queued_without_recipients_or_a_tool_that_can_send(
    sandbox, graph_tool, caplog, django_user_model
):
    assert send(graph_tool) is None  # no security admin with an address
    assert "no recipients" in caplog.text
    ToolHealthSettings.objects.create(pk=1, recipients=["soc@contoso.onmicrosoft.com"])
    graph_tool.state = IntegrationState.NEEDS_ATTENTION
    graph_tool.save()
    assert send(graph_tool) is None
    assert "no tool can send" in caplog.text
    assert not Delivery.objects.exists()


def test_only_links_to_this_site_are_rendered(sandbox, security_admin, graph_tool):
    send(graph_tool, action_url="https://evil.example/phish")
    settle()
    [message] = sandbox.messages(to=security_admin.email.lower())
    assert "evil.example" not in (message["html"] or "") + (message["text"] or "")
