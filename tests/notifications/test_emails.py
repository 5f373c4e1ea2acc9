"""What the emails say, and that nothing from a scan can inject markup or headers."""

import pytest

from notifications.emails import email_for, header_text
from notifications.models import Delivery, DeliveryStatus, EventKind
from notifications.services import event_emit
from projects.models import FindingStatus, ScanSource
from projects.services import finding_status_change, scan_import
from tests.projects.sarif_documents import sarif_bytes, sarif_result

pytestmark = pytest.mark.django_db

HOSTILE_RULE = '<script>alert("rule")</script>'
HOSTILE_PATH = "src/<img src=x onerror=alert(1)>.py\r\nBcc: victim@evil.example"
HOSTILE_MESSAGE = '</td><a href="https://evil.example">click</a>\r\nX-Injected: yes'


def hostile_sarif():
    return sarif_bytes(
        [
            sarif_result(HOSTILE_RULE, uri=HOSTILE_PATH, message=HOSTILE_MESSAGE),
            sarif_result("B105", uri="app/settings.py", line=3, level="warning"),
        ]
    )


def test_hostile_finding_data_is_escaped_and_never_splits_headers(
    sandbox, project, link, django_capture_on_commit_callbacks
):
    project.name = "Shop\r\nBcc: attacker@evil.example"
    project.save()
    with django_capture_on_commit_callbacks(execute=True):
        scan_import(project=project, sarif=hostile_sarif(), source=ScanSource.API)
    finding = project.findings.get(rule_id=HOSTILE_RULE)
    with django_capture_on_commit_callbacks(execute=True):
        finding_status_change(
            finding=finding, status=FindingStatus.CONFIRMED, actor=None
        )

    assert {d.status for d in Delivery.objects.all()} == {DeliveryStatus.SENT}
    messages = sandbox.messages()
    assert len(messages) == 3
    for message in messages:
        assert "\r" not in message["subject"] and "\n" not in message["subject"]
        header_names = {name.lower() for name in message["headers"]}
        assert "bcc" not in header_names and "x-injected" not in header_names
        assert message["to"] == [sandbox.seed["recipient"]]
        html = message["html"]
        assert "<script>" not in html
        assert "<img" not in html
        assert 'href="https://evil.example"' not in html
    new = next(m for m in messages if "new vulnerabilit" in m["subject"])
    assert "&lt;script&gt;alert(&quot;rule&quot;)&lt;/script&gt;" in new["html"]
    assert "&lt;img src=x onerror=alert(1)&gt;" in new["html"]
    changed = next(m for m in messages if "is now Confirmed" in m["subject"])
    assert changed["subject"].startswith("[High] <script>")
    assert "Shop Bcc: attacker@evil.example" in changed["subject"]


def test_subject_counts_severities_at_or_above_the_minimum(project, link):
    link.minimum_severity = "high"
    link.save()
    scan_import(
        project=project,
        sarif=sarif_bytes(
            [
                sarif_result("R1", uri="a.py", level="error"),
                sarif_result("R2", uri="b.py", level="error"),
                sarif_result("R3", uri="c.py", level="note"),
            ]
        ),
        source=ScanSource.API,
    )
    delivery = Delivery.objects.get(event__kind=EventKind.NEW_VULNERABILITIES)
    email = email_for(delivery)
    assert email.subject == "[High] 2 new vulnerabilities in Shop"
    assert "R1" in email.text and "R2" in email.text
    assert "R3" not in email.text  # below the link's minimum severity
    assert "High: 2" in email.text
    assert email.html and "<table" in email.html
    assert email.message_id == f"<delivery-{delivery.uuid}@appsec.example.test>"
    assert email.headers["X-AppSec-Delivery"] == str(delivery.uuid)


def test_below_minimum_severity_sends_no_email(project, link):
    link.minimum_severity = "critical"
    link.notify_scan_completed = False
    link.save()
    scan_import(
        project=project,
        sarif=sarif_bytes([sarif_result("R1", uri="a.py", level="error")]),
        source=ScanSource.API,
    )
    assert not Delivery.objects.exists()


def test_status_changed_only_for_chosen_transitions(project, link):
    link.notify_new_vulnerabilities = False
    link.notify_scan_completed = False
    link.status_transitions = [FindingStatus.RESOLVED]
    link.save()
    scan_import(
        project=project,
        sarif=sarif_bytes([sarif_result("R1", uri="a.py")]),
        source=ScanSource.API,
    )
    finding = project.findings.get()
    finding_status_change(finding=finding, status=FindingStatus.CONFIRMED, actor=None)
    assert not Delivery.objects.exists()
    finding_status_change(finding=finding, status=FindingStatus.RESOLVED, actor=None)
    delivery = Delivery.objects.get()
    email = email_for(delivery)
    assert email.subject == "[High] R1 is now Resolved in Shop"
    assert "Confirmed → Resolved" in email.text


def test_scan_completed_email_summarises_the_scan(project, link):
    scan_import(
        project=project,
        sarif=sarif_bytes([sarif_result("R1", uri="a.py")]),
        source=ScanSource.API,
    )
    delivery = Delivery.objects.get(event__kind=EventKind.SCAN_COMPLETED)
    email = email_for(delivery)
    assert email.subject == "Scan completed in Shop: 1 new, 0 resolved"
    assert "Tool: Bandit" in email.text


def test_a_finding_without_a_rule_is_no_rule_in_emails(project, link):
    link.status_transitions = [FindingStatus.RESOLVED]
    link.save()
    result = sarif_result(None, uri="lib/a.py", line=4, level="error")
    del result["ruleId"]
    result["locations"][0]["physicalLocation"]["region"]["startColumn"] = 2
    scan_import(project=project, sarif=sarif_bytes([result]), source=ScanSource.API)
    new = email_for(Delivery.objects.get(event__kind=EventKind.NEW_VULNERABILITIES))
    assert "- [High] No rule" in new.text and "lib/a.py:4:2" in new.text
    assert "No rule</a>" in new.html
    finding_status_change(
        finding=project.findings.get(), status=FindingStatus.RESOLVED, actor=None
    )
    changed = email_for(Delivery.objects.get(event__kind=EventKind.STATUS_CHANGED))
    assert changed.subject == "[High] No rule is now Resolved in Shop"


def test_project_recipients_replace_the_tools_to(project, link):
    link.recipients = ["appsec-shop@contoso.onmicrosoft.com"]
    link.save()
    event_emit(project=project, kind=EventKind.SCAN_COMPLETED, payload={})
    assert Delivery.objects.get().recipients == ["appsec-shop@contoso.onmicrosoft.com"]


def test_header_text_strips_every_kind_of_line_break():
    assert header_text("a\r\nb\nc\rd\u2028e\x00f") == "a b c d ef"
    assert len(header_text("x" * 1000)) == 250
