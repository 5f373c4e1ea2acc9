"""Project › Settings › Notification Tools and the delivery logs: who sees and changes what."""

import re
import uuid
from urllib.parse import quote

import pytest
from django.urls import reverse
from django.utils.html import escape

from integrations.services import integration_deactivate
from notifications.models import Delivery, DeliveryStatus, Event, EventKind, ToolLink
from notifications.services import event_emit
from tests.notifications.conftest import settle

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


def test_deactivated_tool_shows_its_link_as_inactive(
    client, owner, project, link, graph_tool
):
    integration_deactivate(provider_key=graph_tool.provider, actor=None)
    as_user(client, owner)
    body = client.get(tools_url(project)).content.decode()
    assert "Inactive" in body
    assert "sends nothing" in body
    event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
    assert not Delivery.objects.exists()


def test_owner_switching_a_link_off_stops_its_emails(
    client, owner, project, link, sandbox, django_capture_on_commit_callbacks
):
    as_user(client, owner)
    data = update_data(link, recipients_choice="tool", recipients="")
    del data[f"link-{link.pk}-enabled"]  # an unticked box is not sent
    url = reverse("projects:notification_tool_update", args=[project.slug, link.pk])
    assert client.post(url, data).status_code == 302
    link.refresh_from_db()
    assert link.enabled is False
    assert "Disabled" in client.get(tools_url(project)).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        event_emit(project=project, kind=EventKind.STATUS_CHANGED, payload={})
        event_emit(
            project=project,
            kind=EventKind.NEW_VULNERABILITIES,
            payload={"counts": {"critical": 2}},
        )
    assert not Delivery.objects.exists()
    assert sandbox.messages() == []


def test_linking_a_deactivated_tool_is_refused_on_the_page(
    client, owner, project, graph_tool
):
    integration_deactivate(provider_key=graph_tool.provider, actor=None)
    as_user(client, owner)
    page = client.get(tools_url(project)).content.decode()
    assert ">Link</button>" not in page  # not offered...
    response = client.post(  # ...and refused when posted anyway
        reverse("projects:notification_tool_link", args=[project.slug, graph_tool.pk]),
        follow=True,
    )
    assert response.status_code == 200
    assert "This notification tool is not active" in response.content.decode()
    assert not ToolLink.objects.exists()


@pytest.mark.parametrize("switch", ["deactivate the tool", "untick Enabled"])
def test_test_send_on_an_inactive_or_switched_off_link_is_refused(
    client, owner, project, link, graph_tool, sandbox, switch
):
    if switch == "deactivate the tool":
        integration_deactivate(provider_key=graph_tool.provider, actor=None)
        says = "This link is inactive: a security admin deactivated"
    else:
        link.enabled = False
        link.save()
        says = "This link is switched off, so it sends nothing"
    as_user(client, owner)
    page = client.get(tools_url(project)).content.decode()
    assert '<button type="submit" disabled>Send test notification</button>' in page
    response = client.post(
        reverse("projects:notification_tool_test", args=[project.slug, link.pk]),
        follow=True,
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert says in body and "Test notification queued" not in body
    assert not Event.objects.exists() and not Delivery.objects.exists()
    assert sandbox.messages() == []


HOSTILE_IDS = ["²", "٣", "１", "9" * 19, "9" * 30, "9" * 5000, "-1", "abc"]


@pytest.mark.parametrize("bad_id", [*HOSTILE_IDS, "999999999999999999"])
def test_hostile_link_and_tool_ids_are_404(client, owner, project, link, bad_id):
    as_user(client, owner)
    base = f"/projects/{project.slug}/settings/notification-tools"
    for path in (
        f"{base}/{quote(bad_id)}/",
        f"{base}/{quote(bad_id)}/unlink/",
        f"{base}/{quote(bad_id)}/test/",
        f"{base}/link/{quote(bad_id)}/",
    ):
        assert client.post(path, update_data(link)).status_code == 404
    assert ToolLink.objects.filter(pk=link.pk).exists()
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "bad_uuid",
    [
        "",
        "not-a-uuid",
        "²",
        "1" * 5000,
        str(uuid.uuid4()),  # well formed, no such delivery
        str(uuid.uuid4()).replace("-", ""),
        "１" * 32,
    ],
)
def test_hostile_delivery_ids_for_resend_are_404(
    client, owner, security_admin, project, bad_uuid
):
    as_user(client, owner)
    path = f"/projects/{project.slug}/deliveries/{quote(bad_uuid)}/resend/"
    assert client.post(path).status_code == 404
    as_user(client, security_admin)
    assert (
        client.post(f"/notifications/deliveries/{quote(bad_uuid)}/resend/").status_code
        == 404
    )


@pytest.mark.parametrize("page", ["", "²", "٣", "-1", "0", "9" * 30, "9" * 5000, "x"])
def test_hostile_page_numbers_still_show_the_delivery_logs(
    client, owner, security_admin, project, link, page
):
    event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
    as_user(client, owner)
    assert client.get(deliveries_url(project), {"page": page}).status_code == 200
    as_user(client, security_admin)
    response = client.get(reverse("notifications:deliveries"), {"page": page})
    assert response.status_code == 200


def attempts_cell(count):
    return f'<td class="attempts">{count}</td>'


def test_delivery_log_shows_troubleshooting_attempts_and_reply_and_resends(
    client,
    owner,
    member,
    outsider,
    security_admin,
    project,
    other_project,
    link,
    graph_tool,
    sandbox,
    settings,
    django_capture_on_commit_callbacks,
):
    settings.NOTIFICATIONS_MAX_ATTEMPTS = 2
    sandbox.add_fault(target="graph", status=503, count=2)
    with django_capture_on_commit_callbacks(execute=True):
        event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
    (delivery,) = settle()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == 2 and delivery.request_id

    as_user(client, member)
    body = client.get(deliveries_url(project)).content.decode()
    assert "Failed" in body and "sandbox" not in body.lower()
    assert "security-team@contoso.onmicrosoft.com" in body
    # the troubleshooting words for the error, the attempts, Graph's request-id
    assert "Microsoft 365 is temporarily unavailable" in body
    assert "The service answered with a temporary error." in body
    assert attempts_cell(2) in body
    assert f"Reply: <code>{escape(delivery.request_id)}</code>" in body
    assert ">Resend</button>" not in body
    resend = reverse("projects:delivery_resend", args=[project.slug, delivery.uuid])
    assert client.post(resend).status_code == 403

    as_user(client, owner)
    body = client.get(deliveries_url(project)).content.decode()
    assert ">Resend</button>" in body
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(resend).status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.attempts == 1 and delivery.error_code == ""
    body = client.get(deliveries_url(project)).content.decode()
    assert "Microsoft 365 is temporarily unavailable" not in body
    assert attempts_cell(1) in body
    assert f"Accepted: <code>{escape(delivery.request_id)}</code>" in body
    assert ">Resend</button>" not in body  # nothing to resend

    # Resending a sent delivery is refused and changes nothing.
    sent_at = delivery.sent_at
    response = client.post(resend, follow=True)
    assert "Only a failed delivery can be sent again." in response.content.decode()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 1)
    assert delivery.sent_at == sent_at
    assert len(sandbox.messages()) == 1

    # Another project's failed delivery: a 404 through this project's address.
    ToolLink.objects.create(
        project=other_project, integration=graph_tool, notify_scan_completed=True
    )
    sandbox.add_fault(target="graph", status=503, count=2)
    with django_capture_on_commit_callbacks(execute=True):
        event_emit(project=other_project, kind=EventKind.SCAN_COMPLETED, payload={})
    theirs = Delivery.objects.get(project=other_project)
    settle()
    theirs.refresh_from_db()
    assert theirs.status == DeliveryStatus.FAILED
    as_user(client, owner)
    assert (
        client.post(
            reverse("projects:delivery_resend", args=[project.slug, theirs.uuid])
        ).status_code
        == 404
    )
    assert theirs.request_id not in client.get(deliveries_url(project)).content.decode()
    theirs.refresh_from_db()
    assert theirs.status == DeliveryStatus.FAILED and theirs.attempts == 2

    as_user(client, security_admin)
    body = client.get(reverse("notifications:deliveries")).content.decode()
    assert "Shop" in body and "Payroll" in body and "Sent" in body
    assert escape(theirs.request_id) in body
    admin_resend = reverse("notifications:delivery_resend", args=[delivery.uuid])
    response = client.post(admin_resend, follow=True)
    assert "Only a failed delivery can be sent again." in response.content.decode()
    assert len(sandbox.messages()) == 1


def test_delivery_log_shows_the_smtp_servers_reply(
    client, owner, project, smtp_link, sandbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.SENT
    assert delivery.request_id.startswith("250")  # the reply to DATA
    as_user(client, owner)
    body = client.get(deliveries_url(project)).content.decode()
    assert f"Accepted: <code>{escape(delivery.request_id)}</code>" in body
    assert attempts_cell(1) in body


def test_delivery_log_shows_when_a_delivery_was_claimed_and_how_often_throttled(
    client, owner, project, link, sandbox, django_capture_on_commit_callbacks
):
    from django.utils import timezone

    with django_capture_on_commit_callbacks(execute=True):
        event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
        event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
    sent, throttled = Delivery.objects.order_by("pk")
    assert sent.status == DeliveryStatus.SENT and sent.claimed_at is not None
    Delivery.objects.filter(pk=throttled.pk).update(throttle_count=3)
    Delivery.objects.filter(pk=sent.pk).update(throttle_count=1)

    as_user(client, owner)
    body = client.get(deliveries_url(project)).content.decode()
    claimed = timezone.localtime(sent.claimed_at).strftime("%Y-%m-%d %H:%M UTC")
    assert re.search(rf"Claimed <time [^>]*>{claimed}</time>", body)
    assert "throttled 3×" in body and "throttled 1×" in body

    # Never claimed, never throttled: neither line.
    Delivery.objects.update(claimed_at=None, throttle_count=0)
    body = client.get(deliveries_url(project)).content.decode()
    assert "Claimed" not in body and "throttled" not in body
