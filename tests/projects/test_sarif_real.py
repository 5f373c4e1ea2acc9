"""The reader on real scanner output (tests/fixtures/sarif/real/, see its README).

facts.json was computed from the files by a separate script that applies none of the
reader's rules, so the reader is checked against what the tools wrote. No database.
"""

import json
import posixpath
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from projects.sarif import sarif_open

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "sarif" / "real"
FACTS = json.loads((REAL / "facts.json").read_text()) if REAL.is_dir() else {}
FILES = sorted(FACTS)


def identities(name: str, run_index: int | None = None) -> list[str]:
    return [
        result.identity
        for result in sarif_open(REAL / name).results()
        if run_index is None or result.run_index == run_index
    ]


def expected_path(uri: str) -> str:
    """What the reader should make of `uri`, when it is relative."""
    return posixpath.normpath(unquote(uri).replace("\\", "/"))


@pytest.mark.parametrize("name", FILES)
def test_every_real_file_is_read_with_its_runs_and_tools(name):
    facts = FACTS[name]
    document = sarif_open(REAL / name)
    assert len(document.runs) == facts["runs"]
    for run, run_facts in zip(document.runs, facts["run_facts"], strict=True):
        assert run.tool_name == run_facts["tool_name"]
        assert run.tool_version == (
            run_facts["tool_semantic_version"] or run_facts["tool_version"] or ""
        )
        assert run.complete == (
            False not in run_facts["invocations_executionSuccessful"]
        )
        assert run.notifications == ()


@pytest.mark.parametrize("name", FILES)
def test_every_result_keeps_its_rule_line_column_and_path(name):
    facts = FACTS[name]
    found = list(sarif_open(REAL / name).results())
    expected = [
        (run_index, *entry)
        for run_index, run_facts in enumerate(facts["run_facts"])
        for entry in run_facts["tuples"]
    ]
    assert len(found) == len(expected)
    for result, (run_index, rule_id, uri, line, column) in zip(
        found, expected, strict=True
    ):
        assert (result.run_index, result.rule_id) == (run_index, rule_id or "")
        assert (result.start_line, result.start_column) == (line, column)
        if urlsplit(uri).scheme == "file":
            absolute = unquote(urlsplit(uri).path)
            assert not result.path.startswith("/")
            assert absolute.endswith("/" + result.path)
        else:
            assert result.path == expected_path(uri)


@pytest.mark.parametrize("name", FILES)
def test_results_on_one_line_are_separate_findings_unless_a_fingerprint_joins_them(
    name,
):
    facts = FACTS[name]
    found = list(sarif_open(REAL / name).results())
    offset = 0
    for run_facts in facts["run_facts"]:
        joined = {
            frozenset(group["results"])
            for group in run_facts["results_sharing_partialFingerprints"]
        }
        for group in run_facts["results_on_same_rule_uri_line"]:
            members = group["results"]
            ids = {found[offset + i].identity for i in members}
            shared = any(set(members) <= together for together in joined)
            assert len(ids) == (1 if shared else len(members)), group
        offset += run_facts["results"]


@pytest.mark.parametrize("name", FILES)
def test_a_shared_fingerprint_in_two_files_is_two_findings(name):
    facts = FACTS[name]
    found = list(sarif_open(REAL / name).results())
    offset = 0
    for run_facts in facts["run_facts"]:
        for key in (
            "results_sharing_partialFingerprints",
            "results_sharing_fingerprints",
        ):
            for group in run_facts[key]:
                for a in group["results"]:
                    for b in group["results"]:
                        first, second = found[offset + a], found[offset + b]
                        if first.path != second.path:
                            assert first.identity != second.identity
        offset += run_facts["results"]


def test_semgrep_without_login_gives_every_result_its_own_identity():
    # All 15 results carry {"matchBasedId/v1": "requires login"}.
    run_facts = FACTS["semgrep-1.185.0.sarif"]["run_facts"][0]
    assert run_facts["results_sharing_fingerprints"][0]["results"] == list(range(15))
    assert len(set(identities("semgrep-1.185.0.sarif"))) == 15


def test_two_evals_on_one_line_are_two_findings_in_every_tool_that_reports_both():
    for name in ("bandit-1.9.4.sarif", "ruff-0.17.6.sarif", "semgrep-1.185.0.sarif"):
        on_48 = [
            result
            for result in sarif_open(REAL / name).results()
            if result.path == "more.py" and result.start_line == 48
        ]
        assert [r.start_column for r in on_48] == [12, 22], name
        assert on_48[0].identity != on_48[1].identity


def test_same_code_scanned_in_two_checkouts_gives_the_same_identities():
    relative = identities("ruff-0.17.6.sarif")
    assert identities("ruff-abs-checkout-a.sarif") == relative
    assert identities("ruff-abs-checkout-b.sarif") == relative
    rewritten = identities("sarif-multitool-5.7.0-rewrite-ruff-abs-checkout-a.sarif")
    for name in (
        "sarif-multitool-5.7.0-rewrite-ruff-abs-checkout-b.sarif",
        "sarif-multitool-5.7.0-rebaseuri-ruff-abs-checkout-a.sarif",
        "sarif-multitool-5.7.0-rebaseuri-ruff-abs-checkout-b.sarif",
    ):
        assert identities(name) == rewritten, name


def test_a_merged_file_gives_each_tool_the_identities_of_its_own_file():
    merged = "sarif-multitool-5.7.0-merge.sarif"
    assert identities(merged, 0) == identities("semgrep-1.185.0.sarif")
    assert identities(merged, 1) == identities("bandit-1.9.4.sarif")
    assert identities(merged, 2) == identities("eslint-9.39.5.sarif")


def test_percent_encoded_and_non_ascii_paths_are_decoded():
    paths = {r.path for r in sarif_open(REAL / "bandit-1.9.4.sarif").results()}
    assert "ün.py" in paths and "%C3%BCn.py" not in paths


def test_flawfinder_srcroot_relative_uris_and_fingerprints():
    found = list(sarif_open(REAL / "flawfinder-2.0.20.sarif").results())
    assert {r.path for r in found} == {"native/copy.c"}
    assert len({r.identity for r in found}) == len(found)


def test_real_severities():
    def severities(name):
        return {(r.rule_id, r.severity) for r in sarif_open(REAL / name).results()}

    semgrep = severities("semgrep-1.185.0.sarif")
    # security-severity "9.8" and "7.5" on the rules.
    assert ("sarif.real.python-eval", "critical") in semgrep
    assert ("sarif.real.python-pickle-loads", "high") in semgrep
    bandit = severities("bandit-1.9.4.sarif")
    assert ("B602", "high") in bandit and ("B404", "low") in bandit
    # Hadolint has no rules at all: the results' own levels decide.
    assert {s for _rule, s in severities("hadolint-2.15.1.sarif")} == {"medium", "low"}


def test_rule_ids_with_spaces_and_slashes_are_kept_as_written():
    (first, *_rest) = sarif_open(REAL / "secretlint-12.0.0.sarif").results()
    assert first.rule_id.startswith("@secretlint/secretlint-rule-preset-recommend > ")
