"""A delivery's message as sent (issue 15, item 10): subject, recipients, status and
the HTML in a sandboxed frame, under the same access rules as the delivery log; and
the log's links to each delivery's findings and message."""

import html
import re

import pytest
from django.urls import reverse

from notifications.models import Delivery, DeliveryStatus, Event, EventKind
from notifications.services import event_emit
from projects.models import Finding
from projects.services import scan_import
from tests.notifications.conftest import settle
from tests.projects.sarif_documents import sarif_bytes, sarif_result

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def message_url(delivery, project=None):
    if project is None:
        return reverse("notifications:delivery", args=[delivery.uuid])
    return reverse("projects:delivery", args=[project.slug, delivery.uuid])


def as_user(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def sent(project, link):
    """A scan, then a second one with two new findings (one of them with hostile
    text): one new-vulnerabilities email, sent to the sandbox."""
    scan_import(
        project=project, sarif=sarif_bytes([sarif_result("B602")]), source="api"
    )
    scan_import(
        project=project,
        sarif=sarif_bytes(
            [
                sarif_result("B602"),
                sarif_result("B105", line=3, message=HOSTILE, level="warning"),
                sarif_result("B311", line=7, level="note"),
            ]
        ),
        source="api",
    )
    settle()
    delivery = (
        Delivery.objects.filter(event__kind=EventKind.NEW_VULNERABILITIES)
        .order_by("pk")
        .last()
    )
    assert delivery.status == DeliveryStatus.SENT
    return delivery


def frame_srcdoc(body: str) -> str:
    match = re.search(
        r'<iframe class="message-frame" sandbox="" srcdoc="([^"]*)"', body
    )
    assert match, "no sandboxed frame"
    return html.unescape(match.group(1))


def test_a_member_sees_the_message_as_sent(client, member, project, sent):
    response = as_user(client, member).get(message_url(sent, project))

    assert response.status_code == 200
    body = response.content.decode()
    assert html.escape(sent.subject) in body
    for address in sent.recipients:
        assert address in body
    assert "Sent" in body
    assert f"&lt;delivery-{sent.uuid}@appsec.example.test&gt;" in body
    # The HTML part, in a frame with every sandbox restriction (no scripts, no
    # forms, an opaque origin), holds the email as rendered for sending.
    srcdoc = frame_srcdoc(body)
    assert "<html" in srcdoc and "B105" in srcdoc
    # The hostile finding text is escaped inside the email, and the email itself
    # is escaped into the attribute: no markup of it reaches the page.
    assert "<script>" not in body and "<img src=x" not in body
    assert "<script>" not in srcdoc and "&lt;script&gt;" in srcdoc
    # The plain text part, as text.
    assert '<pre class="message">' in body


def test_the_page_allows_style_attributes_for_the_frame_and_nothing_else(
    client, member, project, sent
):
    response = as_user(client, member).get(message_url(sent, project))
    policy = {
        part.strip().split(" ", 1)[0]: part.strip()
        for part in response["Content-Security-Policy"].split(";")
        if part.strip()
    }
    assert policy["style-src-attr"] == "style-src-attr 'unsafe-inline'"
    assert policy["script-src"] == "script-src 'self'"
    assert policy["style-src"] == "style-src 'self'"
    assert policy["frame-ancestors"] == "frame-ancestors 'none'"
    # Other pages keep the strict policy.
    log = client.get(reverse("projects:deliveries", args=[project.slug]))
    assert "style-src-attr" not in log["Content-Security-Policy"]


def test_the_message_lists_the_findings_it_is_about(client, member, project, sent):
    body = as_user(client, member).get(message_url(sent, project)).content.decode()
    new = Finding.objects.filter(project=project, rule_id__in=["B105", "B311"])
    assert new.count() == 2
    for finding in new:
        assert reverse("projects:finding", args=[project.slug, finding.pk]) in body
    old = Finding.objects.get(project=project, rule_id="B602")
    assert reverse("projects:finding", args=[project.slug, old.pk]) not in body


def test_a_log_row_links_to_its_findings_and_its_message(client, member, project, sent):
    body = (
        as_user(client, member)
        .get(reverse("projects:deliveries", args=[project.slug]))
        .content.decode()
    )
    assert f'href="{message_url(sent, project)}"' in body
    for finding in Finding.objects.filter(project=project, rule_id="B105"):
        assert (
            f'href="{reverse("projects:finding", args=[project.slug, finding.pk])}"'
            in body
        )


def test_the_global_log_links_to_the_admin_message_view(
    client, security_admin, project, sent
):
    body = (
        as_user(client, security_admin)
        .get(reverse("notifications:deliveries"))
        .content.decode()
    )
    assert f'href="{message_url(sent)}"' in body
    response = client.get(message_url(sent))
    assert response.status_code == 200
    assert html.escape(sent.subject) in response.content.decode()
    assert "Shop" in response.content.decode()


def test_only_the_findings_of_the_link_severity_are_linked(
    client, member, project, link, sent
):
    link.minimum_severity = "high"
    link.save()
    body = as_user(client, member).get(message_url(sent, project)).content.decode()
    high = Finding.objects.get(project=project, rule_id="B105")  # warning: medium
    low = Finding.objects.get(project=project, rule_id="B311")  # note: low
    assert high.severity != "high" and low.severity != "high"
    assert reverse("projects:finding", args=[project.slug, low.pk]) not in body


def test_a_payload_naming_another_project_s_finding_links_nothing_of_it(
    client, member, project, other_project, link
):
    scan_import(
        project=other_project,
        sarif=sarif_bytes([sarif_result("B999")]),
        source="api",
    )
    foreign = Finding.objects.get(project=other_project)
    event_emit(
        project=project,
        kind=EventKind.NEW_VULNERABILITIES,
        payload={
            "finding_ids": [foreign.pk, "1; DROP TABLE", -4, None],
            "counts": {"high": 1},
        },
    )
    delivery = Delivery.objects.get(project=project)
    log = as_user(client, member).get(
        reverse("projects:deliveries", args=[project.slug])
    )
    page = client.get(message_url(delivery, project))
    assert log.status_code == 200 and page.status_code == 200
    for body in (log.content.decode(), page.content.decode()):
        assert f"/findings/{foreign.pk}/" not in body
        assert "B999" not in body


def test_a_status_change_links_its_finding(client, member, project, link):
    scan_import(project=project, sarif=sarif_bytes([sarif_result()]), source="api")
    finding = Finding.objects.get(project=project)
    Delivery.objects.all().delete()
    event_emit(
        project=project,
        kind=EventKind.STATUS_CHANGED,
        payload={"finding_id": finding.pk, "from": "open", "to": "resolved"},
    )
    delivery = Delivery.objects.get(event__kind=EventKind.STATUS_CHANGED)
    body = as_user(client, member).get(message_url(delivery, project)).content.decode()
    assert reverse("projects:finding", args=[project.slug, finding.pk]) in body


def test_a_message_that_cannot_be_rendered_says_so(
    client, member, project, sent, monkeypatch
):
    from notifications import selectors

    def broken(deliveries, *, skip_errors=False):
        return {}

    monkeypatch.setattr(selectors, "emails_for", broken)
    response = as_user(client, member).get(message_url(sent, project))
    assert response.status_code == 200
    body = response.content.decode()
    assert "This message cannot be shown" in body and "<iframe" not in body
    assert html.escape(sent.subject) in body


# --- who may see it -----------------------------------------------------------------


def test_outsiders_get_the_same_404_as_for_an_unknown_project(
    client, outsider, project, sent
):
    response = as_user(client, outsider).get(message_url(sent, project))
    assert response.status_code == 404


def test_signed_out_visitors_are_sent_to_sign_in(client, project, sent):
    response = client.get(message_url(sent, project))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert client.get(message_url(sent)).status_code == 302


def test_the_admin_view_is_for_security_admins_only(client, owner, project, sent):
    assert as_user(client, owner).get(message_url(sent)).status_code == 403


def test_another_project_s_delivery_is_a_404_under_this_project(
    client, outsider, owner, project, other_project, sent
):
    # The owner of "payroll" asks for shop's delivery under payroll's address.
    response = as_user(client, outsider).get(message_url(sent, other_project))
    assert response.status_code == 404
    # And an owner of shop cannot reach it under payroll either (not a member).
    assert (
        as_user(client, owner).get(message_url(sent, other_project)).status_code == 404
    )


@pytest.mark.parametrize(
    "tail",
    [
        "00000000-0000-0000-0000-000000000000/",  # well-formed, unknown
        "not-a-uuid/",
        "1/",
        "..%2F..%2Fsettings/",
        "%00/",
        "' OR 1=1 --/",
        "7f1c9a2e-2b5e-4c1b-9c8e-0e7a3f8d2c1b%0d%0aX: y/",
        "a" * 5000 + "/",
        "%E2%80%AE0000/",
    ],
)
def test_hostile_ids_are_a_404(client, member, security_admin, project, sent, tail):
    project_base = reverse("projects:deliveries", args=[project.slug])
    admin_base = reverse("notifications:deliveries")
    assert as_user(client, member).get(project_base + tail).status_code == 404
    assert as_user(client, security_admin).get(admin_base + tail).status_code == 404


def test_only_get_is_answered(client, member, project, sent):
    as_user(client, member)
    assert client.post(message_url(sent, project)).status_code == 405


def test_a_digest_links_the_findings_of_all_its_events(client, member, project, link):
    link.delivery_mode = "digest"
    link.save()
    scan_import(project=project, sarif=sarif_bytes([sarif_result()]), source="api")
    digests = Delivery.objects.filter(dedupe_key__startswith="digest:")
    assert digests.count() == 1
    delivery = digests.get()
    assert Event.objects.filter(pk__in=delivery.digest_event_ids).count() >= 1
    finding = Finding.objects.get(project=project)
    body = as_user(client, member).get(message_url(delivery, project)).content.decode()
    assert reverse("projects:finding", args=[project.slug, finding.pk]) in body
