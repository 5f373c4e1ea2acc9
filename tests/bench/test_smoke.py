"""The benchmarks still run: each at a tiny size, in seconds, printing its figures.

They are run as a person runs them (a subprocess, their own throwaway database), so
a change that breaks one fails here instead of being found at the next measurement.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def sarif_section(output: str, header: str) -> str:
    """One section of the SARIF benchmark: its `header` line ("[SQLite]",
    "[SQLite] memory"...) and the lines up to the next header."""
    match = re.search(
        rf"^{re.escape(header)}  +[^\n]*\n(?:[^\[\n][^\n]*\n?)*", output, re.M
    )
    assert match, f"no {header} section:\n{output}"
    return match.group(0)


def assert_sarif_figures(section: str) -> None:
    assert "200 results" in section.splitlines()[0]
    assert re.fullmatch(r"[\d.]+ s", figure(section, "json.load of the file"))
    assert re.fullmatch(
        r"[\d.]+ s", figure(section, "import (parse + validate + write)")
    )
    assert re.fullmatch(r"[\d.]+ x", figure(section, "ratio import / json.load"))
    small = int(figure(section, "DB queries, 20 results (all new)"))
    large = int(figure(section, "DB queries, 200 results (all new)"))
    assert 0 < small == large
    assert int(figure(section, "DB queries, re-import of 200")) > 0
    assert figure(section, "query count, 20 -> 200 results") == "constant"


def test_sarif_import_benchmark_prints_time_ratio_queries_and_memory():
    output = run_bench(
        "sarif_import.py",
        "--results",
        "200",
        "--memory-results",
        "2000",
        "--no-postgres",
    )
    assert figure(output, "[PostgreSQL]") == "skipped (--no-postgres)"
    assert_sarif_figures(sarif_section(output, "[SQLite]"))
    memory = sarif_section(output, "[SQLite] memory")
    assert "2,000 tiny results" in memory
    assert re.fullmatch(r"\d+ MB", figure(memory, "peak RSS above process start"))
    assert figure(memory, "within 400 MB") == "yes"


@pytest.mark.services
def test_sarif_import_benchmark_on_postgresql_in_a_database_of_its_own(postgres_url):
    import psycopg

    def databases():
        with psycopg.connect(postgres_url.replace("postgres://", "postgresql://")) as c:
            return {r[0] for r in c.execute("SELECT datname FROM pg_database")}

    before = databases()
    output = run_bench(
        "sarif_import.py",
        "--results",
        "200",
        "--memory-results",
        "0",
        "--postgres",
        postgres_url,
    )
    assert_sarif_figures(sarif_section(output, "[PostgreSQL]"))
    assert databases() == before  # its throwaway database is gone again


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
    sarif = " ".join(run_bench("sarif_import.py", "--help").split())
    assert "--results N results in the large file (default: 20000)" in sarif
    assert "--memory-results N tiny results in the memory file; 0 skips it" in sarif
    assert "(default: 1000000)" in sarif
    delivery = run_bench("delivery.py", "--help")
    assert re.search(
        r"--messages N, --count N\s+notifications to deliver \(default: 1000\)",
        delivery,
    )
