"""SARIF 2.1.0 and GitHub conventions, one behaviour per test, on hand-written files
in tests/fixtures/sarif/cases/. No database."""

import io
import json
from pathlib import Path

import pytest

from projects.models import Severity
from projects.sarif import (
    PLACEHOLDER_FINGERPRINTS,
    SarifDocument,
    sarif_open,
    sarif_parse,
)
from tests.projects.sarif_documents import sarif_bytes, sarif_doc, sarif_result

CASES = Path(__file__).resolve().parents[1] / "fixtures" / "sarif" / "cases"


def case(name: str, **kwargs) -> SarifDocument:
    return sarif_open(CASES / name, **kwargs)


def results(name: str, **kwargs) -> list:
    return list(case(name, **kwargs).results())


def edited(name: str, edit) -> bytes:
    """The case file `name`, changed by `edit(document)`, as bytes."""
    document = json.loads((CASES / name).read_text())
    edit(document)
    return json.dumps(document).encode()


def by_message(found) -> dict:
    return {result.message: result for result in found}


# -- 1. rules: driver, extensions, references --------------------------------------


def test_rules_in_tool_extensions_are_found_through_the_tool_component_index():
    first = results("codeql-extensions.sarif")[0]
    assert (first.rule_id, first.rule_name) == (
        "py/command-line-injection",
        "py/command-line-injection",
    )
    # security-severity 9.8 on the extension's rule, not on the (empty) driver.
    assert first.severity == Severity.CRITICAL


def test_rule_reference_by_tool_component_guid_or_name_without_a_rule_id():
    found = results("codeql-extensions.sarif")
    by_guid, by_name = found[2], found[3]
    assert (by_guid.rule_id, by_guid.severity) == ("py/code-injection", "critical")
    assert (by_name.rule_id, by_name.severity) == ("py/sql-injection", "high")


def test_rule_index_points_into_the_referenced_component_not_the_driver():
    # rule.index 0 in extensions[1] is py/unused-import (level note), not
    # extensions[0]'s first rule (a critical one).
    unused = results("codeql-extensions.sarif")[5]
    assert (unused.rule_name, unused.severity) == ("py/unused-import", "low")


def test_hierarchical_rule_id_falls_back_to_its_base_rule_one_component_at_a_time():
    child = results("codeql-extensions.sarif")[4]
    assert child.rule_id == "py/sql-injection/taint-through-format"
    assert (child.rule_name, child.severity) == ("py/sql-injection", "high")


def test_rule_found_by_id_in_an_extension_when_the_result_does_not_say_where():
    def drop_references(document):
        for result in document["runs"][0]["results"]:
            result.pop("rule", None)
            result.pop("ruleIndex", None)

    data = edited("codeql-extensions.sarif", drop_references)
    assert [r.rule_name for r in sarif_open(data).results()][:2] == [
        "py/command-line-injection",
        "py/command-line-injection",
    ]


# -- 2. identity: the tool's fingerprints ---------------------------------------------


def test_identity_is_64_hex_characters():
    for result in results("codeql-extensions.sarif"):
        assert len(result.identity) == 64 and int(result.identity, 16) >= 0
        assert result.fingerprint == result.identity  # the old name


def test_same_fingerprint_in_two_files_is_two_findings():
    bad, good = results("codeql-extensions.sarif")[:2]
    assert (bad.path, good.path) == ("bad/mod_user.py", "good/mod_user.py")
    assert bad.identity != good.identity


def test_fingerprint_keeps_the_identity_when_the_code_moves():
    before = results("codeql-extensions.sarif")[0].identity

    def move(document):
        result = document["runs"][0]["results"][0]
        region = result["locations"][0]["physicalLocation"]["region"]
        region["startLine"] = 50
        result["message"]["text"] = "Reworded."

    (moved, *_rest) = sarif_open(edited("codeql-extensions.sarif", move)).results()
    assert moved.start_line == 50 and moved.identity == before

    def rehash(document):
        fingerprints = document["runs"][0]["results"][0]["partialFingerprints"]
        fingerprints["primaryLocationLineHash"] = "0123456789abcdef:1"

    (changed, *_rest) = sarif_open(edited("codeql-extensions.sarif", rehash)).results()
    assert changed.identity != before


def test_fingerprint_key_order_does_not_matter():
    first = sarif_parse(
        sarif_bytes([sarif_result(partial_fingerprints={"a": "1", "b": "2"})])
    ).results[0]
    second = sarif_parse(
        sarif_bytes([sarif_result(partial_fingerprints={"b": "2", "a": "1"})])
    ).results[0]
    assert first.identity == second.identity


def test_semgrep_requires_login_placeholder_is_not_an_identity():
    # Every result carries "matchBasedId/v1": "requires login": used as a
    # fingerprint, all five would be one finding.
    found = results("semgrep-login.sarif")
    assert len({result.identity for result in found}) == 5


@pytest.mark.parametrize(
    "value",
    sorted(PLACEHOLDER_FINGERPRINTS)
    + ["Requires Login", "  ", "0000000000000000", "0000000000000000:1", "0:0"],
)
def test_placeholder_fingerprint_values_count_as_absent(value):
    plain = sarif_parse(sarif_bytes([sarif_result()])).results[0]
    placeholder = sarif_parse(
        sarif_bytes([sarif_result(fingerprints={"matchBasedId/v1": value})])
    ).results[0]
    assert placeholder.identity == plain.identity


def test_a_usable_fingerprint_next_to_a_placeholder_still_counts():
    plain = sarif_parse(sarif_bytes([sarif_result()])).results[0]
    mixed = sarif_parse(
        sarif_bytes(
            [
                sarif_result(
                    fingerprints={"matchBasedId/v1": "requires login"},
                    partial_fingerprints={
                        "primaryLocationLineHash": "39fa2ee980eb94b0:1"
                    },
                )
            ]
        )
    ).results[0]
    assert mixed.identity != plain.identity


# -- 3. identity without a usable fingerprint ------------------------------------------


def test_two_results_on_one_line_at_different_columns_are_two_findings():
    eval_12, eval_22 = results("semgrep-login.sarif")[:2]
    assert (eval_12.start_line, eval_12.start_column) == (48, 12)
    assert (eval_22.start_line, eval_22.start_column) == (48, 22)
    assert eval_12.identity != eval_22.identity

    var_3, var_14 = results("eslint-checkout-a.sarif")[:2]
    assert (var_3.rule_id, var_3.start_column, var_14.start_column) == ("no-var", 3, 14)
    assert var_3.identity != var_14.identity


def test_shared_snippet_with_different_messages_is_two_findings():
    found = results("semgrep-login.sarif")
    one_eval, two_evals = found[0], found[2]
    assert (one_eval.start_line, one_eval.start_column) == (48, 12)
    assert (two_evals.start_line, two_evals.start_column) == (48, 12)
    assert one_eval.identity != two_evals.identity


def test_identical_results_share_an_identity_and_are_all_yielded():
    found = results("messages.sarif")
    empty, unknown_id = found[-2], found[-1]
    assert empty.identity == unknown_id.identity
    # The old API keeps one per identity, the first.
    report = sarif_parse((CASES / "messages.sarif").read_bytes())
    assert len(report.results) == len(found) - 1


# -- 4. results without a rule ------------------------------------------------------------


def test_result_without_a_rule_is_valid_and_identified_by_location_and_message():
    stack, heap, transfer, withdraw = results("no-rule.sarif")
    assert {stack.rule_id, stack.rule_name, heap.rule_id} == {""}
    assert stack.path == heap.path == "bin/server"
    assert stack.identity != heap.identity  # same place, different message
    assert stack.severity == Severity.HIGH


def test_logical_location_identifies_a_result_without_a_file():
    stack, heap, transfer, withdraw = results("no-rule.sarif")
    assert (transfer.path, transfer.start_line) == ("", None)
    # From run.logicalLocations by index, and given inline.
    assert transfer.logical_location == "Bank::Account::Transfer"
    assert withdraw.logical_location == "Bank::Account::Withdraw"
    assert transfer.message == withdraw.message
    assert transfer.identity != withdraw.identity


# -- 5. categories ----------------------------------------------------------------------


def test_category_is_the_automation_id_up_to_its_last_slash():
    document = case("categories.sarif")
    assert [run.category for run in document.runs] == [
        "my-analysis",
        "my-analysis",
        "nightly",
        "/language:python",
        "",
    ]
    found = list(document.results())
    assert [r.category for r in found] == [r.category for r in document.runs]


def test_same_result_in_two_categories_is_two_findings():
    found = results("categories.sarif")
    # run-1 and run-2 of "my-analysis" are one analysis: same identity.
    assert found[0].identity == found[1].identity
    assert len({r.identity for r in found[1:]}) == 4


def test_category_argument_wins_over_automation_details():
    document = case("categories.sarif", category="  nightly  ")
    assert {run.category for run in document.runs} == {"nightly"}
    assert len({r.identity for r in document.results()}) == 1
    assert case("codeql-extensions.sarif", category="x").runs[0].category == "x"


# -- 6. URIs and paths -------------------------------------------------------------------


def test_uri_base_ids_are_resolved_to_root_relative_decoded_paths():
    paths = [r.path for r in results("uri-bases.sarif")]
    assert paths == [
        "pyapp/ün.py",  # PKG -> SRCROOT, percent-decoded
        "src/a b.py",  # absolute, under SRCROOT's absolute URI
        "vendor/util.py",  # VENDOR stands for a directory under SRCROOT
        "main.py",  # %SRCROOT% undefined: relative to the root anyway
        "loop/lib.py",  # a base defined in terms of itself stops
        "src/from_index.py",  # artifactLocation.index into run.artifacts
        "src/dots.py",  # "./src/../src/dots.py"
        "tools/run.py",  # a base defined without a URI
        "/usr/lib/python3.11/subprocess.py",  # outside every root: kept absolute
        "src/Win File.cs",  # relative to the invocation's working directory
        "src/Other.cs",  # backslashes
    ]


def test_same_code_in_two_checkout_directories_gives_same_paths_and_identities():
    for first, second in [
        ("uri-bases.sarif", "uri-bases-elsewhere.sarif"),
        ("eslint-checkout-a.sarif", "eslint-checkout-b.sarif"),
    ]:
        a, b = results(first), results(second)
        assert [(r.path, r.identity) for r in a] == [(r.path, r.identity) for r in b]


def test_absolute_uris_without_a_root_are_relative_to_their_common_directory():
    # ESLint writes absolute file URIs and no invocation: the common directory of the
    # run's URIs (results and artifacts) is the root.
    assert [r.path for r in results("eslint-checkout-a.sarif")] == [
        "app.js",
        "app.js",
        "admin/panel.js",
        "admin/panel.js",
    ]


def test_related_location_paths_are_resolved_the_same_way():
    found = results("codeql-extensions.sarif")
    assert found[0].message == (
        "This command line depends on a user-provided value (bad/mod_user.py:4)."
    )


# -- 7. baselineState, kind, suppressions ------------------------------------------------


def test_absent_baseline_state_passing_and_suppressed_results_are_not_yielded():
    assert [r.message for r in results("baseline.sarif")] == [
        "new",
        "unchanged",
        "updated",
        "explicit fail",
        "suppression under review",
        "suppression rejected",
    ]


# -- 8. incomplete runs ------------------------------------------------------------------


def test_failed_or_result_less_runs_are_incomplete_with_their_error_notifications():
    failed, null_results, empty, rules_only = case("incomplete-runs.sarif").runs
    assert not failed.complete
    assert failed.notifications == (
        "Could not build the project:\nmvn exited with code 1",
        "Extraction of ⟨U+202E⟩Foo.java failed.",
    )
    assert (null_results.complete, null_results.notifications) == (False, ())
    assert empty.complete  # ran, found nothing: everything it knew of is fixed
    assert not rules_only.complete  # no "results" at all: a rules export, not a scan


def test_results_of_a_failed_run_are_still_yielded():
    (result,) = results("incomplete-runs.sarif")
    assert (result.run_index, result.rule_id) == (0, "java/sql-injection")


def test_error_notifications_are_capped():
    def many(document):
        invocation = document["runs"][0]["invocations"][0]
        invocation["toolExecutionNotifications"] = [
            {"level": "error", "message": {"text": f"error {i} " + "x" * 5000}}
            for i in range(100)
        ]

    run = sarif_open(edited("incomplete-runs.sarif", many)).runs[0]
    assert len(run.notifications) == 20
    assert all(len(text) <= 1000 for text in run.notifications)


# -- 9. severity ----------------------------------------------------------------------------


def test_security_severity_bands_and_level_fallbacks():
    severities = [(r.rule_id, r.message, r.severity) for r in results("severity.sarif")]
    assert [severity for _rule, _message, severity in severities] == [
        "critical",  # 10.0
        "critical",  # 9.0
        "high",  # 8.9
        "high",  # 7.0
        "medium",  # 6.9
        "medium",  # 4.0
        "low",  # 3.9
        "low",  # 0.1
        "medium",  # 5, a JSON number
        "low",  # 0.0: level note
        "low",  # 0.05: level note
        "high",  # 10.1: level error
        "medium",  # -1: level warning
        "info",  # "high": level none
        "low",  # [9.8]
        "low",  # null
        "low",  # true
        "low",  # "NaN"
        "low",  # "1e999"
        "low",  # the result's 2.5 beats the rule's 9.0
        "critical",  # the result's "n/a" is no score: the rule's 9.0
        "high",  # no level: rule default error
        "low",  # no level: rule default note
        "info",  # no level: rule default none
        "high",  # the result's level beats the rule's default
        "medium",  # no level anywhere: warning
        "medium",  # "critical" is not a SARIF level: as if absent
        "critical",  # 9.1 on a rule in tool.extensions
    ]


# -- 10. messages ---------------------------------------------------------------------------


def test_message_placeholders_strings_links_and_escapes():
    assert [r.message for r in results("messages.sarif")] == [
        "Variable x is assigned 3 times.",
        "Tainted input reaches eval.",
        "Use {} for an empty dict, not dict().",
        "Shared text for everyone.",
        "Missing argument one and {7}.",
        "A {0} without arguments stays as written.",
        "Flows from this input (app/forms.py:12) to this sink (app/db.py), see the "
        "docs and nowhere.",
        "Index [0] is out of range; link [with brackets] (a.py:3).",
        "Only **markdown**: [a link](https://example.com).",
        "The rule's short description.",
        "The rule's short description.",
    ]


# -- 11. invisible and bidirectional characters ---------------------------------------------


def test_invisible_characters_are_shown_as_markers_in_everything_stored():
    document = case("trojan-source.sarif")
    run = document.runs[0]
    assert run.tool_name == "Safe⟨U+202E⟩Scanner"
    assert run.tool_version == "1.0⟨U+200B⟩"
    assert run.category == "cat⟨U+202E⟩gory"
    first, second = document.results()
    assert first.tool_name == "Safe⟨U+202E⟩Scanner"
    assert first.rule_id == "T⟨U+2066⟩1"
    assert first.rule_name == "trojan⟨U+200B⟩source"
    assert first.path == "src/⟨U+202E⟩txt.py"
    assert first.logical_location == "auth.⟨U+200B⟩check"
    assert first.message == (
        "Access check ⟨U+202E⟩ } if (isAdmin) ⟨U+2066⟩ begins here.\n"
        "Second line\twith a tab.\nWindows line.⟨U+0000⟩NUL, ⟨U+001B⟩[31mESC"
        "⟨U+001B⟩[0m, ⟨U+200B⟩zero width, ⟨U+FEFF⟩BOM, ⟨U+2028⟩line separator, "
        "⟨U+00AD⟩soft hyphen, ⟨U+3164⟩Hangul filler, café 😀 中文."
    )
    # The hidden characters in the snippet make it another snippet.
    assert first.identity != second.identity


# -- sources ---------------------------------------------------------------------------------


def test_a_path_a_str_bytes_and_a_binary_file_give_the_same_results(tmp_path):
    path = CASES / "codeql-extensions.sarif"
    data = path.read_bytes()
    expected = [r.identity for r in sarif_open(path).results()]
    with open(path, "rb") as handle:
        from_file = [r.identity for r in sarif_open(handle).results()]
    assert [r.identity for r in sarif_open(str(path)).results()] == expected
    assert [r.identity for r in sarif_open(data).results()] == expected
    assert [r.identity for r in sarif_open(bytearray(data)).results()] == expected
    assert from_file == expected


def test_a_file_object_is_read_from_its_position_and_results_can_be_read_twice():
    data = sarif_bytes([sarif_result()])
    handle = io.BytesIO(b"garbage before" + data)
    handle.seek(len(b"garbage before"))
    document = sarif_open(handle)
    assert list(document.results()) == list(document.results())
    assert len(list(document.results())) == 1


def test_a_text_file_or_something_else_is_a_programming_error():
    with pytest.raises(TypeError):
        sarif_open(io.StringIO(json.dumps(sarif_doc([]))))
    with pytest.raises(TypeError):
        sarif_open(12)


def test_old_api_report_keeps_runs_and_tool_names():
    report = sarif_parse((CASES / "categories.sarif").read_bytes())
    assert report.tool_names == ["Semgrep OSS"]
    assert len(report.runs) == 5
    assert len(report.results) == 4  # runs 0 and 1 share an identity
