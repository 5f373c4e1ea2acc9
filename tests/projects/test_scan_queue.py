"""Large uploads are imported by the worker, not inside the request (issue 9).

Over SARIF_ASYNC_THRESHOLD_BYTES the API answers 202 with the scan's status URL and
the upload page redirects to the scan's page; the queued scan moves queued ->
processing -> complete or failed when its task runs. The tests run that task
themselves (`import_queued_scan.call`), or let the on-commit enqueue run it through
the immediate backend of the test settings.
"""

from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from notifications.models import Event, EventKind
from projects import scan_queue, tasks
from projects.models import Finding, Scan, ScanStatus
from projects.services import api_token_create
from tests.projects.sarif_documents import sarif_bytes, sarif_result

pytestmark = pytest.mark.django_db

THRESHOLD = 200
BAD_VERSION = b'{"version": "2.0.0", "runs": []}' + b" " * THRESHOLD


@pytest.fixture(autouse=True)
def small_threshold(settings, tmp_path):
    """A threshold any test report is over, and uploads stored in a fresh folder."""
    settings.SARIF_ASYNC_THRESHOLD_BYTES = THRESHOLD
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture
def token(project, owner):
    _token, raw = api_token_create(project=project, name="CI", actor=owner)
    return raw


@pytest.fixture
def other_token(other_project, outsider):
    _token, raw = api_token_create(project=other_project, name="CI", actor=outsider)
    return raw


def auth(raw):
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def report(count=2):
    return sarif_bytes([sarif_result(f"B{600 + i}", line=i + 1) for i in range(count)])


def post_scan(client, raw, data, slug="shop", content_type="application/json"):
    return client.post(
        f"/api/v1/projects/{slug}/scans", data, content_type=content_type, **auth(raw)
    )


def get_scan(client, raw, url):
    response = client.get(url, **auth(raw))
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    return response.json()["scan"]


def stored_files():
    if not default_storage.exists("sarif"):
        return []
    return default_storage.listdir("sarif")[1]


def run_queued(scan_id):
    """What the worker does with the task the upload enqueued."""
    return tasks.import_queued_scan.call(scan_id)


# -- the API: 202, Location, polling --------------------------------------------------


def test_large_report_is_accepted_and_polled_until_complete(client, project, token):
    response = post_scan(client, token, report())
    assert response.status_code == 202
    scan = response.json()["scan"]
    assert scan["status"] == "queued"
    url = f"http://testserver/api/v1/projects/shop/scans/{scan['id']}"
    assert scan["url"] == response["Location"] == url
    assert (scan["new"], scan["tool_name"], scan["error"]) == (0, "", None)
    # Nothing imported yet; the file waits for the worker.
    assert not Finding.objects.exists()
    assert len(stored_files()) == 1
    assert get_scan(client, token, url)["status"] == "queued"

    assert run_queued(scan["id"]) == {"scan_id": scan["id"], "status": "complete"}

    done = get_scan(client, token, url)
    assert done["status"] == "complete"
    assert (done["new"], done["seen_again"], done["resolved"]) == (2, 0, 0)
    assert done["tool_name"] == "Bandit" and done["error"] is None
    assert done["started_at"] <= done["finished_at"]
    assert done["incomplete"] is False and done["tool_notifications"] == []
    assert Finding.objects.filter(project=project).count() == 2
    # The stored file is gone once the scan is final.
    assert stored_files() == []
    assert Scan.objects.get().sarif_file.name == ""


def test_the_enqueued_task_imports_after_commit(
    client, project, token, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post_scan(client, token, report())
    assert response.status_code == 202
    # One import task enqueued once the upload committed (the other callbacks count
    # metrics of the import the task then ran).
    enqueues = [c for c in callbacks if "scan_enqueue" in c.__qualname__]
    assert len(enqueues) == 1
    # The test settings' immediate backend ran the task as it was enqueued.
    scan = get_scan(client, token, response["Location"])
    assert (scan["status"], scan["new"]) == ("complete", 2)
    kinds = set(Event.objects.values_list("kind", flat=True))
    assert {EventKind.SCAN_COMPLETED, EventKind.NEW_VULNERABILITIES} <= kinds
    assert stored_files() == []


def test_the_task_is_enqueued_only_once_the_upload_commits(
    project, owner, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        scan_queue.scan_enqueue(
            project=project, sarif=report(), source="api", actor=owner
        )
    assert len(callbacks) == 1  # registered for the commit, not run before it


def test_multipart_upload_over_the_threshold_is_queued(client, project, token):
    upload = SimpleUploadedFile("big.sarif", report(), "application/sarif+json")
    response = client.post(
        "/api/v1/projects/shop/scans", {"file": upload}, **auth(token)
    )
    assert response.status_code == 202
    run_queued(response.json()["scan"]["id"])
    assert get_scan(client, token, response["Location"])["new"] == 2


def test_an_upload_spooled_to_a_temporary_file_is_stored_whole(
    client, project, token, settings
):
    # Django writes uploads over this size to a temporary file, which the storage
    # moves rather than copies.
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 100
    data = report(50)
    upload = SimpleUploadedFile("big.sarif", data, "application/sarif+json")
    response = client.post(
        "/api/v1/projects/shop/scans", {"file": upload}, **auth(token)
    )
    assert response.status_code == 202
    (name,) = stored_files()
    with default_storage.open(f"sarif/{name}", "rb") as stored:
        assert stored.read() == data
    run_queued(response.json()["scan"]["id"])
    assert get_scan(client, token, response["Location"])["new"] == 50


def test_failed_import_says_what_to_fix_and_leaves_nothing(client, project, token):
    response = post_scan(client, token, BAD_VERSION)
    assert response.status_code == 202  # the content is the worker's to read
    scan_id = response.json()["scan"]["id"]

    assert run_queued(scan_id)["status"] == "failed"

    scan = get_scan(client, token, response["Location"])
    assert scan["status"] == "failed"
    assert 'SARIF version "2.0.0" is not supported' in scan["error"]
    assert scan["finished_at"] is not None
    assert (scan["new"], scan["tool_name"]) == (0, "")
    assert not Finding.objects.exists() and not Event.objects.exists()
    assert stored_files() == []


def test_a_file_gone_from_storage_fails_the_scan(project, owner):
    scan = scan_queue.scan_enqueue(project=project, sarif=report(), source="api")
    default_storage.delete(scan.sarif_file.name)
    run_queued(scan.pk)
    scan.refresh_from_db()
    assert scan.status == ScanStatus.FAILED
    assert "Upload it again" in scan.error


def test_running_the_task_twice_imports_once(client, project, token):
    response = post_scan(client, token, report())
    scan_id = response.json()["scan"]["id"]
    run_queued(scan_id)
    assert run_queued(scan_id) == {"scan_id": scan_id, "status": None}
    scan = get_scan(client, token, response["Location"])
    assert (scan["status"], scan["new"], scan["seen_again"]) == ("complete", 2, 0)
    assert Event.objects.filter(kind=EventKind.SCAN_COMPLETED).count() == 1


def test_processing_is_shown_while_the_worker_imports(client, project, token):
    response = post_scan(client, token, report())
    scan_id = response.json()["scan"]["id"]
    started = timezone.now()
    Scan.objects.filter(pk=scan_id).update(
        status=ScanStatus.PROCESSING, started_at=started
    )
    scan = get_scan(client, token, response["Location"])
    assert scan["status"] == "processing" and scan["finished_at"] is None
    # Another task for the same scan finds it taken, and leaves it alone.
    assert scan_queue.scan_import_queued(scan_id=scan_id) is None


# -- the threshold --------------------------------------------------------------------


def padded(size):
    """A valid SARIF report of exactly `size` bytes."""
    data = report(1)
    assert len(data) <= size
    return data + b" " * (size - len(data))


@pytest.mark.parametrize(("over", "status"), [(-1, 201), (0, 201), (1, 202)])
def test_threshold_boundary(client, project, token, settings, over, status):
    settings.SARIF_ASYNC_THRESHOLD_BYTES = 1000
    response = post_scan(client, token, padded(1000 + over))
    assert response.status_code == status
    scan = response.json()["scan"]
    assert scan["status"] == ("complete" if status == 201 else "queued")
    assert scan["url"].endswith(f"/api/v1/projects/shop/scans/{scan['id']}")
    assert ("Location" in response) is (status == 202)


def test_over_the_size_limit_is_413_and_nothing_is_stored(
    client, project, token, settings
):
    settings.SARIF_MAX_BYTES = THRESHOLD * 2
    response = post_scan(client, token, padded(THRESHOLD * 2 + 1))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "sarif_too_large"
    assert not Scan.objects.exists() and stored_files() == []


# -- who may read a scan ----------------------------------------------------------------


def test_another_projects_token_gets_404_for_the_scan(
    client, project, token, other_project, other_token
):
    response = post_scan(client, token, report())
    scan_id = response.json()["scan"]["id"]
    # Under the other project's slug, with its own token: no such scan there.
    response = client.get(
        f"/api/v1/projects/payroll/scans/{scan_id}", **auth(other_token)
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    # Under this project's slug, the other token is not this project's.
    response = client.get(f"/api/v1/projects/shop/scans/{scan_id}", **auth(other_token))
    assert response.status_code == 404


@pytest.mark.parametrize("scan_id", ["abc", "٣", "1" * 19, "99999"])
def test_no_such_scan_is_404(client, project, token, scan_id):
    response = client.get(f"/api/v1/projects/shop/scans/{scan_id}", **auth(token))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_scan_status_needs_a_token(client, project, token):
    scan_id = post_scan(client, token, report()).json()["scan"]["id"]
    response = client.get(f"/api/v1/projects/shop/scans/{scan_id}")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_missing"


def test_synchronous_import_answers_its_url_too(client, project, token, settings):
    settings.SARIF_ASYNC_THRESHOLD_BYTES = 10**6
    response = post_scan(client, token, report())
    assert response.status_code == 201
    scan = response.json()["scan"]
    assert get_scan(client, token, scan["url"])["new"] == 2


# -- recovery from a lost task or a dead worker ----------------------------------------------


def test_a_scan_processing_past_its_time_is_failed_by_the_recovery(project, settings):
    settings.SARIF_IMPORT_TIMEOUT_SECONDS = 60
    scan = scan_queue.scan_enqueue(project=project, sarif=report(), source="api")
    # Its worker claimed it, then died (SIGKILL, out of memory).
    long_ago = timezone.now() - timedelta(seconds=61)
    Scan.objects.filter(pk=scan.pk).update(
        status=ScanStatus.PROCESSING, started_at=long_ago
    )
    assert scan_queue.scan_recover(scan_id=scan.pk) is None
    scan.refresh_from_db()
    assert scan.status == ScanStatus.FAILED and scan.finished_at is not None
    assert "worker running it was stopped" in scan.error
    assert stored_files() == [] and not Finding.objects.exists()


def test_a_scan_processing_within_its_time_is_looked_at_again_later(project, settings):
    settings.SARIF_IMPORT_TIMEOUT_SECONDS = 60
    scan = scan_queue.scan_enqueue(project=project, sarif=report(), source="api")
    started = timezone.now() - timedelta(seconds=10)
    Scan.objects.filter(pk=scan.pk).update(
        status=ScanStatus.PROCESSING, started_at=started
    )
    assert scan_queue.scan_recover(scan_id=scan.pk) == started + timedelta(seconds=60)
    scan.refresh_from_db()
    assert scan.status == ScanStatus.PROCESSING and len(stored_files()) == 1


def test_a_scan_whose_task_was_lost_is_imported_by_the_recovery(project):
    scan = scan_queue.scan_enqueue(project=project, sarif=report(), source="api")
    # The on-commit enqueue never ran (the test's transaction never commits): the
    # recovery task enqueues it again, which the immediate backend runs at once.
    tasks.recover_queued_scan.call(scan.pk)
    scan.refresh_from_db()
    assert (scan.status, scan.new_count) == (ScanStatus.COMPLETE, 2)


def test_recovery_leaves_a_final_scan_alone(client, project, token):
    scan_id = post_scan(client, token, report()).json()["scan"]["id"]
    run_queued(scan_id)
    assert scan_queue.scan_recover(scan_id=scan_id) is None
    assert Scan.objects.get().status == ScanStatus.COMPLETE


def test_the_recovery_is_booked_with_a_backend_that_can_delay(
    project, settings, django_capture_on_commit_callbacks
):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    from django_tasks_db.models import DBTaskResult

    with django_capture_on_commit_callbacks(execute=True):
        scan = scan_queue.scan_enqueue(project=project, sarif=report(), source="api")
    booked = {
        row.task_path.rsplit(".", 1)[1]: row
        for row in DBTaskResult.objects.all()
        if row.args_kwargs["args"] == [scan.pk]
    }
    assert set(booked) == {"import_queued_scan", "recover_queued_scan"}
    timeout = timedelta(seconds=settings.SARIF_IMPORT_TIMEOUT_SECONDS)
    recovery_at = booked["recover_queued_scan"].run_after
    assert timezone.now() < recovery_at <= timezone.now() + timeout
    assert recovery_at > timezone.now() + timeout - timedelta(minutes=1)


# -- the upload page and the scan's page ------------------------------------------------


def upload(data=None):
    return SimpleUploadedFile("scan.sarif", data or report(), "application/json")


def login(client, user):
    client.force_login(user)
    return client


def scan_page(client, scan_id, *, fetch=False):
    headers = {"X-Requested-With": "fetch"} if fetch else {}
    return client.get(reverse("projects:scan", args=["shop", scan_id]), headers=headers)


def test_large_upload_goes_to_the_scan_page_which_follows_it(client, project, owner):
    login(client, owner)
    response = client.post(
        reverse("projects:scan_upload", args=["shop"]), {"file": upload()}
    )
    scan = Scan.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("projects:scan", args=["shop", scan.pk])
    assert (scan.status, scan.created_by, scan.source) == ("queued", owner, "upload")

    page = scan_page(client, scan.pk)
    body = page.content.decode()
    assert page["Cache-Control"] == "no-store"
    assert "Queued: waiting for the worker" in body
    assert 'aria-live="polite"' in body and "js/scan_status.js" in body
    assert "<noscript>" in body
    # The script asks for the status part only.
    part = scan_page(client, scan.pk, fetch=True).content.decode()
    assert part.strip().startswith('<div data-scan-status="queued" data-final="false">')
    assert "<html" not in part

    run_queued(scan.pk)
    part = scan_page(client, scan.pk, fetch=True).content.decode()
    assert 'data-scan-status="complete" data-final="true"' in part
    assert "Imported." in part and "Bandit" in part
    body = scan_page(client, scan.pk).content.decode()
    # Final: no more polling.
    assert "js/scan_status.js" not in body and "<noscript>" not in body


def test_failed_upload_shows_the_error_on_the_scan_page(client, project, owner):
    login(client, owner)
    client.post(
        reverse("projects:scan_upload", args=["shop"]),
        {"file": upload(BAD_VERSION)},
    )
    scan = Scan.objects.get()
    run_queued(scan.pk)
    body = scan_page(client, scan.pk).content.decode()
    assert "The import failed. Nothing was imported." in body
    assert "SARIF version &quot;2.0.0&quot; is not supported" in body
    assert "Upload a corrected file" in body


def test_small_upload_is_still_imported_at_once(client, project, owner, settings):
    settings.SARIF_ASYNC_THRESHOLD_BYTES = 10**6
    login(client, owner)
    response = client.post(
        reverse("projects:scan_upload", args=["shop"]), {"file": upload()}
    )
    assert response["Location"] == reverse("projects:detail", args=["shop"])
    assert Scan.objects.get().status == ScanStatus.COMPLETE


def test_members_see_the_scan_page_and_others_do_not(
    client, project, member, outsider, other_project
):
    scan = scan_queue.scan_enqueue(project=project, sarif=report(), source="api")
    assert scan_page(login(client, member), scan.pk).status_code == 200
    assert scan_page(login(client, outsider), scan.pk).status_code == 404
    # Another project's scan id under a project the user may see.
    other = scan_queue.scan_enqueue(project=other_project, sarif=report(), source="api")
    assert scan_page(login(client, member), other.pk).status_code == 404


def test_hostile_error_text_is_escaped(client, project, owner):
    scan = scan_queue.scan_enqueue(project=project, sarif=report(), source="api")
    Scan.objects.filter(pk=scan.pk).update(
        status=ScanStatus.FAILED, error='<script>alert("x")</script>'
    )
    body = scan_page(login(client, owner), scan.pk).content.decode()
    assert '<script>alert("x")</script>' not in body
    assert "&lt;script&gt;" in body
