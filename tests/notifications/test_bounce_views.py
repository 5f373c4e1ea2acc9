"""Bounces on the pages: the delivery log's Bounced status, reasons and filter; the
bounced addresses on a project's link (owners clear them); the tool's card."""

import pytest
from django.urls import reverse
from django.utils import timezone

from notifications.models import (
    BouncedRecipient,
    Delivery,
    DeliveryReport,
    DeliveryStatus,
    EventKind,
    ReportKind,
)
from notifications.services import event_emit

pytestmark = pytest.mark.django_db

GHOST = "ghost@contoso.onmicrosoft.com"


def deliveries_url(project):
    return reverse("projects:deliveries", kwargs={"slug": project.slug})


def tools_url(project):
    return reverse("projects:notification_tools", kwargs={"slug": project.slug})


@pytest.fixture
def bounced_delivery(project, link):
    link.recipients = [GHOST, "soc@contoso.onmicrosoft.com"]
    link.save()
    event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
    delivery = Delivery.objects.get()
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.BOUNCED)
    DeliveryReport.objects.create(
        delivery=delivery,
        recipient=GHOST,
        kind=ReportKind.BOUNCED,
        status_code="5.1.10",
        diagnostic="550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found",
        reported_at=timezone.now(),
    )
    DeliveryReport.objects.create(
        delivery=delivery,
        recipient="soc@contoso.onmicrosoft.com",
        kind=ReportKind.DELAYED,
        status_code="4.4.7",
        reported_at=timezone.now(),
    )
    BouncedRecipient.objects.create(
        link=link,
        address=GHOST,
        bounce_count=3,
        last_status_code="5.1.10",
        last_bounced_at=timezone.now(),
        suppressed_at=timezone.now(),
    )
    return delivery


def test_the_log_shows_bounced_with_the_reason_and_filters_by_it(
    client, owner, project, link, bounced_delivery
):
    event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
    client.force_login(owner)
    page = client.get(deliveries_url(project)).content.decode()
    assert "status-bounced" in page
    assert f"Bounced for {GHOST}: 5.1.10" in page
    assert "does not exist" in page  # 5.1.10 in words
    assert "Delayed for soc@contoso.onmicrosoft.com: 4.4.7" in page
    assert page.count('<tr class="delivery-') == 2

    only = client.get(deliveries_url(project), {"status": "bounced"})
    assert only.status_code == 200
    assert only.content.decode().count('<tr class="delivery-') == 1

    none = client.get(deliveries_url(project), {"status": "failed"})
    assert "No notification emails with this status." in none.content.decode()


@pytest.mark.parametrize(
    "bad", ["bogus", "BOUNCED", "bounced\n", "<script>", "x" * 500]
)
def test_an_unknown_status_filter_says_what_to_choose(
    client, owner, security_admin, project, bad
):
    client.force_login(owner)
    response = client.get(deliveries_url(project), {"status": bad})
    assert response.status_code == 400
    assert "Choose a status from the list." in response.content.decode()
    assert "<script>" not in response.content.decode()
    client.force_login(security_admin)
    response = client.get(reverse("notifications:deliveries"), {"status": bad})
    assert response.status_code == 400


def test_filter_survives_paging(
    client, security_admin, project, link, bounced_delivery
):
    client.force_login(security_admin)
    page = client.get(reverse("notifications:deliveries"), {"status": "bounced"})
    assert 'value="bounced" selected' in page.content.decode()


def test_owner_sees_and_clears_a_bounced_address(
    client, owner, project, link, bounced_delivery
):
    client.force_login(owner)
    page = client.get(tools_url(project)).content.decode()
    assert GHOST in page
    assert "bounced 3 times" in page
    assert "Suppressed" in page
    clear = reverse(
        "projects:notification_tool_bounce_clear",
        kwargs={"slug": project.slug, "link_id": link.pk},
    )
    response = client.post(clear, {"address": GHOST.upper()}, follow=True)
    assert f"{GHOST} cleared" in response.content.decode()
    assert not BouncedRecipient.objects.exists()
    # Cleared: the next notification goes to it again.
    event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
    assert GHOST in Delivery.objects.latest("pk").recipients


@pytest.mark.parametrize(
    "bad", ["", "not an address", "a@b.c\r\nBcc: x@y.z", "x" * 400]
)
def test_clearing_rejects_bad_addresses_and_changes_nothing(
    client, owner, project, link, bounced_delivery, bad
):
    client.force_login(owner)
    clear = reverse(
        "projects:notification_tool_bounce_clear",
        kwargs={"slug": project.slug, "link_id": link.pk},
    )
    response = client.post(clear, {"address": bad}, follow=True)
    assert response.status_code == 200
    assert BouncedRecipient.objects.count() == 1


def test_a_member_cannot_clear_and_an_outsider_sees_nothing(
    client, member, outsider, project, link, bounced_delivery
):
    clear = reverse(
        "projects:notification_tool_bounce_clear",
        kwargs={"slug": project.slug, "link_id": link.pk},
    )
    client.force_login(member)
    page = client.get(tools_url(project)).content.decode()
    assert GHOST in page and "Clear</button>" not in page
    assert client.post(clear, {"address": GHOST}).status_code == 403
    client.force_login(outsider)
    assert client.post(clear, {"address": GHOST}).status_code == 404
    assert BouncedRecipient.objects.count() == 1


def test_the_tool_card_shows_bouncing_addresses(
    client, security_admin, project, link, bounced_delivery
):
    client.force_login(security_admin)
    page = client.get(reverse("integrations:notification_tools")).content.decode()
    assert "1 address bounces" in page
    assert "1 suppressed" in page
    assert GHOST in page


def test_another_project_s_owner_cannot_clear_through_their_own_project(
    client, outsider, other_project, link, bounced_delivery
):
    # The outsider owns "payroll"; the link belongs to the other project.
    client.force_login(outsider)
    clear = reverse(
        "projects:notification_tool_bounce_clear",
        kwargs={"slug": other_project.slug, "link_id": link.pk},
    )
    assert client.post(clear, {"address": GHOST}).status_code == 404
    assert BouncedRecipient.objects.count() == 1
