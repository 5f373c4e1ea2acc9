"""A project owner uploads a SARIF file over the background threshold: the page
shows it queued, and, once a real `manage.py db_worker` runs, follows the import to
its summary without being reloaded."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.projects.sarif_documents import sarif_bytes, sarif_result

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def scan_owner(transactional_db):
    from django.contrib.auth.models import User

    user = User.objects.create_user("browser-uploader", password="Browser-up-pw-1!")
    user.raw_password = "Browser-up-pw-1!"
    return user


@pytest.fixture
def scan_project(scan_owner):
    from projects.models import Membership, Project, Role

    project = Project.objects.create(name="Checkout", slug="checkout")
    Membership.objects.create(project=project, user=scan_owner, role=Role.OWNER)
    return project


@pytest.fixture
def queued_uploads(settings, tmp_path):
    """Every test report is over the threshold, and goes to the database queue (the
    test settings' immediate backend would import it inside the request)."""
    settings.SARIF_ASYNC_THRESHOLD_BYTES = 100
    settings.MEDIA_ROOT = str(tmp_path / "var" / "media")
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    return tmp_path / "var"


@pytest.fixture
def start_worker(queued_uploads, tmp_path):
    """start() runs `manage.py db_worker` on the live server's database and files.
    Its log goes to the file `start_worker.log`: a pipe nobody reads could fill up
    and block it."""
    from django.db import connection

    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_READ_DOT_ENV_FILE="False",
        DEBUG="True",
        VAR_DIR=str(queued_uploads),
        DATABASE_URL=f"sqlite:///{connection.settings_dict['NAME']}",
        TASKS_BACKEND="django_tasks_db.DatabaseBackend",
        LOG_LEVEL="WARNING",
    )
    workers = []
    log = tmp_path / "worker.log"
    log_file = log.open("ab")

    def start():
        worker = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "db_worker",
                "--no-startup-delay",
                "--no-reload",
                "--interval",
                "0.1",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        workers.append(worker)
        return worker

    start.log = log
    yield start
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)
    log_file.close()


def test_large_upload_is_followed_to_its_summary(
    page, sign_in, scan_owner, scan_project, queued_uploads, start_worker
):
    from django.db import connection
    from playwright.sync_api import expect

    from projects.models import Scan

    if connection.vendor != "sqlite":
        pytest.skip("the worker is pointed at the test database's SQLite file")

    sign_in(scan_owner.username, scan_owner.raw_password)
    page.goto(f"/projects/{scan_project.slug}/")
    report = sarif_bytes(
        [sarif_result("B602"), sarif_result("B105", level="note", line=3)]
    )
    page.get_by_label("SARIF file").set_input_files(
        files=[
            {"name": "bandit.sarif", "mimeType": "application/json", "buffer": report}
        ]
    )
    page.get_by_role("button", name="Import").click()

    scan = Scan.objects.get(project=scan_project)
    expect(page).to_have_url(f"/projects/{scan_project.slug}/scans/{scan.pk}/")
    status = page.locator("#scan-status")
    expect(status).to_have_attribute("aria-live", "polite")
    expect(status).to_contain_text("Queued: waiting for the worker")
    assert list((queued_uploads / "media" / "sarif").iterdir())  # stored, waiting

    # The page is not reloaded: its script replaces the status when it changes.
    page.evaluate("window.stillTheSamePage = true")
    worker = start_worker()
    try:
        expect(status).to_contain_text("Imported.", timeout=60_000)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nworker log:\n{start_worker.log.read_text()}")
    assert worker.poll() is None, start_worker.log.read_text()[-3000:]
    assert page.evaluate("window.stillTheSamePage") is True

    facts = status.locator("dl.facts")
    expect(facts).to_contain_text("Bandit")
    expect(facts.locator("dt:has-text('New') + dd")).to_have_text("2")
    expect(status.get_by_role("link", name="See the findings")).to_be_visible()
    scan.refresh_from_db()
    assert (scan.status, scan.new_count) == ("complete", 2)
    assert scan.started_at <= scan.finished_at
    assert list((queued_uploads / "media" / "sarif").iterdir()) == []
