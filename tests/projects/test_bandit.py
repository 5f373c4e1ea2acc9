"""The real scanner: Bandit's SARIF output, imported end to end."""

import pytest

from notifications.models import Event, EventKind
from projects.models import Finding, FindingStatus
from projects.sarif import sarif_parse
from projects.services import scan_import
from tests.fixtures.bandit import VULNERABLE_APP, bandit_sarif

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def bandit_report():
    return bandit_sarif()


def test_bandit_sarif_is_imported(project, bandit_report):
    scan = scan_import(project=project, sarif=bandit_report, source="api")
    assert scan.tool_name == "Bandit" and scan.tool_version
    rules = set(
        Finding.objects.filter(project=project).values_list("rule_id", flat=True)
    )
    # shell=True, yaml.load, hard-coded password, md5, eval
    assert {"B602", "B506", "B105", "B324", "B307"} <= rules
    shell = Finding.objects.get(rule_id="B602")
    assert shell.path == "app.py" and shell.start_line and shell.severity == "high"
    assert shell.rule_name == "subprocess_popen_with_shell_equals_true"
    event = Event.objects.get(kind=EventKind.NEW_VULNERABILITIES)
    assert len(event.payload["finding_ids"]) == scan.new_count >= len(rules)


def test_bandit_rescan_is_idempotent_and_fix_resolves(project, bandit_report, tmp_path):
    first = scan_import(project=project, sarif=bandit_report, source="api")
    again = scan_import(project=project, sarif=bandit_sarif(), source="api")
    assert (again.new_count, again.seen_again_count) == (0, first.new_count)

    # Fix the command injection and scan again: that finding is resolved.
    source = (VULNERABLE_APP / "app.py").read_text()
    fixed = tmp_path / "app"
    fixed.mkdir()
    (fixed / "app.py").write_text(
        source.replace(
            "subprocess.call(command, shell=True)", "subprocess.call(command)"
        )
    )
    third = scan_import(project=project, sarif=bandit_sarif(fixed), source="api")
    assert third.resolved_count >= 1
    assert Finding.objects.get(rule_id="B602").status == FindingStatus.RESOLVED


def test_bandit_output_parses_without_database(bandit_report):
    report = sarif_parse(bandit_report)
    assert report.runs[0].tool_name == "Bandit"
    assert all(len(r.fingerprint) == 64 for r in report.results)
