"""Benchmark: importing a 20,000-result SARIF file.

    .venv/bin/python bench/sarif_import.py [--results 20000] [--small 2000]

Uses config.settings_test with its own throwaway SQLite database (a fresh temp VAR_DIR,
removed at exit), so it touches nothing else. Prints the import time against a plain
json.load of the same file, the number of database queries for 2,000 vs 20,000 results
(it should not grow), and the time of a re-import in which nothing is new. --small
defaults to a tenth of --results; tests/bench runs it with a few hundred results.
"""

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings_test"
os.environ["VAR_DIR"] = tempfile.mkdtemp(prefix="sarif-bench-")
atexit.register(shutil.rmtree, os.environ["VAR_DIR"], ignore_errors=True)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from notifications.models import Event  # noqa: E402
from projects.models import Finding, Project  # noqa: E402
from projects.services import scan_import  # noqa: E402

LEVELS = ("error", "warning", "note", "none")


def sarif_document(count: int) -> dict:
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
                            "snippet": {"text": f"value_{i} = call(arg_{i})"},
                        },
                    }
                }
            ],
        }
        if i % 2:
            result["partialFingerprints"] = {"primaryLocationLineHash": f"{i:016x}:1"}
        results.append(result)
    return {
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [
            {
                "tool": {
                    "driver": {"name": "BenchScanner", "version": "1.0", "rules": rules}
                },
                "results": results,
            }
        ],
    }


def write(directory: Path, count: int) -> Path:
    path = directory / f"bench-{count}.sarif"
    path.write_text(json.dumps(sarif_document(count)))
    return path


def timed_import(project, path):
    start = time.perf_counter()
    with CaptureQueriesContext(connection) as captured, open(path, "rb") as handle:
        scan = scan_import(project=project, sarif=handle, source="command")
    return time.perf_counter() - start, len(captured), scan


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
    args = parser.parse_args()
    if args.results < 1:
        parser.error("--results must be at least 1")
    if args.small is None:
        args.small = max(1, args.results // 10)

    call_command("migrate", verbosity=0)
    with tempfile.TemporaryDirectory(prefix="sarif-bench-files-") as tmp:
        directory = Path(tmp)
        large_path = write(directory, args.results)
        small_path = write(directory, args.small)
        size_mb = large_path.stat().st_size / 1024 / 1024

        start = time.perf_counter()
        with open(large_path, "rb") as handle:
            json.load(handle)
        json_seconds = time.perf_counter() - start

        small_project = Project.objects.create(name="Bench small", slug="bench-small")
        large_project = Project.objects.create(name="Bench large", slug="bench-large")
        small_seconds, small_queries, _scan = timed_import(small_project, small_path)
        import_seconds, large_queries, scan = timed_import(large_project, large_path)
        again_seconds, again_queries, again = timed_import(large_project, large_path)

    assert scan.new_count == args.results, scan.new_count
    assert (again.new_count, again.seen_again_count) == (0, args.results)
    n, small = f"{args.results:,}", f"{args.small:,}"
    database = Path(connection.settings_dict["NAME"]).name
    row("SARIF import benchmark", f"{connection.vendor}, throwaway {database}")
    row("file", f"{n} results, {size_mb:.1f} MB")
    row("json.load of the file", f"{json_seconds:8.3f} s")
    row("import (parse + validate + write)", f"{import_seconds:8.3f} s")
    row("  ratio import / json.load", f"{import_seconds / json_seconds:8.1f} x")
    row("  throughput", f"{args.results / import_seconds:8,.0f} results/s")
    row(f"import of {small} results", f"{small_seconds:8.3f} s")
    row(f"DB queries, {small} results (all new)", f"{small_queries:8d}")
    row(f"DB queries, {n} results (all new)", f"{large_queries:8d}")
    row("re-import, nothing new", f"{again_seconds:8.3f} s")
    row(f"DB queries, re-import of {n}", f"{again_queries:8d}")
    row(
        "findings / events stored",
        f"{Finding.objects.count():,} / {Event.objects.count()}",
    )
    verdict = "constant" if large_queries == small_queries else "GROWS"
    row(f"query count, {small} -> {n} results", verdict)


def row(label, value):
    print(f"{label:<42} {value}")


if __name__ == "__main__":
    main()
