"""The Operations page (security admins only) and the "No task worker is running"
banner on the Deliveries pages."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from operations.heartbeat import worker_heartbeat
from operations.models import PeriodicJob, WorkerHeartbeat
from operations.periodic import registered
from tests.conftest import client_for

BANNER = "No task worker is running: deliveries are waiting"


# -- the Operations page ----------------------------------------------------------


def test_operations_page_is_for_security_admins(
    client, owner, member, outsider, security_admin
):
    url = reverse("operations:overview")
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    for user in (owner, member, outsider):
        assert client_for(client, user).get(url).status_code == 403
    assert client_for(client, security_admin).get(url).status_code == 200


def test_navigation_links_the_operations_page_for_security_admins_only(
    client, owner, security_admin
):
    url = reverse("operations:overview")
    page = client_for(client, owner).get(reverse("projects:list"))
    assert f'href="{url}"' not in page.content.decode()
    page = client_for(client, security_admin).get(reverse("projects:list"))
    assert f'href="{url}"' in page.content.decode()


def test_operations_page_shows_workers_queue_and_jobs(
    client, security_admin, pending_delivery, settings
):
    settings.READYZ_WORKER_MAX_AGE_SECONDS = 120
    worker_heartbeat(force=True)
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        worker="old-host:4242",
        hostname="old-host",
        pid=4242,
        started_at=now - timedelta(hours=2),
        last_seen_at=now - timedelta(hours=1),
    )
    pending_delivery(due_seconds_ago=30)
    pending_delivery(due_seconds_ago=-600)
    PeriodicJob.objects.create(
        name="operations.retention",
        interval_seconds=3600,
        next_run_at=now + timedelta(minutes=30),
        last_started_at=now - timedelta(minutes=30),
        last_finished_at=now - timedelta(minutes=29),
        last_error="IntegrityError: purge stopped",
        runs=3,
        failures=1,
    )

    response = client_for(client, security_admin).get(reverse("operations:overview"))
    assert response.status_code == 200
    workers = response.context["workers"]
    assert [w.alive for w in workers] == [True, False]
    assert workers[1].worker == "old-host:4242"
    queue = response.context["queue"]
    assert (queue.pending, queue.due) == (2, 1)
    assert queue.oldest_due_seconds >= 30
    assert queue.ready_tasks == 0
    page = response.content.decode()
    assert "old-host:4242" in page and "Not seen lately" in page
    assert '<td class="queue-pending">2</td>' in page
    assert '<td class="queue-due">1</td>' in page
    assert "operations.retention" in page
    assert "IntegrityError: purge stopped" in page
    assert BANNER not in page  # a worker is alive


def test_operations_page_warns_when_no_worker_was_seen(client, security_admin):
    response = client_for(client, security_admin).get(reverse("operations:overview"))
    page = response.content.decode()
    assert BANNER in page
    assert "No task worker has been seen yet." in page
    # Every registered job is listed, even before its first booking.
    assert [job.name for job in response.context["jobs"]] == sorted(registered())
    assert "operations.heartbeat" in page and "not booked yet" in page


# -- the banner on the Deliveries pages ----------------------------------------------


@pytest.fixture
def deliveries_pages(project):
    return [
        reverse("projects:deliveries", kwargs={"slug": project.slug}),
        reverse("notifications:deliveries"),
    ]


def test_banner_shows_without_a_worker_and_goes_with_a_fresh_heartbeat(
    client, security_admin, deliveries_pages, pending_delivery, settings
):
    settings.READYZ_WORKER_MAX_AGE_SECONDS = 120
    pending_delivery(due_seconds_ago=5)
    client = client_for(client, security_admin)
    for url in deliveries_pages:
        page = client.get(url).content.decode()
        assert BANNER in page, url
        assert "1 delivery is waiting to be sent." in page
        assert "bin/run" in page

    worker_heartbeat(force=True)
    for url in deliveries_pages:
        assert BANNER not in client.get(url).content.decode(), url

    # The worker stops: after the threshold the banner is back.
    WorkerHeartbeat.objects.update(last_seen_at=timezone.now() - timedelta(seconds=121))
    for url in deliveries_pages:
        assert BANNER in client.get(url).content.decode(), url


def test_banner_is_shown_to_project_members_too(client, member, project):
    url = reverse("projects:deliveries", kwargs={"slug": project.slug})
    page = client_for(client, member).get(url).content.decode()
    assert BANNER in page
    assert "waiting to be sent" not in page  # nothing waits


def test_banner_counts_only_the_pages_project(
    client, member, project, other_project, pending_delivery, security_admin
):
    pending_delivery(due_seconds_ago=5)
    pending_delivery(due_seconds_ago=5)
    other = pending_delivery(due_seconds_ago=5)
    other.project = other_project
    other.save(update_fields=["project"])
    url = reverse("projects:deliveries", kwargs={"slug": project.slug})
    page = client_for(client, member).get(url).content.decode()
    assert "2 deliveries are waiting to be sent." in page
    page = (
        client_for(client, security_admin)
        .get(reverse("notifications:deliveries"))
        .content.decode()
    )
    assert "3 deliveries are waiting to be sent." in page
