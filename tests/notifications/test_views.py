"""Project › Settings › Notification Tools and the delivery logs: who sees and changes what."""

import pytest
from django.urls import reverse

from integrations.services import integration_deactivate
from notifications.models import Delivery, DeliveryStatus, EventKind, ToolLink
from notifications.services import event_emit

pytestmark = pytest.mark.django_db


def tools_url(project):
    return reverse("projects:notification_tools", kwargs={"slug": project.slug})


def deliveries_url(project):
    return reverse("projects:deliveries", kwargs={"slug": project.slug})


def as_user(client, user):
    client.force_login(user)
    return client


def update_data(link, **overrides):
    prefix = f"link-{link.pk}-"
    data = {
        "enabled": "on",
        "notify_new_vulnerabilities": "on",
        "minimum_severity": "medium",
        "notify_status_changed": "on",
        "status_transitions": ["resolved", "reopened"],
        "recipients_choice": "project",
        "recipients": "a@contoso.onmicrosoft.com, b@contoso.onmicrosoft.com",
        "delivery_mode": "digest",
    }
    data.update(overrides)
    return {prefix + k: v for k, v in data.items()}


def test_owner_links_configures_and_unlinks_a_tool(client, owner, project, graph_tool):
    as_user(client, owner)
    page = client.get(tools_url(project))
    assert page.status_code == 200
    assert "Microsoft Azure Mail" in page.content.decode()
    assert ">Link</button>" in page.content.decode()

    response = client.post(
        reverse("projects:notification_tool_link", args=[project.slug, graph_tool.pk])
    )
    assert response.status_code == 302
    link = ToolLink.objects.get(project=project, integration=graph_tool)

    response = client.post(
        reverse("projects:notification_tool_update", args=[project.slug, link.pk]),
        update_data(link),
    )
    assert response.status_code == 302, response.content.decode()
    link.refresh_from_db()
    assert link.minimum_severity == "medium"
    assert link.notify_scan_completed is False
    assert link.status_transitions == ["resolved", "reopened"]
    assert link.recipients == ["a@contoso.onmicrosoft.com", "b@contoso.onmicrosoft.com"]
    assert link.delivery_mode == "digest"

    bad = client.post(
        reverse("projects:notification_tool_update", args=[project.slug, link.pk]),
        update_data(link, recipients="not an address\r\nBcc: x@evil.example"),
    )
    assert bad.status_code == 400
    assert "not valid email addresses" in bad.content.decode()

    response = client.post(
        reverse("projects:notification_tool_unlink", args=[project.slug, link.pk])
    )
    assert response.status_code == 302
    assert not ToolLink.objects.exists()


def test_member_reads_but_cannot_change(client, member, project, link):
    as_user(client, member)
    page = client.get(tools_url(project))
    assert page.status_code == 200
    body = page.content.decode()
    assert "Send test notification" not in body and ">Unlink</button>" not in body
    assert "disabled" in body
    for name, args in [
        ("projects:notification_tool_update", [project.slug, link.pk]),
        ("projects:notification_tool_unlink", [project.slug, link.pk]),
        ("projects:notification_tool_test", [project.slug, link.pk]),
        ("projects:notification_tool_link", [project.slug, link.integration_id]),
    ]:
        assert (
            client.post(reverse(name, args=args), update_data(link)).status_code == 403
        )
    assert client.get(deliveries_url(project)).status_code == 200
    assert ToolLink.objects.filter(pk=link.pk).exists()


def test_member_of_another_project_sees_and_changes_nothing(
    client, outsider, other_project, project, link
):
    """A member of project B cannot see or change project A's settings or log."""
    event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
    delivery = Delivery.objects.get()
    as_user(client, outsider)
    assert client.get(tools_url(other_project)).status_code == 200
    assert client.get(tools_url(project)).status_code == 404
    assert client.get(deliveries_url(project)).status_code == 404
    for name, args in [
        ("projects:notification_tool_update", [project.slug, link.pk]),
        ("projects:notification_tool_unlink", [project.slug, link.pk]),
        ("projects:notification_tool_test", [project.slug, link.pk]),
        ("projects:notification_tool_link", [project.slug, link.integration_id]),
        ("projects:delivery_resend", [project.slug, delivery.uuid]),
    ]:
        assert (
            client.post(reverse(name, args=args), update_data(link)).status_code == 404
        )
    # nor through their own project's URLs with A's ids
    for name, args in [
        ("projects:notification_tool_update", [other_project.slug, link.pk]),
        ("projects:notification_tool_unlink", [other_project.slug, link.pk]),
        ("projects:delivery_resend", [other_project.slug, delivery.uuid]),
    ]:
        assert (
            client.post(reverse(name, args=args), update_data(link)).status_code == 404
        )
    assert "Shop" not in client.get(deliveries_url(other_project)).content.decode()
    assert client.get(reverse("notifications:deliveries")).status_code == 403
    assert ToolLink.objects.filter(pk=link.pk).exists()


def test_anonymous_is_sent_to_sign_in(client, project, link):
    response = client.get(tools_url(project))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_owner_sends_a_test_notification(
    client, owner, project, link, sandbox, django_capture_on_commit_callbacks
):
    as_user(client, owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("projects:notification_tool_test", args=[project.slug, link.pk])
        )
    assert response.status_code == 302
    delivery = Delivery.objects.get(event__kind=EventKind.TEST)
    assert delivery.status == DeliveryStatus.SENT
    (message,) = sandbox.messages()
    assert message["subject"] == "Test notification for Shop"


def test_deactivated_tool_shows_its_link_as_paused(
    client, owner, project, link, graph_tool
):
    integration_deactivate(provider_key=graph_tool.provider, actor=None)
    as_user(client, owner)
    body = client.get(tools_url(project)).content.decode()
    assert "Paused" in body
    assert "sends nothing" in body
    event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
    assert not Delivery.objects.exists()


def test_delivery_log_shows_troubleshooting_and_resend(
    client,
    owner,
    member,
    security_admin,
    project,
    link,
    sandbox,
    settings,
    django_capture_on_commit_callbacks,
):
    settings.NOTIFICATIONS_MAX_ATTEMPTS = 1
    sandbox.add_fault(target="graph", status=503, count=1)
    with django_capture_on_commit_callbacks(execute=True):
        event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED

    as_user(client, member)
    body = client.get(deliveries_url(project)).content.decode()
    assert "Failed" in body and "sandbox" not in body.lower()
    assert "security-team@contoso.onmicrosoft.com" in body
    assert ">Resend</button>" not in body
    resend = reverse("projects:delivery_resend", args=[project.slug, delivery.uuid])
    assert client.post(resend).status_code == 403

    as_user(client, owner)
    body = client.get(deliveries_url(project)).content.decode()
    assert ">Resend</button>" in body
    assert delivery.request_id in body  # Graph's request-id
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(resend).status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT

    as_user(client, security_admin)
    body = client.get(reverse("notifications:deliveries")).content.decode()
    assert "Shop" in body and "Sent" in body
