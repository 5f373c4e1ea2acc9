"""Malformed SARIF never crashes the reader: it is refused with a SarifError that names
the JSON path to fix, or read. No database."""

import copy
import json
import random
from pathlib import Path

import pytest

from projects.exceptions import SarifError
from projects.sarif import RESULT_FIELDS, RESULT_STRING_MAPS, sarif_open
from projects.sarif_stream import ARRAY, INTEGER, ITEM_OBJECT, OBJECT, RESULTS, STRING
from tests.projects.sarif_documents import sarif_doc, sarif_result

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sarif"
REAL = sorted((FIXTURES / "real").glob("*.sarif"))


def read(data) -> list:
    """Open and read everything, as the importer does."""
    if isinstance(data, dict):
        data = json.dumps(data).encode()
    return list(sarif_open(data).results())


def refusal(data) -> str:
    with pytest.raises(SarifError) as caught:
        read(data)
    return caught.value.message


# -- wrong JSON types: the first pass and the result reader agree ---------------------

WRONG_VALUE = {OBJECT: "text", ITEM_OBJECT: 5, ARRAY: {"a": 1}, STRING: 5, INTEGER: "5"}
KIND_WORDS = {
    OBJECT: "a JSON object",
    ITEM_OBJECT: "a JSON object",
    ARRAY: "a list",
    STRING: "a string",
    INTEGER: "an integer",
}


def _placed(prefix: str, value):
    """A result with `value` at the ijson `prefix`, and the JSON path the error names."""
    parts = prefix[len(RESULTS) + 1 :].split(".") if prefix != RESULTS else []
    result = sarif_result()
    if not parts:
        return value, "runs[0].results[0]"
    node, path = result, "runs[0].results[0]"
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        following = None if last else parts[index + 1]
        if part == "item":
            continue
        child = value if last else ([{}] if following == "item" else {})
        if isinstance(node, list):
            node = node[0]
        if not last and isinstance(node.get(part), (dict, list)):
            child = node[part]
            if following == "item" and not child:
                child.append({})
        node[part] = child
        path += f".{part}"
        if following == "item":
            path += "[0]"
            if parts[index + 1 :] == ["item"]:  # the item itself is the value
                node[part] = [value]
                break
        node = child
    return result, path


@pytest.mark.parametrize("prefix", sorted(RESULT_FIELDS))
def test_every_result_property_of_the_wrong_type_is_refused_with_its_path(prefix):
    kind = RESULT_FIELDS[prefix]
    result, path = _placed(prefix, WRONG_VALUE[kind])
    assert refusal(sarif_doc([sarif_result(), result])) == (
        path.replace("results[0]", "results[1]") + f" must be {KIND_WORDS[kind]}."
    )


@pytest.mark.parametrize("prefix", sorted(RESULT_STRING_MAPS))
@pytest.mark.parametrize("value", [5, True, [], {"a": "b"}])
def test_fingerprint_values_must_be_strings(prefix, value):
    key = prefix.rpartition(".")[2]
    message = refusal(sarif_doc([sarif_result(**{key: {"x": value}})]))
    assert message == f"runs[0].results[0].{key}.x must be a string."


def test_level_of_the_wrong_type_is_refused_with_its_path():
    results = [sarif_result(), sarif_result(), sarif_result(), sarif_result(level=[])]
    assert refusal(sarif_doc(results)) == "runs[0].results[3].level must be a string."


def test_a_null_property_counts_as_absent():
    result = sarif_result(level=None, ruleIndex=None, partial_fingerprints={"a": None})
    result["message"]["arguments"] = None
    assert len(read(sarif_doc([result]))) == 1


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (
            lambda run: run["tool"]["driver"].update(rules=[{"id": 5}]),
            "runs[0].tool.driver.rules[0].id must be a string.",
        ),
        (
            lambda run: run["tool"]["driver"].update(rules=[7]),
            "runs[0].tool.driver.rules[0] must be a JSON object.",
        ),
        (
            lambda run: run["tool"]["driver"].update(
                rules=[{"id": "B602", "defaultConfiguration": {"level": 2}}]
            ),
            "runs[0].tool.driver.rules[0].defaultConfiguration.level must be a string.",
        ),
        (
            lambda run: run["tool"].update(extensions={}),
            "runs[0].tool.extensions must be a list.",
        ),
        (
            lambda run: run["tool"].update(extensions=[{"rules": [{"name": []}]}]),
            "runs[0].tool.extensions[0].rules[0].name must be a string.",
        ),
        (
            lambda run: run["tool"]["driver"].update(name=["Bandit"]),
            "runs[0].tool.driver.name must be a string.",
        ),
        (
            lambda run: run.update(invocations=[{"executionSuccessful": "yes"}]),
            "runs[0].invocations[0].executionSuccessful must be true or false.",
        ),
        (
            lambda run: run.update(invocations={}),
            "runs[0].invocations must be a list.",
        ),
        (
            lambda run: run.update(
                invocations=[{"toolExecutionNotifications": [{"message": "x"}]}]
            ),
            "runs[0].invocations[0].toolExecutionNotifications[0].message must be a "
            "JSON object.",
        ),
        (
            lambda run: run.update(originalUriBaseIds={"SRCROOT": {"uri": 1}}),
            "runs[0].originalUriBaseIds.SRCROOT.uri must be a string.",
        ),
        (
            lambda run: run.update(artifacts=[5]),
            "runs[0].artifacts[0] must be a JSON object.",
        ),
        (
            lambda run: run.update(automationDetails={"id": 5}),
            "runs[0].automationDetails.id must be a string.",
        ),
        (
            lambda run: run.update(logicalLocations=[{"name": {}}]),
            "runs[0].logicalLocations[0].name must be a string.",
        ),
    ],
)
def test_run_metadata_of_the_wrong_type_is_refused_with_its_path(edit, says):
    document = sarif_doc([sarif_result()])
    edit(document["runs"][0])
    assert refusal(document) == says


def test_metadata_after_the_results_is_checked_too():
    # Key order is free: Semgrep writes "tool" after "results".
    document = {
        "runs": [{"results": [sarif_result()], "tool": {"driver": {"name": 5}}}],
        "version": "2.1.0",
    }
    assert refusal(document) == "runs[0].tool.driver.name must be a string."


# -- odd but valid values ---------------------------------------------------------------


def test_a_25_digit_integer_and_an_out_of_range_float_are_read():
    found = list(sarif_open(FIXTURES / "cases" / "big-numbers.sarif").results())
    assert [r.severity for r in found] == ["high", "high"]


def test_a_5000_digit_number_is_refused_not_crashed_on():
    # Python will not convert more than 4,300 digits, and ijson 3.6's C backend
    # crashes the process on such an integer: the reader checks first.
    with pytest.raises(SarifError, match="more than 4,300 digits"):
        sarif_open(FIXTURES / "cases" / "number-5000-digits.sarif")


def test_a_long_digit_run_across_read_buffers_is_found():
    filler = " " * (1024 * 1024 - 10)
    data = (
        b'{"version": "2.1.0", "runs": [], "x": ' + filler.encode() + b"1" * 5000 + b"}"
    )
    with pytest.raises(SarifError, match="more than 4,300 digits"):
        sarif_open(data)


@pytest.mark.parametrize("number", ["1" + "0" * 30, "-1" + "0" * 30, "1e400", "1e-400"])
def test_numbers_beyond_64_bits_anywhere_are_read(number):
    text = json.dumps(sarif_doc([sarif_result(properties={"n": "N"})]))
    data = text.replace('"N"', number).encode()
    assert len(read(data)) == 1


@pytest.mark.parametrize("line", [2**63, 10**40])
def test_a_huge_line_number_is_ignored(line):
    text = json.dumps(sarif_doc([sarif_result(line=12345)]))
    data = text.replace("12345", str(line)).encode()
    assert read(data)[0].start_line is None


# -- JSON errors and limits -------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"{not json", "not valid JSON (line 1, column 2: invalid string in json"),
        (b'{\n  "version": "2.1.0",\n  "runs": [{},]\n}', "(line 3, column 15:"),
        (b'{"version": "2.1.0", "runs": [{"a": 01}]}', "(line 1, column 37:"),
        (b'{"version": "2.1.0", "runs": []', "cut short"),
        (b'{"version": "2.1.0", "runs": []} trailing', "not valid JSON"),
        (b'{"version": "2.1.0", "runs": [], "x": NaN}', "not valid JSON"),
        (b'{"version": "2.1.0", "runs": [], "x": "\xff"}', "not UTF-8"),
        (b"\xfe\xff\x00{", "not UTF-8"),
        (b'{\x00"\x00', "not UTF-8"),
        (b'{"version": 2.1, "runs": []}', 'SARIF version "2.1" is not supported'),
        (b'{"version": ["2.1.0"], "runs": []}', 'SARIF version "…" is not supported'),
    ],
)
def test_json_errors_say_where(data, says):
    assert says in refusal(data)


def test_deep_nesting_is_refused_quickly_wherever_it_is():
    for where in (b'{"x": ', b'{"runs": [{"results": [{"x": ', b'{"runs": [{"tool": '):
        for opener in (b"[", b'{"a":'):
            assert "nested too deeply" in refusal(where + opener * 200_000)


def test_nesting_up_to_the_limit_is_fine():
    deep = {"a": 1}
    for _level in range(200):
        deep = {"a": deep}
    assert len(read(sarif_doc([sarif_result(properties={"deep": deep})]))) == 1


def test_very_long_property_names_are_refused():
    long_key = "k" * 3000
    document = sarif_doc([sarif_result(properties={long_key: {"a": {"b": 1}}})])
    assert "property name is too long" in refusal(document)


# -- fuzzing real scanner output --------------------------------------------------------

HUGE_NUMBER = "9" * 5000
ODD_VALUES = [
    None,
    True,
    0,
    -1,
    2**70,
    1.5,
    "",
    "x" * 10_000,
    "\u202e\x00\ud800",
    [],
    [None],
    {},
    {"text": 5},
    ["__HUGE__"],
    "__HUGE__",
    "__NAN__",
    "__DEEP__",
]


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*path, index))


def _set(node, path, value):
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _mutated(document, rng) -> bytes:
    document = copy.deepcopy(document)
    paths = [path for path in _paths(document) if path]
    for _time in range(rng.randint(1, 3)):
        _set(document, rng.choice(paths), copy.deepcopy(rng.choice(ODD_VALUES)))
        paths = [path for path in _paths(document) if path]
    text = json.dumps(document)
    text = text.replace('"__HUGE__"', HUGE_NUMBER).replace('"__NAN__"', "NaN")
    return text.replace('"__DEEP__"', "[" * 300 + "]" * 300).encode()


@pytest.mark.parametrize("path", REAL, ids=[path.name for path in REAL])
def test_odd_values_anywhere_in_real_files_give_a_sarif_error_or_results(path):
    document = json.loads(path.read_text())
    rng = random.Random(f"sarif-fuzz-{path.name}")
    outcomes = {"read": 0, "refused": 0}
    for _case in range(40):
        data = _mutated(document, rng)
        try:
            read(data)
        except SarifError as error:
            assert error.message and "Traceback" not in error.message
            outcomes["refused"] += 1
        else:
            outcomes["read"] += 1
    assert sum(outcomes.values()) == 40
