"""manage.py import_sarif <project-slug> <file> [--category NAME]."""

import io
import sys

import pytest
from django.core.management import CommandError, call_command

from projects.models import Finding, Scan
from tests.projects.sarif_documents import (
    many_results,
    sarif_bytes,
    sarif_result,
    sarif_run,
    sarif_runs_bytes,
)

pytestmark = pytest.mark.django_db


def test_imports_a_file(project, tmp_path, capsys):
    path = tmp_path / "bandit.sarif"
    path.write_bytes(sarif_bytes([sarif_result(), sarif_result("B105", line=3)]))
    call_command("import_sarif", "shop", str(path))
    scan = Scan.objects.get()
    assert (scan.source, scan.new_count, scan.created_by) == ("command", 2, None)
    assert "2 new, 0 seen again, 0 resolved, 0 re-opened" in capsys.readouterr().out
    call_command("import_sarif", "shop", str(path))
    assert Finding.objects.count() == 2


def test_unknown_project_lists_known_ones(project, tmp_path):
    path = tmp_path / "x.sarif"
    path.write_bytes(sarif_bytes([]))
    with pytest.raises(
        CommandError, match="No project with the slug “nope”. Known projects: shop."
    ):
        call_command("import_sarif", "nope", str(path))


def test_missing_file(project, tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        call_command("import_sarif", "shop", str(tmp_path / "missing.sarif"))


def test_directory_instead_of_file(project, tmp_path):
    with pytest.raises(CommandError, match="is a directory"):
        call_command("import_sarif", "shop", str(tmp_path))


def test_bad_sarif_says_what_to_fix(project, tmp_path):
    path = tmp_path / "old.sarif"
    path.write_text('{"version": "2.0.0", "runs": []}')
    with pytest.raises(
        CommandError, match=r'old.sarif: SARIF version "2.0.0" is not supported'
    ):
        call_command("import_sarif", "shop", str(path))
    assert not Scan.objects.exists()


# -- category, progress, failures -------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_category_option_scopes_the_scan(project, tmp_path):
    path = tmp_path / "codeql.sarif"
    path.write_bytes(sarif_bytes([sarif_result("js/xss")], tool="CodeQL"))
    out = io.StringIO()
    call_command(
        "import_sarif", "shop", str(path), "--category", "codeql-js", stdout=out
    )
    scan = Scan.objects.get()
    assert scan.category == "codeql-js"
    assert Finding.objects.get().category == "codeql-js"
    assert "(CodeQL, category codeql-js)" in out.getvalue()


def test_progress_is_shown_on_a_terminal(project, tmp_path):
    path = tmp_path / "many.sarif"
    path.write_bytes(sarif_bytes(many_results(2500)))
    err = Terminal()
    call_command("import_sarif", "shop", str(path), stdout=io.StringIO(), stderr=err)
    shown = err.getvalue()
    assert f"\rImporting {path}: 1,000 results" in shown
    assert shown.endswith("\r\x1b[K")  # erased once the import is over


def test_no_progress_when_stderr_is_not_a_terminal(project, tmp_path):
    path = tmp_path / "many.sarif"
    path.write_bytes(sarif_bytes(many_results(2500)))
    err = io.StringIO()
    call_command("import_sarif", "shop", str(path), stdout=io.StringIO(), stderr=err)
    assert err.getvalue() == ""


def test_stdin_is_read(project, monkeypatch):
    data = sarif_bytes([sarif_result()])
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    call_command("import_sarif", "shop", "-", stdout=io.StringIO())
    assert Scan.objects.get().new_count == 1


def test_duplicates_and_an_incomplete_run_are_reported(project, tmp_path):
    path = tmp_path / "failed.sarif"
    run = sarif_run(
        [sarif_result(), sarif_result()], successful=False, notifications=["Crashed"]
    )
    path.write_bytes(sarif_runs_bytes(run))
    out, err = io.StringIO(), io.StringIO()
    call_command("import_sarif", "shop", str(path), stdout=out, stderr=err)
    assert "1 identical results were counted once." in out.getvalue()
    assert "resolved no findings" in err.getvalue()
    assert "Bandit: Crashed" in err.getvalue()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (
            b'{"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "T"}}, '
            b'"results": [{"message": {"text": "m"}, "level": 3}]}]}',
            "runs[0].results[0].level",
        ),
        (b'{"version": "2.1.0", "runs": [', "it is cut short"),
    ],
)
def test_malformed_sarif_is_one_line_naming_the_json_path_and_exit_status_2(
    project, tmp_path, content, says
):
    path = tmp_path / "bad.sarif"
    path.write_bytes(content)
    with pytest.raises(CommandError) as caught:
        call_command("import_sarif", "shop", str(path))
    assert caught.value.returncode == 2
    assert says in str(caught.value) and "\n" not in str(caught.value)
    assert str(caught.value).startswith(f"{path}: ")
    assert not Scan.objects.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["nope", "x.sarif"],
        ["shop", "missing.sarif"],
        ["shop", "good.sarif", "--category", "two\nlines"],
    ],
)
def test_every_failure_exits_with_status_2(project, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.sarif").write_bytes(sarif_bytes([sarif_result()]))
    with pytest.raises(CommandError) as caught:
        call_command("import_sarif", *args)
    assert caught.value.returncode == 2 and "\n" not in str(caught.value)
    assert not Scan.objects.exists()
