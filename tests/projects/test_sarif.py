"""Reading SARIF: validation, fingerprints, severities. No database."""

import json

import pytest

from projects.exceptions import SarifError
from projects.models import Severity
from projects.sarif import sarif_parse, severity_from_score
from tests.projects.sarif_documents import sarif_bytes, sarif_doc, sarif_result


def parse(results, **kwargs):
    return sarif_parse(sarif_bytes(results, **kwargs))


def only(results, **kwargs):
    report = parse(results, **kwargs)
    assert len(report.results) == 1
    return report.results[0]


# -- validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"{not json", "not valid JSON (line 1, column 2"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"[]", "must be a JSON object"),
        (b'{"runs": []}', '"version" property is missing'),
        (b'{"version": "2.0.0", "runs": []}', 'SARIF version "2.0.0" is not supported'),
        (b'{"version": "2.1.0"}', '"runs" must be a list'),
        (b'{"version": "2.1.0", "runs": {}}', '"runs" must be a list'),
        (b'{"version": "2.1.0", "runs": [1]}', "runs[0] must be a JSON object"),
        (b'{"version": "2.1.0", "runs": [{}]}', "runs[0].tool is missing"),
        (
            b'{"version": "2.1.0", "runs": [{"tool": {"driver": {}}}]}',
            "runs[0].tool.driver.name is missing",
        ),
        (
            b'{"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "X"}}, '
            b'"results": {}}]}',
            "runs[0].results must be a list",
        ),
        (b"[" * 100_000, "must be a JSON object"),
        (b'{"version": "2.1.0", "runs": [{"x": ' + b"[" * 100_000, "nested too deeply"),
        (
            b'{"version": "2.1.0", "runs": [{"results": [{"x": ' + b'{"a":' * 50_000,
            "nested too deeply",
        ),
    ],
)
def test_invalid_files_say_what_to_fix(data, says):
    with pytest.raises(SarifError) as caught:
        sarif_parse(data)
    assert says in caught.value.message


def test_result_without_any_rule_is_a_finding_without_rule_id():
    # SARIF §3.27.5: a result need not name a rule.
    result = sarif_result()
    del result["ruleId"]
    found = only([result])
    assert (found.rule_id, found.rule_name, found.path) == ("", "", "app.py")
    assert len(found.fingerprint) == 64


def test_byte_order_mark_is_accepted():
    report = sarif_parse(b"\xef\xbb\xbf" + sarif_bytes([sarif_result()]))
    assert len(report.results) == 1


def test_tool_name_and_version_come_from_the_driver():
    report = parse([], tool="Semgrep", version="1.2.3")
    assert [(r.tool_name, r.tool_version) for r in report.runs] == [
        ("Semgrep", "1.2.3")
    ]


# -- missing and optional fields ------------------------------------------------


def test_missing_location_message_and_level_fall_back():
    result = only(
        [{"ruleId": "X1", "message": {}}],
        rules=[{"id": "X1", "shortDescription": {"text": "Short rule text"}}],
    )
    assert result.path == ""
    assert result.start_line is None
    assert result.message == "Short rule text"
    assert result.severity == Severity.MEDIUM  # SARIF's default level is "warning"


def test_rule_is_found_by_index_and_gives_name_and_default_level():
    rules = [
        {"id": "A", "name": "first"},
        {"id": "B", "name": "second", "defaultConfiguration": {"level": "error"}},
    ]
    result = only(
        [{"ruleIndex": 1, "message": {"text": "m"}, "locations": []}], rules=rules
    )
    assert (result.rule_id, result.rule_name, result.severity) == (
        "B",
        "second",
        "high",
    )


def test_message_string_with_arguments_is_filled_in():
    rules = [
        {"id": "A", "messageStrings": {"default": {"text": "Tainted {0} reaches {1}"}}}
    ]
    result = only(
        [{"ruleId": "A", "message": {"id": "default", "arguments": ["input", "eval"]}}],
        rules=rules,
    )
    assert result.message == "Tainted input reaches eval"


def test_artifact_given_by_index_is_resolved():
    doc = sarif_doc([])
    doc["runs"][0]["artifacts"] = [{"location": {"uri": "src/a.py"}}]
    doc["runs"][0]["results"] = [
        {
            "ruleId": "A",
            "message": {"text": "m"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"index": 0},
                        "region": {"startLine": 3},
                    }
                }
            ],
        }
    ]
    (result,) = sarif_parse(json.dumps(doc).encode()).results
    assert (result.path, result.start_line) == ("src/a.py", 3)


def test_nonsense_line_numbers_are_ignored():
    for line in (0, -5, 2**40):
        assert only([sarif_result(line=line)]).start_line is None


@pytest.mark.parametrize("line", ["12", True, 1.5, [], {}])
def test_line_number_of_the_wrong_type_is_refused_with_its_path(line):
    with pytest.raises(SarifError) as caught:
        parse([sarif_result(line=line)])
    assert caught.value.message == (
        "runs[0].results[0].locations[0].physicalLocation.region.startLine "
        "must be an integer."
    )


def test_passing_and_suppressed_results_are_not_findings():
    report = parse(
        [
            sarif_result("A", kind="pass"),
            sarif_result("B", suppressions=[{"kind": "inSource"}]),
            sarif_result(
                "C", suppressions=[{"kind": "external", "status": "rejected"}]
            ),
        ]
    )
    assert [r.rule_id for r in report.results] == ["C"]


def test_nul_characters_are_shown_and_long_text_is_cut():
    result = only([sarif_result(message="a\x00b" + "x" * 50_000, uri="p" * 5000)])
    assert result.message.startswith("a⟨U+0000⟩b")
    assert len(result.message) == 20_000
    assert len(result.path) == 1000


# -- severity ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "severity"),
    [
        (10.0, "critical"),
        (9.0, "critical"),
        (8.9, "high"),
        (7.0, "high"),
        (6.9, "medium"),
        (4.0, "medium"),
        (3.9, "low"),
        (0.2, "low"),
        (0.1, "low"),
        # No band: the SARIF level decides.
        (0.05, None),
        (0.0, None),
        (10.1, None),
        (-1.0, None),
        (float("nan"), None),
    ],
)
def test_security_severity_score_maps_to_severity(score, severity):
    assert severity_from_score(score) == severity


@pytest.mark.parametrize(
    ("level", "severity"),
    [("error", "high"), ("warning", "medium"), ("note", "low"), ("none", "info")],
)
def test_level_maps_to_severity_without_a_score(level, severity):
    assert only([sarif_result(level=level)]).severity == severity


def test_rule_security_severity_beats_level():
    rules = [{"id": "B602", "properties": {"security-severity": "9.8"}}]
    assert only([sarif_result(level="note")], rules=rules).severity == "critical"


def test_result_security_severity_beats_rule():
    rules = [{"id": "B602", "properties": {"security-severity": "9.8"}}]
    result = sarif_result(properties={"security-severity": "5.0"})
    assert only([result], rules=rules).severity == "medium"


def test_unusable_security_severity_falls_back_to_level():
    for bad in ("high", None, 42, [], True):
        result = sarif_result(level="note", properties={"security-severity": bad})
        assert only([result]).severity == "low"


# -- fingerprints -----------------------------------------------------------------


def test_fingerprint_is_stable_and_64_hex():
    a = only([sarif_result()])
    b = only([sarif_result()])
    assert a.fingerprint == b.fingerprint
    assert len(a.fingerprint) == 64 and int(a.fingerprint, 16) >= 0


def test_fallback_fingerprint_uses_rule_uri_line_snippet_and_message():
    base = only([sarif_result()]).fingerprint
    assert only([sarif_result("B603")]).fingerprint != base
    assert only([sarif_result(uri="other.py")]).fingerprint != base
    assert only([sarif_result(line=11)]).fingerprint != base
    assert only([sarif_result(message="other")]).fingerprint != base
    # The snippet counts (trimmed), and so does the message next to it: one snippet
    # with two different messages is two findings.
    with_snippet = only([sarif_result(snippet="call(x, shell=True)\n")]).fingerprint
    assert with_snippet != base
    assert (
        only([sarif_result(snippet="  call(x, shell=True)")]).fingerprint
        == with_snippet
    )
    assert (
        only(
            [sarif_result(snippet="call(x, shell=True)", message="reworded")]
        ).fingerprint
        != with_snippet
    )
    assert (
        only([sarif_result(snippet="call(y, shell=True)")]).fingerprint != with_snippet
    )


def test_partial_fingerprints_win_over_location_and_ignore_key_order():
    first = only(
        [
            sarif_result(
                line=10,
                partial_fingerprints={"a": "1", "primaryLocationLineHash": "abc"},
            )
        ]
    )
    moved = only(
        [
            sarif_result(
                line=99,
                message="reworded",
                partial_fingerprints={"primaryLocationLineHash": "abc", "a": "1"},
            )
        ]
    )
    assert first.fingerprint == moved.fingerprint
    changed = only(
        [
            sarif_result(
                partial_fingerprints={"primaryLocationLineHash": "abd", "a": "1"}
            )
        ]
    )
    assert changed.fingerprint != first.fingerprint


def test_same_location_in_two_tools_is_two_findings():
    doc = sarif_doc([sarif_result()])
    doc["runs"].append(
        {"tool": {"driver": {"name": "Other"}}, "results": [sarif_result()]}
    )
    report = sarif_parse(json.dumps(doc).encode())
    assert len({r.fingerprint for r in report.results}) == 2
    assert report.tool_names == ["Bandit", "Other"]


def test_duplicate_results_in_one_file_count_once():
    assert len(parse([sarif_result(), sarif_result()]).results) == 1
