"""Real scanners' SARIF (tests/fixtures/sarif/real/, see its README for the commands
that wrote each file) imported into a project: how many findings, how severe, and a
re-import that creates nothing new.

The expected figures come from reading each file by hand with its facts.json: a
result becomes a finding of its own unless it repeats another one's identity (the
sarif-multitool rewrites hash whole lines, so the two `eval` calls on one line of
more.py share a fingerprint there and are one finding seen twice).
"""

from pathlib import Path

import pytest

from projects.models import Finding, ScanSource, Severity
from projects.services import scan_import

pytestmark = pytest.mark.django_db

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "sarif" / "real"
C, H, M, L = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW

# file: (results in the file, findings, {severity: findings})
EXPECTED = {
    "bandit-1.9.4.sarif": (20, 20, {H: 4, M: 10, L: 6}),
    "checkov-3.3.30.sarif": (19, 19, {H: 19}),
    "eslint-9.39.5.sarif": (7, 7, {H: 3, M: 4}),
    "flawfinder-2.0.20.sarif": (5, 5, {H: 3, L: 2}),
    "hadolint-2.15.1.sarif": (4, 4, {M: 2, L: 2}),
    "njsscan-1.0.2.sarif": (6, 6, {H: 6}),
    "pylint-4.1.4-pylint2sarif-0.2.1.sarif": (24, 24, {M: 24}),
    "ruff-0.17.6.sarif": (17, 17, {H: 17}),
    "ruff-abs-checkout-a.sarif": (17, 17, {H: 17}),
    "ruff-abs-checkout-b.sarif": (17, 17, {H: 17}),
    "sarif-multitool-5.7.0-merge.sarif": (42, 42, {C: 5, H: 15, M: 15, L: 7}),
    "sarif-multitool-5.7.0-rebaseuri-ruff-abs-checkout-a.sarif": (17, 16, {H: 16}),
    "sarif-multitool-5.7.0-rebaseuri-ruff-abs-checkout-b.sarif": (17, 16, {H: 16}),
    "sarif-multitool-5.7.0-rewrite-ruff-abs-checkout-a.sarif": (17, 16, {H: 16}),
    "sarif-multitool-5.7.0-rewrite-ruff-abs-checkout-b.sarif": (17, 16, {H: 16}),
    "secretlint-12.0.0.sarif": (2, 2, {H: 2}),
    "semgrep-1.185.0.sarif": (15, 15, {C: 5, H: 8, M: 1, L: 1}),
}


def test_every_real_file_has_an_expectation():
    assert {path.name for path in REAL.glob("*.sarif")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_file_imports_every_result_once_with_its_severity(name, project):
    results, findings, severities = EXPECTED[name]
    scan = scan_import(project=project, sarif=REAL / name, source=ScanSource.COMMAND)

    stored = Finding.objects.filter(project=project)
    assert scan.new_count == stored.count() == findings
    assert scan.duplicate_count == results - findings
    assert sum(stored.values_list("occurrences", flat=True)) == results
    by_severity = {
        severity: stored.filter(severity=severity).count() for severity in Severity
    }
    assert by_severity == {s: severities.get(s, 0) for s in Severity}
    assert not stored.filter(path__startswith="/").exists()
    assert not stored.filter(path__contains="file:").exists()

    again = scan_import(project=project, sarif=REAL / name, source=ScanSource.API)
    assert (again.new_count, again.resolved_count, again.reopened_count) == (0, 0, 0)
    assert again.seen_again_count == findings
    assert Finding.objects.filter(project=project).count() == findings


@pytest.mark.parametrize(
    "first, second",
    [
        ("ruff-abs-checkout-a.sarif", "ruff-abs-checkout-b.sarif"),
        (
            "sarif-multitool-5.7.0-rewrite-ruff-abs-checkout-a.sarif",
            "sarif-multitool-5.7.0-rewrite-ruff-abs-checkout-b.sarif",
        ),
        (
            "sarif-multitool-5.7.0-rebaseuri-ruff-abs-checkout-a.sarif",
            "sarif-multitool-5.7.0-rebaseuri-ruff-abs-checkout-b.sarif",
        ),
    ],
)
def test_the_same_code_in_another_checkout_is_nothing_new(first, second, project):
    scan_import(project=project, sarif=REAL / first, source=ScanSource.COMMAND)
    again = scan_import(project=project, sarif=REAL / second, source=ScanSource.API)
    assert (again.new_count, again.resolved_count) == (0, 0)


def test_relative_and_absolute_ruff_scans_of_one_tree_are_one_set_of_findings(project):
    scan_import(
        project=project, sarif=REAL / "ruff-0.17.6.sarif", source=ScanSource.COMMAND
    )
    # The repository checkout and a copy elsewhere: both made relative to their root.
    again = scan_import(
        project=project, sarif=REAL / "ruff-abs-checkout-a.sarif", source=ScanSource.API
    )
    assert (again.new_count, again.resolved_count) == (0, 0)
