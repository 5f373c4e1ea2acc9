"""The benchmarks still run: each at a tiny size, in seconds, printing its figures.

They are run as a person runs them (a subprocess, their own throwaway database), so
a change that breaks one fails here instead of being found at the next measurement.
"""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_bench(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, f"bench/{script}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def figure(output: str, label: str) -> str:
    """The value printed after `label` (the rest of its line)."""
    match = re.search(rf"^ *{re.escape(label)} +(.+)$", output, re.MULTILINE)
    assert match, f"{label!r} is not printed:\n{output}"
    return match.group(1)


def test_sarif_import_benchmark_prints_time_ratio_and_queries():
    output = run_bench("sarif_import.py", "--results", "200")
    assert figure(output, "file").startswith("200 results")
    assert re.fullmatch(r"[\d.]+ s", figure(output, "json.load of the file"))
    assert re.fullmatch(
        r"[\d.]+ s", figure(output, "import (parse + validate + write)")
    )
    assert re.fullmatch(r"[\d.]+ x", figure(output, "ratio import / json.load"))
    small = int(figure(output, "DB queries, 20 results (all new)"))
    large = int(figure(output, "DB queries, 200 results (all new)"))
    assert 0 < small == large
    assert int(figure(output, "DB queries, re-import of 200")) > 0
    assert figure(output, "query count, 20 -> 200 results") == "constant"


def test_delivery_benchmark_prints_rate_one_token_and_connections():
    output = run_bench("delivery.py", "--messages", "5")
    assert re.fullmatch(r"5 in [\d.]+s -> \d+ messages/s", figure(output, "sent:")), (
        output
    )
    assert figure(output, "token requests:").startswith("1 ")
    assert re.fullmatch(
        r'\{"https": \d+, "smtp": \d+\}', figure(output, "TCP connections:")
    )
    assert figure(output, "sandbox received:").startswith("5 messages")


def test_benchmark_defaults_are_the_sizes_the_issue_names():
    sarif = run_bench("sarif_import.py", "--help")
    assert re.search(
        r"--results N\s+results in the large file \(default: 20000\)", sarif
    )
    delivery = run_bench("delivery.py", "--help")
    assert re.search(
        r"--messages N, --count N\s+notifications to deliver \(default: 1000\)",
        delivery,
    )
