"""The benchmarks still run: each at a tiny size, in seconds, printing its figures.

They are run as a person runs them (a subprocess, their own throwaway database), so
a change that breaks one fails here instead of being found at the next measurement.
"""

import itertools
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_bench(script: str, *args: str, timeout: float = 300) -> str:
    """The benchmark's output. It runs in a process group of its own, so that on a
    timeout its sandbox and workers are stopped with it, not left holding ports."""
    process = subprocess.Popen(
        [sys.executable, f"bench/{script}", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(
            f"bench/{script} did not finish in {timeout} s:\n"
            + stdout[-2000:]
            + stderr[-3000:]
        )
    assert process.returncode == 0, stdout[-2000:] + stderr[-3000:]
    return stdout


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
        # Only the benchmark's own: other processes may create databases meanwhile.
        with psycopg.connect(postgres_url.replace("postgres://", "postgresql://")) as c:
            rows = c.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'sarif_bench_%'"
            )
            return {r[0] for r in rows}

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


def bench_sections(output: str) -> dict[str, str]:
    """The sections of a delivery benchmark: {heading without its brackets: the
    lines under it, up to the next blank line}."""
    return {
        match.group(1): match.group(2)
        for match in re.finditer(r"^\[([^\]\n]+)\]\n((?:[^\n]+\n?)*)", output, re.M)
    }


def section(sections: dict, *words: str) -> str:
    """The one section whose heading has all of `words`."""
    found = [text for name, text in sections.items() if all(w in name for w in words)]
    assert len(found) == 1, f"{words} in {list(sections)}"
    return found[0]


MODES = ("all events in one transaction", "each event in its own transaction")


def assert_delivery_figures(
    sections: dict, database: str, tools=("Graph", "SMTP"), rounds=1
):
    for tool, mode, number in itertools.product(tools, MODES, range(1, rounds + 1)):
        run = section(sections, database, tool, mode, f"round {number} of {rounds}")
        assert re.fullmatch(r"[\d.]+ s", figure(run, "first claim -> last sent"))
        assert re.fullmatch(r"[\d.]+ messages/s \(\d+ sent\)", figure(run, "product"))
        assert re.match(r"[\d.]+ ms a message \([\d.]+ s ", figure(run, "worker CPU"))
        assert re.match(
            r"[\d.]+ ms a message \([\d.]+ s of the sandbox",
            figure(run, "sandbox CPU"),
        )
        assert re.match(r"\d+ for 5 messages", figure(run, "token requests"))
        assert re.match(r"https \d+, smtp \d+", figure(run, "TCP connections opened"))
        assert re.match(r"\d+ / \d+ / \d+ ", figure(run, "delivered / lost / doubled"))
    for tool in tools:
        ratios = section(sections, database, tool, "product / baseline")
        for mode in ("together", "separate"):
            # The median of the rounds' ratios, and each round's.
            assert re.fullmatch(
                r"[\d.]+x \(target >= [\d.]+x: (meets|MISSES)\)",
                figure(ratios, f"ratio, {mode}"),
            )
            assert re.match(
                r"[\d.]+ messages/s", figure(ratios, f"product, {mode}, median")
            )
            if rounds > 1:
                assert re.fullmatch(
                    ", ".join([r"[\d.]+x"] * rounds),
                    figure(ratios, f"ratio, {mode}, by round"),
                )


def test_delivery_benchmark_prints_rates_ratios_tokens_and_connections():
    output = run_bench("delivery.py", "--messages", "5", "--rounds", "2")
    sections = bench_sections(output)
    assert_delivery_figures(sections, "SQLite", rounds=2)
    for number in (1, 2):
        of = f"round {number} of 2"
        bare = section(sections, "SQLite", "Graph", "baseline:", of)
        assert re.match(r"[\d.]+ messages/s \(5 sendMail", figure(bare, "bare loop"))
        django = section(sections, "SQLite", "SMTP", "baseline:", of)
        assert re.match(
            r"[\d.]+ messages/s \(5 messages", figure(django, "Django EmailBackend")
        )
        for baseline in (bare, django):
            assert re.match(r"[\d.]+ ms a message ", figure(baseline, "sandbox CPU"))
    assert "Not measured here:" in output


@pytest.mark.services
def test_delivery_benchmark_on_postgresql_in_a_database_of_its_own(postgres_url):
    import psycopg

    def own_databases():
        # Only the benchmark's: other tests create and drop databases meanwhile.
        with psycopg.connect(postgres_url.replace("postgres://", "postgresql://")) as c:
            names = [r[0] for r in c.execute("SELECT datname FROM pg_database")]
        return {name for name in names if name.startswith("bench_delivery_")}

    before = own_databases()
    output = run_bench(
        "delivery.py",
        "--messages",
        "5",
        "--rounds",
        "1",
        "--tools",
        "graph",
        "--database-url",
        postgres_url,
    )
    sections = bench_sections(output)
    assert_delivery_figures(sections, "PostgreSQL", tools=("Graph",))
    assert_delivery_figures(sections, "SQLite", tools=("Graph",))
    assert own_databases() == before  # its throwaway database is gone again


def test_throttling_benchmark_prints_share_of_budget_429s_lost_and_doubled():
    output = run_bench(
        "throttling.py", "--messages", "10", "--budget", "5", "--window", "1"
    )
    sections = bench_sections(output)
    for heading in ("(a) told the budget", "(b) told nothing"):
        mode = sections[heading]
        assert figure(mode, "told by")
        assert re.match(
            r"\d+% \(\d+ of the \d+ the sandbox accepts in \d+ windows; "
            r"target >= \d+%: (meets|MISSES)\)",
            figure(mode, "delivered/allowed"),
        )
        assert re.match(r"[\d.]+ messages/s \(allowed", figure(mode, "delivered rate"))
        assert re.match(r"\d+ \(sandbox counter", figure(mode, "429 answers"))
        assert re.match(r"\d+ \(", figure(mode, "lost"))
        assert re.match(r"\d+ \(", figure(mode, "doubled"))


@pytest.mark.parametrize(
    ("flags", "lookups"),
    [
        ((), "Graph no, SMTP no"),
        (
            ("--grant", "Mail.ReadBasic.All", "--email-box"),
            "Graph yes, SMTP yes (Email box over IMAP)",
        ),
    ],
)
def test_fault_drill_loses_nothing_through_faults_and_a_killed_worker(flags, lookups):
    output = run_bench("fault_drill.py", "--deliveries", "20", *flags)
    sections = bench_sections(output)
    assert figure(output, "Sent Items lookups") == lookups
    drill = sections["drill"]
    assert "with SIGKILL" in figure(drill, "killed")
    assert figure(drill, "restarted")
    result = sections["result"]
    assert figure(result, "expected") == "20"
    assert re.fullmatch(r"\d+", figure(result, "delivered"))
    assert figure(result, "lost") == "0"
    assert re.match(r"\d+ \(Graph \d+, SMTP \d+;", figure(result, "doubled"))
    assert re.match(r"\d+ \(", figure(result, "doubled after a 504-after-accept"))
    assert re.match(r"\d+ \(", figure(result, "doubled otherwise"))
    assert figure(result, "resent after a lost answer, per the product")
    assert figure(result, "sender mailboxes (sandbox)")


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
    drill = " ".join(run_bench("fault_drill.py", "--help").split())
    assert "--deliveries N deliveries, half through each tool (default: 1000)" in drill


def test_email_build_benchmark_prints_mime_and_rendering_times_and_queries():
    output = run_bench(
        "email_build.py",
        *("--deliveries", "3", "--findings", "2", "--repeat", "2", "--messages", "5"),
    )
    ms_per_message = r"[\d.]+ ms/message"
    assert re.fullmatch(ms_per_message, figure(output, "build_message (compat32)"))
    assert re.fullmatch(ms_per_message, figure(output, "Django EmailMultiAlternatives"))
    assert re.fullmatch(r"[\d.]+ x", figure(output, "ratio build_message / Django"))
    assert re.fullmatch(
        r"[\d.]+ ms/email, 3 queries per batch",
        figure(output, "previous email_for, one at a time"),
    )
    assert re.fullmatch(
        r"[\d.]+ ms/email, 1 query per batch", figure(output, "emails_for, one batch")
    )
    assert figure(output, "same bytes, all three") == "yes"
    assert figure(output, "decryptions (secrets, token cache)").startswith(
        "2 (one per row and field without the cache: 6)"
    )
