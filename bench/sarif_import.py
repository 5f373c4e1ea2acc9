"""Benchmark: importing SARIF files, on SQLite and on PostgreSQL, and in bounded memory.

    .venv/bin/python bench/sarif_import.py [--results 20000] [--small N]
        [--memory-results 1000000] [--postgres URL | --no-postgres]

For each database it prints the import time of a --results file against a plain
json.load of the same file, the database queries for --small vs --results results
(they must not grow), and a re-import in which nothing is new. Then it imports a
--memory-results file of tiny results (1,000,000 by default, about 40 MB) in a fresh
process and prints that process's peak memory above its start (the target is under
400 MB).

Each measurement runs in its own process, in a database this script creates and
removes: SQLite in a temporary directory, and on PostgreSQL (--postgres, default
POSTGRES_URL or the local server) a database named sarif_bench_<random>, dropped at
the end. DATABASE_URL is ignored, so nothing is ever written into a database the
script did not create. PostgreSQL is skipped, saying so, when the server does not
answer (or with --no-postgres).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEVELS = ("error", "warning", "note", "none")
DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"


# -- the files -----------------------------------------------------------------------


def sarif_document(count: int) -> dict:
    """A realistic scan: 50 rules, half the results with a tool fingerprint."""
    rules = [
        {
            "id": f"PY{r:03d}",
            "name": f"rule_{r}",
            "properties": {"security-severity": f"{(r * 1.7) % 10:.1f}"}
            if r % 3
            else {},
        }
        for r in range(50)
    ]
    results = []
    for i in range(count):
        rule = i % 50
        result = {
            "ruleId": f"PY{rule:03d}",
            "ruleIndex": rule,
            "level": LEVELS[i % 4],
            "message": {"text": f"Potential issue number {i} in generated code"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {
                            "uri": f"src/pkg{i % 40}/module_{i % 400}.py"
                        },
                        "region": {
                            "startLine": i // 400 + 1,
                            "startColumn": 5,
                            "snippet": {"text": f"value_{i} = call(arg_{i})"},
                        },
                    }
                }
            ],
        }
        if i % 2:
            result["partialFingerprints"] = {"primaryLocationLineHash": f"{i:016x}:1"}
        results.append(result)
    return _document("BenchScanner", rules, results)


def write_tiny(path: Path, count: int) -> None:
    """`count` tiny results (about 42 bytes each: a rule and a message of their own,
    no location, so each is a finding of its own), written as a stream."""
    head = json.dumps(_document("TinyScanner", [{"id": "T"}], []))
    cut = head.rindex("[]")
    with open(path, "w") as out:
        out.write(head[:cut] + "[")
        for i in range(count):
            out.write(
                ("," if i else "") + f'{{"ruleId":"T","message":{{"text":"{i}"}}}}'
            )
        out.write("]" + head[cut + 2 :])


def _document(tool: str, rules: list, results: list) -> dict:
    return {
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [
            {
                "tool": {"driver": {"name": tool, "version": "1.0", "rules": rules}},
                "results": results,
            }
        ],
    }


# -- one measurement, in a child process -----------------------------------------------


def child(args) -> None:
    """Runs in a fresh process whose DATABASE_URL names a database we created."""
    start_rss = _rss_mb()
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from projects.models import Finding, Project
    from projects.services import scan_import

    call_command("migrate", verbosity=0)

    def timed(project, path):
        began = time.perf_counter()
        with CaptureQueriesContext(connection) as captured:
            scan = scan_import(project=project, sarif=Path(path), source="command")
        return time.perf_counter() - began, len(captured), scan

    if args.child == "memory":
        before = _rss_mb()
        project = Project.objects.create(name="Bench memory", slug="bench-memory")
        seconds, _queries, scan = timed(project, args.file)
        print(
            json.dumps(
                {
                    "seconds": seconds,
                    "new": scan.new_count,
                    "findings": Finding.objects.count(),
                    "start_mb": start_rss,
                    "before_mb": before,
                    "peak_mb": _rss_mb(),
                }
            )
        )
        return

    large, small = args.file, args.small_file
    began = time.perf_counter()
    with open(large, "rb") as handle:
        json.load(handle)
    json_seconds = time.perf_counter() - began
    small_project = Project.objects.create(name="Bench small", slug="bench-small")
    large_project = Project.objects.create(name="Bench large", slug="bench-large")
    small_seconds, small_queries, _scan = timed(small_project, small)
    import_seconds, large_queries, scan = timed(large_project, large)
    again_seconds, again_queries, again = timed(large_project, large)
    print(
        json.dumps(
            {
                "json_seconds": json_seconds,
                "small_seconds": small_seconds,
                "small_queries": small_queries,
                "import_seconds": import_seconds,
                "large_queries": large_queries,
                "again_seconds": again_seconds,
                "again_queries": again_queries,
                "new": scan.new_count,
                "again_new": again.new_count,
                "again_seen": again.seen_again_count,
                "findings": Finding.objects.count(),
            }
        )
    )


def _rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux: KiB units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(database_url: str, var_dir: str, *args: str) -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings_test",
        DATABASE_URL=database_url,
        VAR_DIR=var_dir,
        DJANGO_READ_DOT_ENV_FILE="False",
        DEBUG="True",
    )
    result = subprocess.run(
        [sys.executable, __file__, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        sys.exit(f"benchmark child failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- the databases -----------------------------------------------------------------------


class SqliteDatabase:
    label = "SQLite"

    def __enter__(self):
        self.directory = tempfile.mkdtemp(prefix="sarif-bench-db-")
        self.url = f"sqlite:///{self.directory}/bench.sqlite3"
        self.var_dir = self.directory
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.directory, ignore_errors=True)


class PostgresDatabase:
    label = "PostgreSQL"

    def __init__(self, server_url: str):
        self.server_url = server_url.replace("postgres://", "postgresql://", 1)
        self.name = f"sarif_bench_{uuid.uuid4().hex[:10]}"

    def __enter__(self):
        import psycopg

        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        base = self.server_url.rsplit("/", 1)[0].replace("postgresql://", "postgres://")
        self.url = f"{base}/{self.name}"
        self.var_dir = tempfile.mkdtemp(prefix="sarif-bench-var-")
        return self

    def __exit__(self, *exc):
        import psycopg

        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        shutil.rmtree(self.var_dir, ignore_errors=True)

    @staticmethod
    def reachable(server_url: str) -> str:
        """'' when the server answers, else why not."""
        try:
            import psycopg

            with psycopg.connect(
                server_url.replace("postgres://", "postgresql://", 1), connect_timeout=3
            ):
                return ""
        except Exception as exc:  # any reason: the figure is skipped, saying why
            return str(exc).splitlines()[0]


# -- the report --------------------------------------------------------------------------


def row(label, value):
    print(f"{label:<44} {value}", flush=True)


def report_speed(database, figures, args, size_mb) -> None:
    n, small = f"{args.results:,}", f"{args.small:,}"
    assert figures["new"] == args.results, figures
    assert (figures["again_new"], figures["again_seen"]) == (0, args.results), figures
    ratio = figures["import_seconds"] / figures["json_seconds"]
    row(f"[{database.label}]", f"throwaway database, {n} results, {size_mb:.1f} MB")
    row("json.load of the file", f"{figures['json_seconds']:8.3f} s")
    row("import (parse + validate + write)", f"{figures['import_seconds']:8.3f} s")
    row("  ratio import / json.load", f"{ratio:8.1f} x")
    row("  throughput", f"{args.results / figures['import_seconds']:8,.0f} results/s")
    row(f"import of {small} results", f"{figures['small_seconds']:8.3f} s")
    row(f"DB queries, {small} results (all new)", f"{figures['small_queries']:8d}")
    row(f"DB queries, {n} results (all new)", f"{figures['large_queries']:8d}")
    row("re-import, nothing new", f"{figures['again_seconds']:8.3f} s")
    row(f"DB queries, re-import of {n}", f"{figures['again_queries']:8d}")
    same = figures["large_queries"] == figures["small_queries"]
    row(f"query count, {small} -> {n} results", "constant" if same else "GROWS")


def report_memory(database, figures, count, size_mb) -> None:
    above = figures["peak_mb"] - figures["start_mb"]
    row(
        f"[{database.label}] memory",
        f"{count:,} tiny results, {size_mb:.1f} MB, imported in "
        f"{figures['seconds']:.1f} s ({figures['findings']:,} findings)",
    )
    row("  peak RSS above process start", f"{above:8.0f} MB")
    row("  within 400 MB", "yes" if above < 400 else "NO")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--results",
        type=int,
        default=20_000,
        metavar="N",
        help="results in the large file (default: %(default)s)",
    )
    parser.add_argument(
        "--small",
        type=int,
        default=None,
        metavar="N",
        help="results in the small file (default: a tenth of --results)",
    )
    parser.add_argument(
        "--memory-results",
        type=int,
        default=1_000_000,
        metavar="N",
        help="tiny results in the memory file; 0 skips it (default: %(default)s)",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("POSTGRES_URL", DEFAULT_POSTGRES),
        metavar="URL",
        help="a PostgreSQL server to create a throwaway database on",
    )
    parser.add_argument("--no-postgres", action="store_true")
    # Internal: one measurement in a child process.
    parser.add_argument("--child", choices=["speed", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--small-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.results < 1:
        parser.error("--results must be at least 1")
    if args.memory_results < 0:
        parser.error("--memory-results must be 0 or more")
    if args.small is None:
        args.small = max(1, args.results // 10)

    databases = [SqliteDatabase()]
    if args.no_postgres:
        row("[PostgreSQL]", "skipped (--no-postgres)")
    elif why := PostgresDatabase.reachable(args.postgres):
        row("[PostgreSQL]", f"skipped: the server does not answer ({why})")
    else:
        databases.append(PostgresDatabase(args.postgres))

    with tempfile.TemporaryDirectory(prefix="sarif-bench-files-") as tmp:
        large = Path(tmp) / "large.sarif"
        small = Path(tmp) / "small.sarif"
        large.write_text(json.dumps(sarif_document(args.results)))
        small.write_text(json.dumps(sarif_document(args.small)))
        size_mb = large.stat().st_size / 1024 / 1024
        tiny = Path(tmp) / "tiny.sarif"
        if args.memory_results:
            write_tiny(tiny, args.memory_results)
        tiny_mb = tiny.stat().st_size / 1024 / 1024 if args.memory_results else 0

        row("SARIF import benchmark", ", ".join(d.label for d in databases))
        for database in databases:
            with database:
                figures = run_child(
                    database.url,
                    database.var_dir,
                    "--child=speed",
                    f"--file={large}",
                    f"--small-file={small}",
                )
                report_speed(database, figures, args, size_mb)
            if args.memory_results:
                with database:
                    figures = run_child(
                        database.url,
                        database.var_dir,
                        "--child=memory",
                        f"--file={tiny}",
                    )
                    report_memory(database, figures, args.memory_results, tiny_mb)


if __name__ == "__main__":
    main()
