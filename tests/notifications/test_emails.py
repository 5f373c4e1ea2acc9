"""What the emails say, and that nothing from a scan can inject markup or headers."""

import pytest

from integrations.models import Integration, IntegrationState
from notifications import emails
from notifications.emails import email_for, emails_for, header_text
from notifications.models import (
    Delivery,
    DeliveryMode,
    DeliveryStatus,
    EventKind,
    ToolLink,
)
from notifications.services import event_emit
from notifications.services.links import link_send_test
from projects.models import FindingStatus, ScanSource
from projects.services import finding_status_change, scan_import
from tests.notifications.email_reference import reference_email_for
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


# --- a batch renders what one delivery at a time rendered ---------------------------


def claimed(deliveries=None) -> list[Delivery]:
    """Deliveries loaded as the claim loads them."""
    rows = Delivery.objects.all() if deliveries is None else deliveries
    return list(
        rows.select_related(
            "project", "event", "event__scan", "link", "integration"
        ).order_by("integration_id", "pk")
    )


@pytest.fixture
def every_kind(project, other_project):
    """Deliveries of every kind, for two projects and three links: new
    vulnerabilities (more than ten, every severity, hostile text, no rule, no line),
    status changes (several, one, through a transition filter, of a finding since
    deleted), scans completed, a digest per scan, a test, a delivery whose link was
    deleted, and hand-made payloads naming another project's findings, missing ids
    and ids that are strings (findings' and a digest's events')."""
    # No From address: the links' recipients are allowed explicitly.
    allowed = {"allowed_recipient_domains": ["contoso.example"]}
    graph = Integration.objects.create(
        provider="microsoft_azure_mail", state=IntegrationState.ACTIVE, config=allowed
    )
    smtp = Integration.objects.create(
        provider="smtp", state=IntegrationState.ACTIVE, config=allowed
    )
    everything = ToolLink.objects.create(
        project=project,
        integration=graph,
        minimum_severity="info",
        notify_scan_completed=True,
        notify_status_changed=True,
        recipients=["shop@contoso.example"],
    )
    ToolLink.objects.create(
        project=project,
        integration=smtp,
        minimum_severity="high",
        notify_status_changed=True,
        status_transitions=[FindingStatus.RESOLVED],
        recipients=["shop-high@contoso.example", "ciso@contoso.example"],
    )
    ToolLink.objects.create(
        project=other_project,
        integration=graph,
        minimum_severity="info",
        notify_scan_completed=True,
        notify_status_changed=True,
        delivery_mode=DeliveryMode.DIGEST,
        recipients=["payroll@contoso.example"],
    )
    levels = ["error", "warning", "note", "none"]
    first = [
        sarif_result(
            f"R{i % 4}",
            uri=f"src/{'ab'[i % 2]}/module.py",
            line=None if i == 7 else 20 - i,
            level=levels[i % 4],
            message=f"Issue {i} — ünïcode",
        )
        for i in range(12)
    ]
    first += [
        sarif_result(HOSTILE_RULE, uri=HOSTILE_PATH, message=HOSTILE_MESSAGE),
        {k: v for k, v in sarif_result(None, uri="lib/x.py").items() if k != "ruleId"},
    ]
    scan_import(project=project, sarif=sarif_bytes(first), source=ScanSource.API)
    # The second scan resolves half of them and finds two more.
    second = first[::2] + [sarif_result("NEW1", uri="n.py"), sarif_result("NEW2")]
    scan_import(project=project, sarif=sarif_bytes(second), source=ScanSource.API)
    finding = project.findings.filter(status=FindingStatus.OPEN).order_by("pk")[0]
    finding_status_change(finding=finding, status=FindingStatus.RESOLVED, actor=None)
    for sarif in (first[:3], first[3:9]):
        scan_import(
            project=other_project, sarif=sarif_bytes(sarif), source=ScanSource.API
        )
    link_send_test(link=everything)
    shop_ids = list(project.findings.values_list("pk", flat=True))
    for payload in (
        {"finding_ids": shop_ids[:3] + [10**9], "counts": {"high": 4}},
        {"finding_ids": [str(i) for i in shop_ids[:2]], "counts": {"high": 2}},
    ):
        event_emit(
            project=other_project,
            kind=EventKind.NEW_VULNERABILITIES,
            payload=payload,
        )
    # A resolved finding deleted since its status change was recorded.
    project.findings.filter(status=FindingStatus.RESOLVED).order_by("-pk")[0].delete()
    unlinked = Delivery.objects.filter(link__integration=smtp).order_by("pk")[0]
    Delivery.objects.filter(pk=unlinked.pk).update(link=None)
    digest = Delivery.objects.filter(dedupe_key__startswith="digest:").last()
    Delivery.objects.filter(pk=digest.pk).update(
        digest_event_ids=[str(pk) for pk in digest.digest_event_ids]
    )
    deliveries = claimed()
    kinds = {d.event.kind for d in deliveries}
    # Every project event kind; tool-health emails (no project, words written when
    # the event was recorded) have their own template: test_tool_health_email.py.
    assert kinds == set(EventKind.values) - {EventKind.TOOL_HEALTH}, kinds
    assert any(d.is_digest for d in deliveries)
    assert any(d.link_id is None for d in deliveries)
    return deliveries


def test_a_batch_renders_every_kind_byte_for_byte_as_one_at_a_time(every_kind):
    batch = emails_for(every_kind)

    assert set(batch) == {d.pk for d in every_kind}
    for delivery in every_kind:
        expected = reference_email_for(delivery)
        assert batch[delivery.pk] == expected, delivery.dedupe_key
        assert email_for(delivery) == expected, delivery.dedupe_key


def test_events_naming_many_findings_are_fetched_apart_with_the_same_result(
    every_kind, monkeypatch
):
    # Groups of at most 3 ids: several batch queries, and events of their own.
    monkeypatch.setattr(emails, "BATCH_FINDING_IDS", 3)

    batch = emails_for(every_kind)

    for delivery in every_kind:
        assert batch[delivery.pk] == reference_email_for(delivery)


def test_a_batch_of_new_vulnerabilities_emails_takes_one_query(
    project, link, django_assert_num_queries
):
    link.notify_scan_completed = link.notify_status_changed = False
    link.save()
    for scan in range(5):
        results = [
            sarif_result(f"S{scan}R{i}", uri=f"s{scan}/f{i}.py", level="error")
            for i in range(10)
        ]
        scan_import(project=project, sarif=sarif_bytes(results), source=ScanSource.API)
    deliveries = claimed()
    assert len(deliveries) == 5

    with django_assert_num_queries(1):  # the findings of all five
        batch = emails_for(deliveries)

    assert all(batch[d.pk].text.count("/findings/") == 10 for d in deliveries)


def test_a_delivery_that_cannot_be_rendered_fails_alone(every_kind, monkeypatch):
    broken = every_kind[0]
    original = emails._sections

    def sections(delivery, batch):
        if delivery.pk == broken.pk:
            raise RuntimeError("template bug")
        return original(delivery, batch)

    monkeypatch.setattr(emails, "_sections", sections)

    batch = emails_for(every_kind, skip_errors=True)

    assert set(batch) == {d.pk for d in every_kind} - {broken.pk}
    with pytest.raises(RuntimeError):
        email_for(broken)
    with pytest.raises(RuntimeError):
        emails_for(every_kind)
