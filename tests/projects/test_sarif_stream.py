"""Streaming: memory does not grow with the number of results, key order is free, and
the file is read as it is when results() runs. No database."""

import json
import tracemalloc

import ijson
import pytest

from projects.exceptions import SarifError
from projects.sarif import sarif_open
from tests.projects.sarif_documents import many_results, sarif_doc, sarif_result


def write_sarif(path, count: int, *, tool_last: bool = False) -> None:
    """A SARIF file with `count` results, written one result at a time."""
    head, tail = json.dumps(sarif_doc([], tool="Big")).split('"results": []')
    tool = json.dumps({"driver": {"name": "Big"}})
    with open(path, "w") as handle:
        if tool_last:
            handle.write('{"runs": [{"results": [')
        else:
            handle.write(head + '"results": [')
        for start in range(0, count, 1000):
            chunk = many_results(min(1000, count - start))
            for offset, result in enumerate(chunk):
                result["message"]["text"] = f"Issue {start + offset}"
                handle.write(("," if start + offset else "") + json.dumps(result))
        if tool_last:
            handle.write(f'], "tool": {tool}}}], "version": "2.1.0"}}')
        else:
            handle.write("]" + tail)


def peak_memory(function) -> int:
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_number_of_results(tmp_path):
    small, large = tmp_path / "small.sarif", tmp_path / "large.sarif"
    write_sarif(small, 1_000)
    write_sarif(large, 10_000)

    def read_all(path):
        def read():
            count = sum(1 for _result in sarif_open(path).results())
            assert count in (1_000, 10_000)

        return read

    small_peak, large_peak = peak_memory(read_all(small)), peak_memory(read_all(large))
    # Ten times the results, about the same memory (the caches grow a little).
    assert large_peak < 2 * small_peak + 1_000_000
    assert large_peak < large.stat().st_size / 4


def test_tool_after_results_is_read(tmp_path):
    path = tmp_path / "semgrep-order.sarif"
    write_sarif(path, 50, tool_last=True)
    document = sarif_open(path)
    assert document.runs[0].tool_name == "Big"
    assert sum(1 for _result in document.results()) == 50


def test_results_are_yielded_in_file_order_across_runs():
    document = sarif_doc([sarif_result("A1"), sarif_result("A2")], tool="First")
    document["runs"].append(
        {"tool": {"driver": {"name": "Second"}}, "results": [sarif_result("B1")]}
    )
    document["runs"].append({"tool": {"driver": {"name": "Third"}}, "results": []})
    found = list(sarif_open(json.dumps(document).encode()).results())
    assert [(r.run_index, r.tool_name, r.rule_id) for r in found] == [
        (0, "First", "A1"),
        (0, "First", "A2"),
        (1, "Second", "B1"),
    ]


def test_a_file_that_changes_before_its_results_are_read_is_an_error(tmp_path):
    path = tmp_path / "changing.sarif"
    path.write_text(json.dumps(sarif_doc([sarif_result("A"), sarif_result("B")])))
    document = sarif_open(path)
    path.write_text(json.dumps(sarif_doc([sarif_result("A")])))
    with pytest.raises(SarifError, match="changed while it was being read"):
        list(document.results())
    path.write_text("{")
    with pytest.raises(SarifError, match="cut short"):
        list(document.results())


def test_a_missing_file_is_a_sarif_error(tmp_path):
    with pytest.raises(SarifError, match="cannot be read"):
        sarif_open(tmp_path / "missing.sarif")


def test_byte_order_mark_is_skipped_for_every_kind_of_source(tmp_path):
    data = b"\xef\xbb\xbf" + json.dumps(sarif_doc([sarif_result()])).encode()
    path = tmp_path / "bom.sarif"
    path.write_bytes(data)
    with open(path, "rb") as handle:
        for source in (data, path, handle):
            assert len(list(sarif_open(source).results())) == 1


def test_ijson_uses_its_c_backend():
    # The pure-Python backend works too, about ten times slower.
    assert ijson.backend == "yajl2_c", (
        "reinstall ijson from its wheel (pip install ijson)"
    )
