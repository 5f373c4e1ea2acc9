"""Writes: scan imports, status changes, tokens, members."""

import io

import pytest
from django.db import transaction

from notifications.models import Event, EventKind
from projects.exceptions import (
    ProjectError,
    SarifError,
    SarifTooLarge,
    StatusTransitionError,
    TokenError,
)
from projects.models import (
    ApiToken,
    Finding,
    FindingStatus,
    FindingStatusChange,
    Membership,
    Role,
    Scan,
    ScanSource,
)
from projects.services import (
    api_token_authenticate,
    api_token_create,
    api_token_revoke,
    finding_status_change,
    membership_remove,
    membership_set,
    project_create,
    scan_import,
)
from tests.projects.sarif_documents import sarif_bytes, sarif_result

pytestmark = pytest.mark.django_db

A = sarif_result("B602", uri="app.py", line=10, level="error")
B = sarif_result(
    "B105", uri="app.py", line=3, level="note", message="Possible hardcoded password"
)
C = sarif_result(
    "B303",
    uri="crypto.py",
    line=7,
    level="warning",
    properties={"security-severity": "9.1"},
)


def events(kind):
    return list(Event.objects.filter(kind=kind).order_by("id"))


def import_(project, results, **kwargs):
    return scan_import(
        project=project, sarif=sarif_bytes(results, **kwargs), source=ScanSource.API
    )


# -- first import -----------------------------------------------------------------


def test_first_import_creates_findings_and_counts(project, owner):
    scan = scan_import(
        project=project,
        sarif=sarif_bytes([A, B, C]),
        source=ScanSource.UPLOAD,
        actor=owner,
    )
    assert (
        scan.new_count,
        scan.seen_again_count,
        scan.resolved_count,
        scan.reopened_count,
    ) == (3, 0, 0, 0)
    assert (scan.tool_name, scan.tool_version, scan.created_by) == (
        "Bandit",
        "1.9.4",
        owner,
    )
    findings = Finding.objects.filter(project=project)
    assert findings.count() == 3
    assert set(findings.values_list("severity", flat=True)) == {
        "high",
        "low",
        "critical",
    }
    for finding in findings:
        assert finding.status == FindingStatus.OPEN
        assert finding.first_seen_scan == scan == finding.last_seen_scan
        assert finding.created_at is not None and finding.tool_name == "Bandit"
    b = findings.get(rule_id="B105")
    assert (b.path, b.start_line, b.message) == (
        "app.py",
        3,
        "Possible hardcoded password",
    )


def test_first_import_emits_new_vulnerabilities_and_scan_completed(project, owner):
    scan = scan_import(
        project=project,
        sarif=sarif_bytes([A, B, C]),
        source=ScanSource.API,
        actor=owner,
    )
    ids = sorted(Finding.objects.values_list("id", flat=True))
    (new,) = events(EventKind.NEW_VULNERABILITIES)
    assert new.project == project and new.scan == scan and new.actor == owner
    assert new.payload == {
        "finding_ids": ids,
        "counts": {"critical": 1, "high": 1, "medium": 0, "low": 1, "info": 0},
    }
    (done,) = events(EventKind.SCAN_COMPLETED)
    assert done.payload == {
        "scan_id": scan.pk,
        "new": 3,
        "seen_again": 0,
        "resolved": 0,
        "reopened": 0,
        "duplicates": 0,
        "category": "",
        "incomplete": False,
        "counts": {"critical": 1, "high": 1, "medium": 0, "low": 1, "info": 0},
    }
    assert events(EventKind.STATUS_CHANGED) == []


def test_reimport_of_same_results_creates_nothing_new(project):
    import_(project, [A, B, C])
    second = import_(project, [C, A, B])
    assert (
        second.new_count,
        second.seen_again_count,
        second.resolved_count,
        second.reopened_count,
    ) == (0, 3, 0, 0)
    assert Finding.objects.count() == 3
    assert len(events(EventKind.NEW_VULNERABILITIES)) == 1
    assert len(events(EventKind.SCAN_COMPLETED)) == 2
    assert set(Finding.objects.values_list("last_seen_scan", flat=True)) == {second.pk}
    assert set(Finding.objects.values_list("first_seen_scan", flat=True)) != {second.pk}


def test_gone_findings_are_resolved_without_actor_and_come_back_reopened(
    project, owner
):
    import_(project, [A, B, C])
    confirmed = Finding.objects.get(rule_id="B602")
    finding_status_change(
        finding=confirmed, status=FindingStatus.CONFIRMED, actor=owner
    )
    Event.objects.all().delete()

    second = import_(project, [C])
    assert (second.new_count, second.seen_again_count, second.resolved_count) == (
        0,
        1,
        2,
    )
    resolved = Finding.objects.filter(status=FindingStatus.RESOLVED)
    assert set(resolved.values_list("rule_id", flat=True)) == {"B602", "B105"}
    changes = FindingStatusChange.objects.filter(scan=second)
    assert {
        (c.finding.rule_id, c.from_status, c.to_status, c.actor) for c in changes
    } == {
        ("B602", "confirmed", "resolved", None),
        ("B105", "open", "resolved", None),
    }
    (changed,) = events(EventKind.STATUS_CHANGED)
    assert changed.actor is None and changed.scan == second
    assert sorted(changed.payload["changes"], key=lambda c: c["finding_id"]) == sorted(
        [
            {"finding_id": confirmed.pk, "from": "confirmed", "to": "resolved"},
            {
                "finding_id": Finding.objects.get(rule_id="B105").pk,
                "from": "open",
                "to": "resolved",
            },
        ],
        key=lambda c: c["finding_id"],
    )
    assert events(EventKind.NEW_VULNERABILITIES) == []
    Event.objects.all().delete()

    third = import_(project, [A, C])
    assert (
        third.new_count,
        third.seen_again_count,
        third.resolved_count,
        third.reopened_count,
    ) == (0, 1, 0, 1)
    confirmed.refresh_from_db()
    assert confirmed.status == FindingStatus.REOPENED
    assert confirmed.last_seen_scan == third
    (new,) = events(EventKind.NEW_VULNERABILITIES)
    assert new.payload == {
        "finding_ids": [confirmed.pk],
        "counts": {"critical": 0, "high": 1, "medium": 0, "low": 0, "info": 0},
    }
    (changed,) = events(EventKind.STATUS_CHANGED)
    assert changed.payload == {
        "changes": [{"finding_id": confirmed.pk, "from": "resolved", "to": "reopened"}]
    }
    # Still resolved, and not resolved twice.
    assert Finding.objects.get(rule_id="B105").status == FindingStatus.RESOLVED
    assert FindingStatusChange.objects.filter(scan=third).count() == 1


def test_a_scan_only_resolves_its_own_tools_findings(project):
    import_(project, [A], tool="Bandit")
    import_(project, [sarif_result("java/sqli")], tool="CodeQL")
    scan = import_(project, [], tool="Bandit")
    assert scan.resolved_count == 1
    assert Finding.objects.get(tool_name="CodeQL").status == FindingStatus.OPEN
    assert Finding.objects.get(tool_name="Bandit").status == FindingStatus.RESOLVED


def test_triage_decisions_are_not_auto_resolved(project, owner):
    import_(project, [A, B])
    for rule, status in (
        ("B602", FindingStatus.FALSE_POSITIVE),
        ("B105", FindingStatus.ACCEPTED_RISK),
    ):
        finding_status_change(
            finding=Finding.objects.get(rule_id=rule), status=status, actor=owner
        )
    scan = import_(project, [])
    assert scan.resolved_count == 0
    assert set(Finding.objects.values_list("status", flat=True)) == {
        "false_positive",
        "accepted_risk",
    }


def test_same_fingerprint_in_two_projects_is_two_findings(project, other_project):
    import_(project, [A])
    scan = import_(other_project, [A])
    assert scan.new_count == 1
    assert Finding.objects.count() == 2


# -- failures ---------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"{", b'{"version": "2.0.0", "runs": []}', b""])
def test_invalid_sarif_writes_nothing(project, data):
    with pytest.raises(SarifError):
        scan_import(project=project, sarif=data, source=ScanSource.API)
    assert not Scan.objects.exists() and not Event.objects.exists()


def test_a_file_with_no_runs_is_refused(project):
    with pytest.raises(SarifError, match="no runs"):
        scan_import(
            project=project, sarif=b'{"version": "2.1.0", "runs": []}', source="api"
        )


def test_oversized_file_is_refused_before_parsing(project, settings):
    settings.SARIF_MAX_BYTES = 100
    data = sarif_bytes([A])
    with pytest.raises(SarifTooLarge, match="limit is 0.0 MB"):
        scan_import(project=project, sarif=data, source=ScanSource.API)
    with pytest.raises(SarifTooLarge):
        scan_import(project=project, sarif=io.BytesIO(data), source=ScanSource.API)
    assert not Scan.objects.exists()


def test_file_objects_are_read(project):
    scan = scan_import(
        project=project, sarif=io.BytesIO(sarif_bytes([A, B])), source="command"
    )
    assert scan.new_count == 2 and scan.source == "command"


def test_rolled_back_import_leaves_no_events_or_findings(project):
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            import_(project, [A, B])
            assert Event.objects.count() == 2
            raise RuntimeError("caller fails after the import")
    assert not Event.objects.exists()
    assert not Finding.objects.exists()
    assert not Scan.objects.exists()


def test_failure_inside_the_import_rolls_back_its_writes(project, monkeypatch):
    import projects.services as services

    def broken_emit(**kwargs):
        raise RuntimeError("event store down")

    monkeypatch.setattr(services, "event_emit", broken_emit)
    with pytest.raises(RuntimeError):
        import_(project, [A])
    assert not Scan.objects.exists() and not Finding.objects.exists()


# The query count for 1,000 vs 20,000 results, duplicates, category scopes and
# incomplete runs: tests/projects/test_scan_import.py.


# -- status changes ---------------------------------------------------------------


@pytest.fixture
def finding(project):
    import_(project, [A])
    Event.objects.all().delete()
    return Finding.objects.get()


def test_status_change_is_recorded_and_emitted(finding, owner):
    finding_status_change(finding=finding, status="confirmed", actor=owner)
    finding.refresh_from_db()
    assert finding.status == FindingStatus.CONFIRMED
    change = FindingStatusChange.objects.get()
    assert (change.from_status, change.to_status, change.actor) == (
        "open",
        "confirmed",
        owner,
    )
    (event,) = events(EventKind.STATUS_CHANGED)
    assert event.payload == {
        "finding_id": finding.pk,
        "from": "open",
        "to": "confirmed",
    }
    assert event.actor == owner and event.project == finding.project


@pytest.mark.parametrize(
    ("start", "target", "says"),
    [
        ("open", "open", "is Open already"),
        ("open", "reopened", "can be moved to: Confirmed, False positive"),
        ("resolved", "confirmed", "can be moved to: Re-opened"),
        ("open", "fixed", '"fixed" is not a status'),
    ],
)
def test_invalid_transitions_are_refused_and_emit_nothing(
    finding, owner, start, target, says
):
    Finding.objects.filter(pk=finding.pk).update(status=start)
    finding.refresh_from_db()
    with pytest.raises(StatusTransitionError, match=says):
        finding_status_change(finding=finding, status=target, actor=owner)
    assert not Event.objects.exists() and not FindingStatusChange.objects.exists()


def test_status_change_rolled_back_emits_nothing(finding, owner):
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            finding_status_change(finding=finding, status="confirmed", actor=owner)
            raise RuntimeError
    finding.refresh_from_db()
    assert finding.status == "open" and not Event.objects.exists()


# -- tokens and members -----------------------------------------------------------


def test_token_is_stored_hashed_and_authenticates(project, owner):
    token, raw = api_token_create(project=project, name="CI", actor=owner)
    assert raw.startswith("m365as_") and len(raw) > 40
    assert raw not in (token.token_hash, token.prefix) and raw.startswith(token.prefix)
    assert not ApiToken.objects.filter(token_hash__contains=raw[8:20]).exists()
    found = api_token_authenticate(authorization=f"Bearer {raw}")
    assert found == token and found.last_used_at is not None


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "token_missing"),
        ("Basic abc", "token_missing"),
        ("Bearer nope", "token_invalid"),
    ],
)
def test_bad_tokens_are_refused(project, header, code):
    with pytest.raises(TokenError) as caught:
        api_token_authenticate(authorization=header)
    assert caught.value.code == code


def test_revoked_token_is_refused(project, owner):
    token, raw = api_token_create(project=project, name="CI", actor=owner)
    api_token_revoke(token=token)
    with pytest.raises(TokenError) as caught:
        api_token_authenticate(authorization=f"Bearer {raw}")
    assert caught.value.code == "token_revoked"


def test_project_create_and_members(security_admin, outsider):
    project = project_create(name="New app")
    assert project.slug == "new-app"
    with pytest.raises(ProjectError, match="exists already"):
        project_create(name="Other", slug="new-app")
    membership_set(project=project, user=outsider, role=Role.MEMBER)
    membership_set(project=project, user=outsider, role=Role.OWNER)
    assert Membership.objects.get(project=project).role == Role.OWNER
    membership_remove(project=project, user=outsider)
    assert not Membership.objects.exists()
