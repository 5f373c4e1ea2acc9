"""scan_import on the database the suite runs on: identities, duplicates, category
scopes, incomplete runs, rollback, queued scans, inputs, and a query count that does
not grow with the file.

tests/projects/test_scan_import_postgres.py runs this module again on PostgreSQL.
"""

import io
import json
import os
import threading
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

import projects.services as services
from notifications.models import Event, EventKind
from projects.bulk import STAGE
from projects.exceptions import ProjectError, SarifError, SarifTooLarge
from projects.models import (
    Finding,
    FindingStatus,
    FindingStatusChange,
    Scan,
    ScanSource,
    ScanStatus,
)
from projects.services import finding_status_change, scan_import
from tests.projects.sarif_documents import (
    many_results,
    sarif_bytes,
    sarif_result,
    sarif_run,
    sarif_runs_bytes,
)

pytestmark = pytest.mark.django_db

A = sarif_result("B602", uri="app.py", line=10, level="error")
B = sarif_result("B105", uri="app.py", line=3, level="note", message="Password")
C = sarif_result("B303", uri="crypto.py", line=7, level="warning")


def import_(project, sarif, **kwargs):
    kwargs.setdefault("source", ScanSource.API)
    return scan_import(project=project, sarif=sarif, **kwargs)


def statuses(project) -> dict[str, str]:
    return dict(
        Finding.objects.filter(project=project).values_list("rule_id", "status")
    )


def nothing_written():
    return not (
        Scan.objects.exists()
        or Finding.objects.exists()
        or FindingStatusChange.objects.exists()
        or Event.objects.exists()
    )


def stage_exists() -> bool:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT to_regclass(%s)", [f"pg_temp.{STAGE}"])
            return cursor.fetchone()[0] is not None
        cursor.execute(
            "SELECT count(*) FROM temp.sqlite_master WHERE name = %s", [STAGE]
        )
        return cursor.fetchone()[0] > 0


def test_runs_on_the_database_it_is_meant_to():
    # test_scan_import_postgres.py runs this module with EXPECT_DATABASE_VENDOR.
    expected = os.environ.get("EXPECT_DATABASE_VENDOR", connection.vendor)
    assert connection.vendor == expected


# -- identity and duplicates ------------------------------------------------------


def test_reimport_creates_nothing_new(project):
    first = import_(project, sarif_bytes([A, B, C]))
    again = import_(project, sarif_bytes([C, A, B]))
    assert (first.new_count, again.new_count, again.seen_again_count) == (3, 0, 3)
    assert (again.resolved_count, again.reopened_count) == (0, 0)
    assert Finding.objects.count() == 3
    assert len(Event.objects.filter(kind=EventKind.NEW_VULNERABILITIES)) == 1
    assert set(Finding.objects.values_list("last_seen_scan", flat=True)) == {again.pk}
    assert set(Finding.objects.values_list("first_seen_scan", flat=True)) == {first.pk}


def test_identical_results_are_one_finding_that_counts_them(project):
    scan = import_(project, sarif_bytes([A, B, A, A]))
    assert (scan.new_count, scan.duplicate_count) == (2, 2)
    assert scan.seen_again_count == 0
    assert Finding.objects.get(rule_id="B602").occurrences == 3
    assert Finding.objects.get(rule_id="B105").occurrences == 1
    (new,) = Event.objects.filter(kind=EventKind.NEW_VULNERABILITIES)
    assert len(new.payload["finding_ids"]) == 2
    assert sum(new.payload["counts"].values()) == 2
    (done,) = Event.objects.filter(kind=EventKind.SCAN_COMPLETED)
    assert done.payload["duplicates"] == 2

    again = import_(project, sarif_bytes([A, B, B]))
    assert (again.new_count, again.seen_again_count, again.duplicate_count) == (
        0,
        2,
        1,
    )
    # A finding records how often the latest scan that saw it reported it.
    assert Finding.objects.get(rule_id="B602").occurrences == 1
    assert Finding.objects.get(rule_id="B105").occurrences == 2


def test_the_first_of_identical_results_is_stored(project):
    # Same tool fingerprint, so the same identity, whatever the message says.
    first = sarif_result("R1", message="first", partial_fingerprints={"h": "1"})
    second = sarif_result("R1", message="second", partial_fingerprints={"h": "1"})
    import_(project, sarif_bytes([first, second]))
    finding = Finding.objects.get()
    assert (finding.message, finding.occurrences) == ("first", 2)


def test_findings_keep_column_logical_location_and_an_empty_rule(project):
    no_rule = sarif_result(None, uri="lib/a.py", line=3, message="no rule here")
    del no_rule["ruleId"]
    no_rule["locations"][0]["physicalLocation"]["region"]["startColumn"] = 7
    logical = sarif_result("X1", message="logical only")
    logical["locations"] = [{"logicalLocations": [{"fullyQualifiedName": "pkg.f"}]}]
    import_(project, sarif_bytes([no_rule, logical]))

    finding = Finding.objects.get(message="no rule here")
    assert (finding.rule_id, finding.start_line, finding.start_column) == ("", 3, 7)
    assert finding.rule_label == "No rule"
    assert finding.location == "lib/a.py:3:7"
    other = Finding.objects.get(rule_id="X1")
    assert (other.path, other.logical_location, other.location) == (
        "",
        "pkg.f",
        "pkg.f",
    )


def test_a_moved_result_with_a_tool_fingerprint_keeps_its_finding(project):
    before = sarif_result("R1", line=10, partial_fingerprints={"hash": "abc"})
    after = sarif_result("R1", line=42, partial_fingerprints={"hash": "abc"})
    import_(project, sarif_bytes([before]))
    scan = import_(project, sarif_bytes([after]))
    assert (scan.new_count, scan.seen_again_count) == (0, 1)
    # Where it was last reported.
    assert Finding.objects.get().start_line == 42


# -- category scopes --------------------------------------------------------------


def codeql(results, category):
    return sarif_runs_bytes(
        sarif_run(results, tool="CodeQL", automation_id=f"{category}/run-7")
    )


def test_a_scan_resolves_only_its_own_tool_and_category(project):
    js = sarif_result("js/xss", uri="web/app.js")
    py = sarif_result("py/sqli", uri="api/db.py")
    import_(project, codeql([py], "codeql-python"))
    import_(project, codeql([js], "codeql-javascript"))
    import_(project, sarif_bytes([A]), category="")  # another tool
    assert set(Finding.objects.values_list("category", flat=True)) == {
        "codeql-python",
        "codeql-javascript",
        "",
    }

    scan = import_(project, codeql([], "codeql-javascript"))
    assert (scan.category, scan.resolved_count) == ("codeql-javascript", 1)
    assert statuses(project) == {
        "js/xss": FindingStatus.RESOLVED,
        "py/sqli": FindingStatus.OPEN,
        "B602": FindingStatus.OPEN,
    }


def test_the_same_result_in_two_categories_is_two_findings(project):
    import_(project, sarif_bytes([A]), category="backend")
    scan = import_(project, sarif_bytes([A]), category="frontend")
    assert (scan.new_count, scan.resolved_count) == (1, 0)
    assert sorted(Finding.objects.values_list("category", flat=True)) == [
        "backend",
        "frontend",
    ]


def test_the_category_argument_wins_over_automation_details(project):
    scan = import_(project, codeql([A], "from-the-file"), category=" from-the-caller ")
    assert scan.category == "from-the-caller"
    assert Finding.objects.get().category == "from-the-caller"


@pytest.mark.parametrize("category", ["two\nlines", "tab\there", "x" * 256, "\u202e"])
def test_an_invalid_category_is_refused_before_anything_is_written(project, category):
    with pytest.raises(ProjectError) as caught:
        import_(project, sarif_bytes([A]), category=category)
    assert caught.value.code == "invalid_category"
    assert nothing_written()


# -- incomplete runs --------------------------------------------------------------


def test_a_failed_run_resolves_nothing_and_keeps_its_notifications(project):
    import_(project, sarif_bytes([A, B]))
    failed = sarif_run(
        [A], successful=False, notifications=["Out of memory", "Gave up on b.py"]
    )
    scan = import_(project, sarif_runs_bytes(failed))
    assert scan.incomplete is True
    assert (scan.seen_again_count, scan.resolved_count) == (1, 0)
    assert scan.tool_notifications == [
        {"tool": "Bandit", "category": "", "message": "Out of memory"},
        {"tool": "Bandit", "category": "", "message": "Gave up on b.py"},
    ]
    assert statuses(project) == {"B602": "open", "B105": "open"}
    scan.refresh_from_db()
    assert scan.incomplete and len(scan.tool_notifications) == 2
    (done,) = Event.objects.filter(kind=EventKind.SCAN_COMPLETED, scan=scan)
    assert done.payload["incomplete"] is True


def test_results_null_resolves_nothing(project):
    import_(project, sarif_bytes([A, B]))
    scan = import_(project, sarif_runs_bytes(sarif_run(None)))
    assert (scan.incomplete, scan.resolved_count) == (True, 0)
    assert statuses(project) == {"B602": "open", "B105": "open"}


def test_an_incomplete_run_only_protects_its_own_tool(project):
    import_(project, sarif_runs_bytes(sarif_run([A]), sarif_run([C], tool="Semgrep")))
    scan = import_(
        project,
        sarif_runs_bytes(
            sarif_run([]), sarif_run(None, tool="Semgrep", successful=False)
        ),
    )
    assert (scan.incomplete, scan.resolved_count) == (True, 1)
    assert scan.tool_name == "Bandit, Semgrep"
    assert statuses(project) == {"B602": "resolved", "B303": "open"}


def test_a_tool_notification_of_a_complete_run_is_kept_and_resolution_happens(
    project,
):
    import_(project, sarif_bytes([A, B]))
    run = sarif_run([A], successful=True, notifications=["Skipped vendor/"])
    scan = import_(project, sarif_runs_bytes(run))
    assert (scan.incomplete, scan.resolved_count) == (False, 1)
    assert [n["message"] for n in scan.tool_notifications] == ["Skipped vendor/"]


# -- resolution details -----------------------------------------------------------


def test_findings_whose_last_scan_was_deleted_are_still_resolved(project):
    first = import_(project, sarif_bytes([A, B]))
    first.delete()
    assert set(Finding.objects.values_list("last_seen_scan", flat=True)) == {None}
    scan = import_(project, sarif_bytes([A]))
    assert (scan.seen_again_count, scan.resolved_count) == (1, 1)
    assert statuses(project) == {"B602": "open", "B105": "resolved"}


def test_reopened_and_resolved_in_one_scan_are_recorded_in_order(project, owner):
    import_(project, sarif_bytes([A, B]))
    import_(project, sarif_bytes([B]))  # A resolved
    confirmed = Finding.objects.get(rule_id="B105")
    finding_status_change(finding=confirmed, status="confirmed", actor=owner)
    Event.objects.all().delete()
    scan = import_(project, sarif_bytes([A]))  # A re-opened, B resolved
    assert (scan.reopened_count, scan.resolved_count) == (1, 1)
    assert [
        (c.finding.rule_id, c.from_status, c.to_status, c.actor)
        for c in FindingStatusChange.objects.filter(scan=scan).order_by("pk")
    ] == [
        ("B602", "resolved", "reopened", None),
        ("B105", "confirmed", "resolved", None),
    ]
    (changed,) = Event.objects.filter(kind=EventKind.STATUS_CHANGED)
    assert [c["to"] for c in changed.payload["changes"]] == ["reopened", "resolved"]
    (new,) = Event.objects.filter(kind=EventKind.NEW_VULNERABILITIES)
    assert new.payload["finding_ids"] == [Finding.objects.get(rule_id="B602").pk]


# -- failures and the transaction ---------------------------------------------------


@pytest.fixture
def changing_file(monkeypatch, tmp_path):
    """A file that sarif_open accepts and that is then cut short in the middle of
    its results, as if it were rewritten while being read."""
    path = tmp_path / "changing.sarif"
    path.write_bytes(sarif_bytes(many_results(3000)))
    opened = services.sarif_open

    def open_then_cut(source, **kwargs):
        document = opened(source, **kwargs)
        text = path.read_bytes()
        path.write_bytes(text[: len(text) // 2])
        return document

    monkeypatch.setattr(services, "sarif_open", open_then_cut)
    return path


def test_an_error_in_the_middle_of_the_results_writes_nothing(project, changing_file):
    with pytest.raises(SarifError):
        import_(project, changing_file)
    assert nothing_written()
    assert not stage_exists()


@pytest.mark.django_db(transaction=True)
def test_an_error_outside_any_transaction_writes_nothing(project, changing_file):
    with pytest.raises(SarifError):
        import_(project, changing_file)
    assert nothing_written()
    assert not stage_exists()


@pytest.mark.django_db(transaction=True)
def test_an_import_outside_any_transaction_commits_and_drops_its_stage(project):
    scan = import_(project, sarif_bytes([A, B, A]))
    assert (scan.new_count, scan.duplicate_count) == (2, 1)
    assert Finding.objects.count() == 2 and not stage_exists()
    assert import_(project, sarif_bytes([A])).resolved_count == 1


def test_a_failure_after_the_writes_rolls_them_back(project, monkeypatch):
    import_(project, sarif_bytes([A]))

    def broken_emit(**kwargs):
        raise RuntimeError("event store down")

    monkeypatch.setattr(services, "event_emit", broken_emit)
    with pytest.raises(RuntimeError):
        import_(project, sarif_bytes([B]))
    assert Scan.objects.count() == 1
    assert statuses(project) == {"B602": "open"}
    assert not FindingStatusChange.objects.exists() and not stage_exists()


def test_the_import_works_again_after_a_failure_on_the_same_connection(
    project, changing_file
):
    with pytest.raises(SarifError):
        import_(project, changing_file)
    assert import_(project, sarif_bytes([A])).new_count == 1


# -- queued scans -----------------------------------------------------------------


@pytest.fixture
def queued(project, owner):
    return Scan.objects.create(
        project=project,
        source=ScanSource.UPLOAD,
        created_by=owner,
        category="backend",
        status=ScanStatus.QUEUED,
    )


def test_a_queued_scan_is_filled_in_rather_than_created(project, owner, queued):
    scan = import_(
        project, sarif_bytes([A, B]), scan=queued, actor=owner, category="backend"
    )
    assert scan.pk == queued.pk and Scan.objects.count() == 1
    queued.refresh_from_db()
    assert (queued.status, queued.new_count, queued.tool_name, queued.category) == (
        ScanStatus.COMPLETE,
        2,
        "Bandit",
        "backend",
    )
    assert queued.started_at and queued.finished_at >= queued.started_at
    assert queued.source == ScanSource.UPLOAD and queued.created_by == owner
    assert set(Event.objects.values_list("scan", flat=True)) == {queued.pk}
    assert set(Finding.objects.values_list("first_seen_scan", flat=True)) == {queued.pk}


def test_a_failed_import_leaves_the_queued_scan_to_its_caller(project, queued):
    with pytest.raises(SarifError):
        import_(project, b'{"version": "2.1.0", "runs": [{"tool": {}}]}', scan=queued)
    queued.refresh_from_db()
    assert (queued.status, queued.tool_name, queued.finished_at) == (
        ScanStatus.QUEUED,
        "",
        None,
    )
    assert not Finding.objects.exists() and not Event.objects.exists()


def test_a_queued_scan_of_another_project_is_refused(project, other_project, queued):
    with pytest.raises(ValueError):
        import_(other_project, sarif_bytes([A]), scan=queued)


# -- inputs -----------------------------------------------------------------------


class Unseekable(io.RawIOBase):
    """A pipe: read() only (stdin)."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self):
        return True

    def seekable(self):
        return False

    def readinto(self, buffer):
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize("kind", ["bytes", "str path", "Path", "file", "pipe"])
def test_every_kind_of_input_is_read(project, tmp_path, kind):
    data = sarif_bytes([A, B])
    path = tmp_path / "scan.sarif"
    path.write_bytes(data)
    sarif = {
        "bytes": data,
        "str path": str(path),
        "Path": path,
        "file": io.BytesIO(data),
        "pipe": Unseekable(data),
    }[kind]
    assert import_(project, sarif).new_count == 2


@pytest.mark.parametrize("kind", ["bytes", "Path", "file", "pipe"])
def test_an_oversized_input_is_refused_unread(project, tmp_path, settings, kind):
    data = sarif_bytes([A, B])
    settings.SARIF_MAX_BYTES = len(data) - 1
    path = tmp_path / "scan.sarif"
    path.write_bytes(data)
    sarif = {
        "bytes": data,
        "Path": path,
        "file": io.BytesIO(data),
        "pipe": Unseekable(data),
    }[kind]
    with pytest.raises(SarifTooLarge):
        import_(project, sarif)
    assert nothing_written()


def test_a_missing_path_is_a_sarif_error(project, tmp_path):
    with pytest.raises(SarifError, match="cannot be read"):
        import_(project, tmp_path / "missing.sarif")


def test_progress_is_reported_as_results_are_read(project):
    seen = []
    import_(project, sarif_bytes(many_results(2500)), progress=seen.append)
    assert seen == [1000, 2000, 2500]


# -- size: a constant number of queries ---------------------------------------------


def _queries(project, data: bytes) -> int:
    with CaptureQueriesContext(connection) as captured:
        import_(project, data)
    return len(captured)


def test_the_query_count_does_not_grow_with_the_results(project, other_project):
    small, large = many_results(1000), many_results(20_000)
    first = (
        _queries(project, sarif_bytes(small)),
        _queries(other_project, sarif_bytes(large)),
    )
    again = (
        _queries(project, sarif_bytes(small)),
        _queries(other_project, sarif_bytes(large)),
    )
    gone = (
        _queries(project, sarif_bytes([])),
        _queries(other_project, sarif_bytes([])),
    )
    assert first[0] == first[1], first
    assert again[0] == again[1], again
    assert gone[0] == gone[1], gone
    assert Finding.objects.filter(project=other_project, status="resolved").count() == (
        20_000
    )
    assert (
        FindingStatusChange.objects.filter(finding__project=other_project).count()
        == 20_000
    )
    (new,) = Event.objects.filter(
        project=other_project, kind=EventKind.NEW_VULNERABILITIES
    )
    assert len(new.payload["finding_ids"]) == 20_000


def test_queries_do_not_grow_with_duplicates_either(project, other_project):
    one = json.loads(sarif_bytes([A]))
    many = json.loads(sarif_bytes([A] * 5000))
    counts = (
        _queries(project, json.dumps(one).encode()),
        _queries(other_project, json.dumps(many).encode()),
    )
    assert counts[0] == counts[1]
    assert Finding.objects.get(project=other_project).occurrences == 5000


def test_two_imports_of_one_project_in_one_transaction_see_each_other(project):
    with transaction.atomic():
        import_(project, sarif_bytes([A]))
        scan = import_(project, sarif_bytes([A, B]))
    assert (scan.new_count, scan.seen_again_count) == (1, 1)


@pytest.mark.django_db(transaction=True)
def test_two_imports_of_one_project_at_once_are_serialized(project):
    data = sarif_bytes(many_results(2000))
    scans, errors = [], []
    start = threading.Barrier(2)

    def run():
        try:
            start.wait()
            scans.append(import_(project, data))
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert sorted((s.new_count, s.seen_again_count) for s in scans) == [
        (0, 2000),
        (2000, 0),
    ]
    assert Finding.objects.count() == 2000


# -- the reader's hand-written cases (tests/fixtures/sarif/cases/) ------------------

CASES = Path(__file__).resolve().parents[1] / "fixtures" / "sarif" / "cases"


def test_case_incomplete_runs_resolve_only_the_complete_tool(project):
    seed = sarif_runs_bytes(
        sarif_run(
            [sarif_result("java/xss")], tool="CodeQL", automation_id="/language:java/"
        ),
        sarif_run([sarif_result("python-eval")], tool="Semgrep OSS"),
        sarif_run([sarif_result("B602")], tool="Bandit"),
        sarif_run([sarif_result("X1")], tool="RuleExporter"),
    )
    import_(project, seed)
    scan = import_(project, CASES / "incomplete-runs.sarif")
    assert (scan.incomplete, scan.new_count, scan.resolved_count) == (True, 1, 1)
    assert statuses(project) == {
        "java/xss": "open",  # CodeQL's build failed
        "python-eval": "open",  # Semgrep sent "results": null
        "X1": "open",  # RuleExporter sent no results at all
        "B602": "resolved",  # Bandit finished and found nothing
        "java/sql-injection": "open",
    }
    assert scan.tool_notifications == [
        {
            "tool": "CodeQL",
            "category": "/language:java",
            "message": "Could not build the project:\nmvn exited with code 1",
        },
        {
            "tool": "CodeQL",
            "category": "/language:java",
            "message": "Extraction of ⟨U+202E⟩Foo.java failed.",
        },
    ]


def test_case_categories_are_separate_analyses(project):
    scan = import_(project, CASES / "categories.sarif")
    # run-1 and run-2 of "my-analysis" are one category: their result is counted once.
    assert (scan.new_count, scan.duplicate_count) == (4, 1)
    assert sorted(Finding.objects.values_list("category", flat=True)) == [
        "",
        "/language:python",
        "my-analysis",
        "nightly",
    ]
    nightly = sarif_run([], tool="Semgrep OSS", automation_id="nightly")
    scan = import_(project, sarif_runs_bytes(nightly))
    assert scan.resolved_count == 1
    assert list(
        Finding.objects.filter(status="resolved").values_list("category", flat=True)
    ) == ["nightly"]


def test_case_results_without_a_rule(project):
    scan = import_(project, CASES / "no-rule.sarif")
    assert scan.new_count == 4
    findings = Finding.objects.order_by("pk")
    assert {f.rule_id for f in findings} == {""}
    assert {f.rule_label for f in findings} == {"No rule"}
    assert [f.location for f in findings] == [
        "bin/server:1",
        "bin/server:1",
        "Bank::Account::Transfer",
        "Bank::Account::Withdraw",
    ]


def test_case_two_checkouts_of_one_repository_are_one_set_of_findings(project):
    first = import_(project, CASES / "eslint-checkout-a.sarif")
    second = import_(project, CASES / "eslint-checkout-b.sarif")
    assert (first.new_count, second.new_count, second.seen_again_count) == (4, 0, 4)
    assert second.resolved_count == 0


def test_case_baseline_absent_results_and_suppressions_are_not_findings(project):
    scan = import_(project, CASES / "baseline.sarif")
    assert scan.new_count == 6
    messages = set(Finding.objects.values_list("message", flat=True))
    assert "absent: gone since the baseline" not in messages
    assert "suppression accepted" not in messages and "pass" not in messages


def test_case_trojan_source_is_stored_visible(project):
    import_(project, CASES / "trojan-source.sarif")
    hidden = ("\u202e", "\u2066", "\u200b", "\x00", "\x1b")
    for finding in Finding.objects.all():
        for field in ("tool_name", "category", "rule_id", "message", "path"):
            value = getattr(finding, field)
            assert not any(char in value for char in hidden), (field, value)
    assert Finding.objects.filter(message__contains="⟨U+202E⟩").exists()
    assert Scan.objects.get().category == "cat⟨U+202E⟩gory"
