"""manage.py import_sarif <project-slug> <file>."""

import pytest
from django.core.management import CommandError, call_command

from projects.models import Finding, Scan
from tests.projects.sarif_documents import sarif_bytes, sarif_result

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
