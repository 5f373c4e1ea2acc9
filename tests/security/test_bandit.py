"""Bandit over the product code: no medium or high finding unless it is marked in
place, with the test it silences and why that line is safe.

Scanned: the apps and config, and the sandbox. The sandbox is only a development
stand-in for Microsoft 365, but it runs on developers' and CI machines with real
sockets and test secrets, so it is held to the same rule. Not scanned: tests/
(tests/fixtures/vulnerable_app is vulnerable on purpose), bench/ and bin/.

A mark looks like this (the reason after a second `#`, so that Bandit does not
read its words as test names):

    thumbprint = cert.fingerprint(hashes.SHA1())  # nosec B303  # Entra ID's x5t
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ["accounts", "config", "integrations", "notifications", "projects", "sandbox"]

NOSEC = re.compile(r"#\s*nosec\b(?P<rest>.*)$")
EXPLAINED = re.compile(
    r"^:?\s*(?P<ids>B\d{3}(?:[ ,]+B\d{3})*)\s*#\s*(?P<reason>\S.{9,})$"
)


def _scanned_dirs() -> list[str]:
    return [name for name in SCANNED if (ROOT / name).is_dir()]


@pytest.fixture(scope="module")
def report() -> dict:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bandit",
            "--recursive",
            "--severity-level",
            "medium",
            "--confidence-level",
            "low",
            "--format",
            "json",
            "--quiet",
            *_scanned_dirs(),
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode in (0, 1), completed.stderr.decode()[-2000:]
    return json.loads(completed.stdout)


def test_bandit_finds_no_unexplained_medium_or_high_issue(report):
    problems = [
        f"{r['filename']}:{r['line_number']} {r['test_id']} "
        f"({r['issue_severity'].lower()}): {r['issue_text']}"
        for r in report["results"]
    ]
    assert not problems, (
        "Fix these, or mark the line `# nosec BXXX  # why it is safe`:\n"
        + "\n".join(problems)
    )


def test_bandit_read_every_file(report):
    assert not report["errors"], report["errors"]
    scanned = {Path(name).parts[0] for name in report["metrics"] if name != "_totals"}
    assert scanned == set(_scanned_dirs())


def test_every_nosec_names_its_test_and_says_why():
    unexplained = []
    for directory in _scanned_dirs():
        for path in sorted((ROOT / directory).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                match = NOSEC.search(line)
                if match and not EXPLAINED.match(match.group("rest").strip()):
                    unexplained.append(f"{path.relative_to(ROOT)}:{number}: {line}")
    assert not unexplained, (
        "A `# nosec` must name the test and give the reason, e.g. "
        "`# nosec B303  # Entra ID names a certificate by its SHA-1 thumbprint`:\n"
        + "\n".join(unexplained)
    )
