"""Logs and lists in the browser (issue 15, item 10): a delivery's message shown in
its sandboxed frame with the email's own styles and no policy violation, audit-log
timestamps on one line, and filter bars as wide as their fields."""

import pytest

from integrations.models import AuditAction, AuditEntry
from integrations.services.audit import audit_record
from notifications.models import Delivery, EventKind
from projects.services import scan_import
from tests.notifications.conftest import graph_tool, link, settle  # noqa: F401
from tests.projects.sarif_documents import sarif_bytes, sarif_result

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_message_view_renders_the_email_styled_and_sandboxed(
    page,
    sign_in,
    project,
    member,
    link,  # noqa: F811
):
    scan_import(
        project=project,
        sarif=sarif_bytes([sarif_result("B602"), sarif_result("B105", line=3)]),
        source="api",
    )
    settle()
    delivery = Delivery.objects.get(event__kind=EventKind.NEW_VULNERABILITIES)
    violations = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text)
            if "Content Security Policy" in message.text
            else None
        ),
    )
    sign_in("mike", "pw-mike-123456")
    page.goto(f"/projects/{project.slug}/deliveries/")
    page.get_by_role("link", name=delivery.subject).click()
    page.wait_for_load_state()

    frame_element = page.locator("iframe.message-frame")
    assert frame_element.get_attribute("sandbox") == ""
    frame = frame_element.content_frame
    # The email's inline styles apply inside the frame (its grey background).
    background = frame.locator("body").evaluate(
        "body => getComputedStyle(body).backgroundColor"
    )
    assert background == "rgb(244, 245, 247)"
    assert frame.get_by_text("B105").count() >= 1
    # No script may run in it: the frame has an opaque origin.
    assert frame.locator("body").evaluate("() => window.origin") == "null"
    assert violations == []


def test_audit_log_times_stay_on_one_line_and_filters_are_compact(
    page, sign_in, security_admin, project, owner
):
    for _ in range(3):
        audit_record(
            provider_key="microsoft_azure_mail",
            action=AuditAction.TESTED,
            succeeded=False,
            error_code="secret_invalid",
            subject="project:" + "a-long-subject-" * 6,
            detail="A long detail " * 20,
        )
    assert AuditEntry.objects.count() == 3
    sign_in(security_admin.username, security_admin.raw_password)
    page.set_viewport_size({"width": 1100, "height": 900})
    page.goto("/integrations/audit-log/")
    heights = page.locator("td.when time").evaluate_all(
        "els => els.map(e => e.getClientRects().length)"
    )
    assert heights == [1, 1, 1]  # one line box each
    assert page.locator("td.result-cell").first.inner_text().startswith("Failed: ")

    page.goto(f"/projects/{project.slug}/")
    bar = page.locator("form.filters").bounding_box()
    select = page.locator("form.filters select").first.bounding_box()
    assert select["width"] < bar["width"] / 3
