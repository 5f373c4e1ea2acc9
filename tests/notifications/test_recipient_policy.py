"""A tool's allowed recipient domains, enforced for a project's mail: when a link is
saved, when a test notification is sent, and again when a delivery is sent.

The sandbox delivers to any address (as Exchange Online would to an outside one),
so "nothing reaches the sandbox" is what keeps the mail in."""

import pytest
from django.urls import reverse

from integrations.models import AuditAction, AuditEntry, Integration
from integrations.services import integration_save
from notifications.exceptions import RecipientsRefused
from notifications.models import Delivery, DeliveryStatus, Event, EventKind
from notifications.services import delivery_resend, event_emit, link_update
from tests.notifications.conftest import settle
from tests.notifications.test_views import update_data
from tests.tools import azure_mail_values

pytestmark = pytest.mark.django_db

INSIDE = "appsec-shop@contoso.onmicrosoft.com"  # the seeded From's domain
OUTSIDE = "attacker@evil.example"


def allow(integration: Integration, domains: list[str]) -> None:
    """What a security admin's Save does to the tool's allowed domains."""
    integration.config = {**integration.config, "allowed_recipient_domains": domains}
    integration.save(update_fields=["config"])


def update_url(link):
    return reverse(
        "projects:notification_tool_update", args=[link.project.slug, link.pk]
    )


def send_test_url(link):
    return reverse("projects:notification_tool_test", args=[link.project.slug, link.pk])


def refusals():
    return list(
        AuditEntry.objects.filter(action=AuditAction.RECIPIENT_REFUSED).order_by("pk")
    )


# --- saving a link -----------------------------------------------------------------


def test_link_form_refuses_an_outside_address_naming_it_and_the_allowed_domains(
    client, owner, project, link
):
    client.force_login(owner)
    response = client.post(
        update_url(link), update_data(link, recipients=f"{INSIDE}, {OUTSIDE}")
    )

    assert response.status_code == 400
    html = response.content.decode()
    # On the Project recipients field, naming the address and what is allowed.
    field_errors = html.split('class="field-error" role="alert">', 1)[1].split("</p>")[
        0
    ]
    assert OUTSIDE in field_errors
    assert "contoso.onmicrosoft.com" in field_errors
    assert INSIDE not in field_errors
    link.refresh_from_db()
    assert link.recipients == [] and link.delivery_mode == "immediate"

    [entry] = refusals()
    assert entry.provider == "microsoft_azure_mail"
    assert entry.subject == "project:shop"
    assert entry.detail == OUTSIDE
    assert entry.actor == owner and entry.actor_name == "olivia"
    assert entry.succeeded is False and entry.error_code == "recipient_refused"


def test_the_security_admins_audit_log_shows_the_refusal(
    client, owner, security_admin, project, link
):
    client.force_login(owner)
    client.post(update_url(link), update_data(link, recipients=OUTSIDE))
    client.force_login(security_admin)
    html = client.get(reverse("integrations:audit_log")).content.decode()
    assert "Recipient refused" in html
    assert "project:shop" in html and OUTSIDE in html and "olivia" in html


def test_link_form_accepts_addresses_in_the_allowed_domains(
    client, owner, project, link
):
    client.force_login(owner)
    response = client.post(update_url(link), update_data(link, recipients=INSIDE))
    assert response.status_code == 302, response.content.decode()[:2000]
    link.refresh_from_db()
    assert link.recipients == [INSIDE]
    assert refusals() == []


def test_link_form_accepts_any_address_when_the_tool_allows_any(
    client, owner, project, link
):
    allow(link.integration, ["*"])
    client.force_login(owner)
    response = client.post(update_url(link), update_data(link, recipients=OUTSIDE))
    assert response.status_code == 302
    link.refresh_from_db()
    assert link.recipients == [OUTSIDE]


def test_link_form_follows_an_explicit_list_and_its_wildcards(
    client, owner, project, link
):
    allow(link.integration, ["fabrikam.com", "*.contoso.com"])
    client.force_login(owner)
    ok = update_data(link, recipients="a@fabrikam.com, b@eu.contoso.com")
    assert client.post(update_url(link), ok).status_code == 302

    # The From's domain is no longer allowed once a list is set.
    refused = client.post(update_url(link), update_data(link, recipients=INSIDE))
    assert refused.status_code == 400
    assert "fabrikam.com, *.contoso.com" in refused.content.decode()
    link.refresh_from_db()
    assert link.recipients == ["a@fabrikam.com", "b@eu.contoso.com"]


def test_the_service_refuses_too_whoever_calls_it(project, link, owner):
    with pytest.raises(RecipientsRefused) as caught:
        link_update(
            link=link,
            enabled=True,
            notify_new_vulnerabilities=True,
            minimum_severity="info",
            notify_scan_completed=True,
            notify_status_changed=True,
            status_transitions=[],
            recipients=["X@Evil.Example"],
            delivery_mode="immediate",
            actor=owner,
        )
    assert "X@Evil.Example" in caught.value.message
    link.refresh_from_db()
    assert link.recipients == []
    assert [e.detail for e in refusals()] == ["X@Evil.Example"]


# --- the test notification ---------------------------------------------------------


def test_a_test_notification_to_an_outside_address_is_refused_and_nothing_is_sent(
    client, owner, project, link, sandbox, django_capture_on_commit_callbacks
):
    # Saved while the tool allowed any domain; the admin has narrowed it since.
    allow(link.integration, ["*"])
    link.recipients = [OUTSIDE]
    link.save()
    allow(link.integration, [])

    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(send_test_url(link), follow=True)

    html = response.content.decode()
    assert OUTSIDE in html and "may only send to contoso.onmicrosoft.com" in html
    assert not Event.objects.filter(kind=EventKind.TEST).exists()
    assert not Delivery.objects.exists()
    settle()
    assert sandbox.messages() == []
    [entry] = refusals()
    assert (entry.subject, entry.detail, entry.actor) == (
        "project:shop",
        OUTSIDE,
        owner,
    )


def test_a_test_notification_through_the_tools_own_to_is_checked_as_well(
    client, owner, project, graph_tool, link, sandbox
):
    # An older tool whose To was saved outside the From's domain.
    graph_tool.config = {**graph_tool.config, "recipients": [OUTSIDE]}
    graph_tool.save(update_fields=["config"])
    client.force_login(owner)
    response = client.post(send_test_url(link), follow=True)
    assert OUTSIDE in response.content.decode()
    assert not Delivery.objects.exists()
    assert [e.detail for e in refusals()] == [OUTSIDE]


def test_a_test_notification_inside_the_allowed_domains_is_delivered(
    client, owner, project, link, sandbox, django_capture_on_commit_callbacks
):
    # The control for the tests above: the same flow does reach the sandbox.
    allow(link.integration, ["*"])
    link.recipients = [OUTSIDE]
    link.save()
    client.force_login(owner)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(send_test_url(link))
    (delivery,) = settle()
    assert delivery.status == DeliveryStatus.SENT
    assert len(sandbox.messages(to=OUTSIDE)) == 1
    assert refusals() == []


# --- send time ---------------------------------------------------------------------


def emit_scan_completed(project, capture):
    with capture(execute=True):
        event_emit(
            project=project,
            kind=EventKind.SCAN_COMPLETED,
            payload={"scan_id": None, "new": 1, "counts": {"high": 1}},
        )


@pytest.mark.parametrize("tool", ["link", "smtp_link"])
def test_narrowing_the_tool_stops_links_saved_before_at_send_time(
    request,
    client,
    owner,
    security_admin,
    sandbox,
    project,
    tool,
    django_capture_on_commit_callbacks,
):
    link = request.getfixturevalue(tool)
    allow(link.integration, ["*"])
    client.force_login(owner)
    saved = client.post(
        update_url(link),
        update_data(
            link,
            recipients=f"{INSIDE}, {OUTSIDE}",
            notify_scan_completed="on",
            delivery_mode="immediate",
        ),
    )
    assert saved.status_code == 302
    # The admin narrows the tool back to its default (the From's domain).
    allow(link.integration, [])

    emit_scan_completed(project, django_capture_on_commit_callbacks)
    (delivery,) = settle()

    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.error_code == "recipient_refused"
    assert delivery.attempts <= 1 and delivery.sent_at is None
    assert sandbox.messages() == []  # not even to the allowed address
    [entry] = refusals()
    assert entry.provider == link.integration.provider
    assert (entry.subject, entry.detail) == ("project:shop", OUTSIDE)
    assert entry.actor is None

    # The delivery log says why, in words.
    page = client.get(reverse("projects:deliveries", args=[project.slug]))
    html = page.content.decode()
    assert "Recipient not allowed" in html
    assert "Allowed recipient domains" in html

    # Resending does not get around it; allowing the domain again does.
    with django_capture_on_commit_callbacks(execute=True):
        delivery_resend(delivery=delivery)
    (delivery,) = settle()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.error_code == "recipient_refused"
    assert sandbox.messages() == []
    assert len(refusals()) == 2

    allow(link.integration, ["*"])
    with django_capture_on_commit_callbacks(execute=True):
        delivery_resend(delivery=delivery)
    (delivery,) = settle()
    assert delivery.status == DeliveryStatus.SENT
    assert {m["recipient"].lower() for m in sandbox.messages()} >= {OUTSIDE}


def test_an_admin_changing_the_from_domain_narrows_the_default(
    sandbox, project, link, django_capture_on_commit_callbacks
):
    link.recipients = [INSIDE]
    link.save()
    integration_save(
        provider_key="microsoft_azure_mail",
        cleaned_data={
            **azure_mail_values(sandbox.seed),
            "sender": "notifications@fabrikam.example",
            "recipients": ["soc@fabrikam.example"],
        },
        actor=None,
    )
    emit_scan_completed(project, django_capture_on_commit_callbacks)
    (delivery,) = settle()
    assert delivery.error_code == "recipient_refused"
    assert sandbox.messages() == []
