"""GET /metrics: the bearer token, the metric families, figures counted by real
deliveries, token requests and imports against the sandbox, the queue and periodic
jobs read from the database, and counters written by another process (a real
db_worker) in multi-process mode."""

import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from notifications.models import Delivery, DeliveryStatus, EventKind, ToolLink
from notifications.services import event_emit
from operations.models import PeriodicJob
from projects.services import api_token_create, scan_import
from tests.notifications.test_worker import (
    ROOT,
    run,
    start_worker,
    status,
    wait_for,
    worker_env,
)
from tests.projects.sarif_documents import sarif_bytes, sarif_result
from tests.tools import GRAPH_PROVIDER, activate_azure_mail

pytestmark = pytest.mark.django_db

TOKEN = "metrics-test-token-0123456789abcdef"
PREFIX = "appsec_mail"

FAMILIES = {
    f"{PREFIX}_deliveries": "counter",
    f"{PREFIX}_send_seconds": "histogram",
    f"{PREFIX}_token_requests": "counter",
    f"{PREFIX}_throttled_replies": "counter",
    f"{PREFIX}_scan_imports": "counter",
    f"{PREFIX}_findings_created": "counter",
    f"{PREFIX}_deliveries_queued": "gauge",
    f"{PREFIX}_delivery_oldest_pending_age_seconds": "gauge",
    f"{PREFIX}_periodic_job_runs": "counter",
    f"{PREFIX}_periodic_job_failures": "counter",
    f"{PREFIX}_database_up": "gauge",
}


@pytest.fixture(autouse=True)
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.PROMETHEUS_MULTIPROC_DIR = ""
    settings.SITE_URL = "https://appsec.example.test"


@pytest.fixture
def link(sandbox, project):
    """Microsoft Azure Mail (the sandbox tenant) linked to the project."""
    return ToolLink.objects.create(
        project=project,
        integration=activate_azure_mail(sandbox.seed),
        minimum_severity="info",
        notify_scan_completed=True,
    )


def scrape(token=TOKEN, **headers):
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return Client().get("/metrics", **headers)


def families() -> dict:
    response = scrape()
    assert response.status_code == 200, response.content[:500]
    return {
        family.name: family
        for family in text_string_to_metric_families(response.content.decode())
    }


def value(name: str, **labels) -> float:
    """A sample's value in a fresh scrape (0 when absent): `name` is the sample's
    (with its suffix: _total, _count...)."""
    for family in families().values():
        for sample in family.samples:
            if sample.name == name and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                return sample.value
    return 0.0


def emit_scans_completed(project, count, capture, *, execute=True):
    with capture(execute=execute):
        for i in range(count):
            event_emit(
                project=project,
                kind=EventKind.SCAN_COMPLETED,
                payload={"scan_id": None, "new": i, "counts": {"high": i}},
            )


# -- the token -------------------------------------------------------------------------


def test_metrics_are_switched_off_without_a_token(settings):
    settings.METRICS_TOKEN = ""
    assert scrape(token=None).status_code == 404
    assert scrape(token="anything-at-all-here").status_code == 404
    assert Client().post("/metrics").status_code == 404


def test_a_missing_or_wrong_token_is_refused():
    for response in (
        scrape(token=None),
        scrape(token="wrong-token-0123456789abcdef"),
        scrape(token=TOKEN[:-1]),
        scrape(token=None, HTTP_AUTHORIZATION=f"Basic {TOKEN}"),
    ):
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert TOKEN.encode() not in response.content
    assert (
        Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code
        == 405
    )


def test_the_right_token_gets_the_text_format():
    response = scrape()
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "no-cache" in response["Cache-Control"]
    assert TOKEN.encode() not in response.content


def test_every_metric_family_is_present():
    PeriodicJob.objects.create(name="purge", interval_seconds=3600)
    found = {name: family.type for name, family in families().items()}
    assert {name: found.get(name) for name in FAMILIES} == FAMILIES
    assert value(f"{PREFIX}_database_up") == 1


# -- counted where it happens ----------------------------------------------------------


def test_an_smtp_send_is_timed_once_until_its_reply_is_read(
    sandbox, project, smtp_link, django_capture_on_commit_callbacks
):
    # The SMTP session leaves each message's reply to be read after the next
    # message is ready: the send is still observed once, when the reply is read.
    count, total = f"{PREFIX}_send_seconds_count", f"{PREFIX}_send_seconds_sum"
    before = value(count, tool="smtp"), value(total, tool="smtp")
    # The server takes half a second to answer the first message's content.
    sandbox.add_fault(
        target="smtp",
        smtp_stage="data",
        delay=0.5,
        smtp_reply="550 5.7.1 Message rejected as spam by Content Filtering",
        count=1,
    )

    emit_scans_completed(project, 3, django_capture_on_commit_callbacks)

    statuses = list(Delivery.objects.order_by("pk").values_list("status", flat=True))
    assert statuses == ["failed", "sent", "sent"]
    assert value(count, tool="smtp") == before[0] + 3
    assert value(total, tool="smtp") >= before[1] + 0.5


def test_a_delivery_counts_its_outcome_latency_and_one_token_request(
    sandbox, project, link, django_capture_on_commit_callbacks
):
    sent = f"{PREFIX}_deliveries_total"
    latency = f"{PREFIX}_send_seconds_count"
    tokens = f"{PREFIX}_token_requests_total"
    labels = {"tool": GRAPH_PROVIDER}
    grant = {"grant": "client_credentials", "outcome": "acquired"}
    before = (
        value(sent, **labels, outcome="sent"),
        value(latency, **labels),
        value(tokens, **grant),
    )

    emit_scans_completed(project, 3, django_capture_on_commit_callbacks)

    assert set(Delivery.objects.values_list("status", flat=True)) == {"sent"}
    assert len(sandbox.messages()) == 3
    assert value(sent, **labels, outcome="sent") == before[0] + 3
    assert value(latency, **labels) == before[1] + 3
    # One token from the network, then msal's cache: only the network one counts,
    # as many as the token endpoint saw.
    assert sandbox.counters()["token_requests"]["client_credentials"] == 1
    assert value(tokens, **grant) == before[2] + 1


def test_a_refused_token_request_is_counted_as_refused(
    sandbox, project, link, django_capture_on_commit_callbacks
):
    refused = {"grant": "client_credentials", "outcome": "refused"}
    before = value(f"{PREFIX}_token_requests_total", **refused)
    # AADSTS7000222: the client secret has expired.
    sandbox.add_fault(target="token", status=400, error_code=7000222, count=1)
    emit_scans_completed(project, 1, django_capture_on_commit_callbacks)
    assert value(f"{PREFIX}_token_requests_total", **refused) == before + 1


def test_a_429_counts_a_throttling_reply(
    sandbox, project, link, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFICATIONS_INLINE_RETRY_AFTER_SECONDS = 3.0
    throttled = f"{PREFIX}_throttled_replies_total"
    labels = {"tool": GRAPH_PROVIDER, "reply": "429"}
    before = value(throttled, **labels)
    sandbox.add_fault(target="graph", status=429, retry_after="0.05", count=1)

    emit_scans_completed(project, 1, django_capture_on_commit_callbacks)

    (delivery,) = Delivery.objects.all()
    assert delivery.status == DeliveryStatus.SENT  # retried inside the task
    assert delivery.throttle_count == 1
    assert value(throttled, **labels) == before + 1


def test_an_smtp_4_3_2_counts_a_throttling_reply(
    sandbox, project, smtp_link, django_capture_on_commit_callbacks
):
    throttled = f"{PREFIX}_throttled_replies_total"
    labels = {"tool": "smtp", "reply": "4.3.2"}
    retrying = {"tool": "smtp", "outcome": "retrying"}
    before = value(throttled, **labels)
    before_retrying = value(f"{PREFIX}_deliveries_total", **retrying)
    sandbox.add_fault(
        target="smtp",
        smtp_reply="451 4.3.2 Message submission rate for this client has exceeded "
        "the configured limit",
        smtp_stage="data",
        count=1,
    )

    emit_scans_completed(project, 1, django_capture_on_commit_callbacks)

    (delivery,) = Delivery.objects.all()
    assert delivery.throttle_count == 1
    assert value(throttled, **labels) == before + 1
    # Requeued for later: counted as "retrying".
    assert delivery.status == DeliveryStatus.PENDING
    assert value(f"{PREFIX}_deliveries_total", **retrying) == before_retrying + 1


def test_an_import_counts_itself_and_the_findings_it_created(
    project, owner, django_capture_on_commit_callbacks
):
    imports = f"{PREFIX}_scan_imports_total"
    created = f"{PREFIX}_findings_created_total"
    before = (value(imports, source="api"), value(created, source="api"))
    results = [sarif_result("B602"), sarif_result("B105", line=3)]

    with django_capture_on_commit_callbacks(execute=True):
        scan = scan_import(
            project=project, sarif=sarif_bytes(results), source="api", actor=owner
        )
    assert scan.new_count == 2
    assert value(imports, source="api") == before[0] + 1
    assert value(created, source="api") == before[1] + 2

    # The same results again: an import, no new finding.
    with django_capture_on_commit_callbacks(execute=True):
        scan_import(
            project=project, sarif=sarif_bytes(results), source="api", actor=owner
        )
    assert value(imports, source="api") == before[0] + 2
    assert value(created, source="api") == before[1] + 2


def test_an_import_rolled_back_is_not_counted(project, owner):
    imports = f"{PREFIX}_scan_imports_total"
    before = value(imports, source="upload")
    # Inside the test's transaction, never committed: on_commit never fires.
    scan_import(
        project=project,
        sarif=sarif_bytes([sarif_result("B602")]),
        source="upload",
        actor=owner,
    )
    assert value(imports, source="upload") == before


# -- read from the database at scrape time ---------------------------------------------


def test_queue_depth_and_oldest_pending_age_come_from_the_database(
    sandbox, project, link, django_capture_on_commit_callbacks
):
    queued = f"{PREFIX}_deliveries_queued"
    age = f"{PREFIX}_delivery_oldest_pending_age_seconds"
    assert value(queued, tool=GRAPH_PROVIDER, status="pending") == 0
    assert value(age) == 0

    # Written, but their tasks never run (on_commit callbacks not executed).
    emit_scans_completed(project, 4, django_capture_on_commit_callbacks, execute=False)
    oldest = Delivery.objects.order_by("pk").first()
    Delivery.objects.filter(pk=oldest.pk).update(
        created_at=timezone.now() - timedelta(minutes=10)
    )
    Delivery.objects.exclude(pk=oldest.pk).filter(
        pk=Delivery.objects.order_by("-pk").first().pk
    ).update(status=DeliveryStatus.SENDING)

    assert value(queued, tool=GRAPH_PROVIDER, status="pending") == 3
    assert value(queued, tool=GRAPH_PROVIDER, status="sending") == 1
    assert 600 <= value(age) < 660

    Delivery.objects.update(status=DeliveryStatus.SENT)
    assert value(queued, tool=GRAPH_PROVIDER, status="pending") == 0
    assert value(age) == 0


def test_periodic_job_runs_and_failures_come_from_their_rows():
    PeriodicJob.objects.create(
        name="retention", interval_seconds=3600, runs=7, failures=2
    )
    PeriodicJob.objects.create(name="heartbeat", interval_seconds=60, runs=3)
    runs, failures = (
        f"{PREFIX}_periodic_job_runs_total",
        f"{PREFIX}_periodic_job_failures_total",
    )
    assert value(runs, job="retention") == 7
    assert value(failures, job="retention") == 2
    assert value(runs, job="heartbeat") == 3
    assert value(failures, job="heartbeat") == 0


# -- several processes -----------------------------------------------------------------


def test_counters_of_a_separate_worker_process_appear_in_the_web_process(
    sandbox, tmp_path, settings
):
    """A real db_worker, in its own process, delivers with PROMETHEUS_MULTIPROC_DIR
    set; this (web) process's /metrics, pointed at the same directory, shows what
    it counted."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = worker_env(
        sandbox,
        tmp_path,
        f"sqlite:///{tmp_path / 'worker.sqlite3'}",
        PROMETHEUS_MULTIPROC_DIR=str(directory),
        METRICS_TOKEN="",
    )
    run(env, "-m", "tests.notifications.worker_script", "setup", "4")
    settings.PROMETHEUS_MULTIPROC_DIR = str(directory)
    sent = f"{PREFIX}_deliveries_total"
    labels = {"tool": GRAPH_PROVIDER, "outcome": "sent"}
    assert value(sent, **labels) == 0  # nothing from this process's memory

    worker = start_worker(env)
    try:
        assert wait_for(
            lambda: {d["status"] for d in status(env)["deliveries"]} == {"sent"},
            timeout=60,
            interval=0.3,
        ), status(env)
        # The outcomes are counted right after they are written.
        assert wait_for(lambda: value(sent, **labels) == 4, timeout=30, interval=0.2)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)

    assert any(directory.glob("counter_*.db"))
    assert value(f"{PREFIX}_send_seconds_count", tool=GRAPH_PROVIDER) == 4
    assert (
        value(
            f"{PREFIX}_token_requests_total",
            grant="client_credentials",
            outcome="acquired",
        )
        == sandbox.counters()["token_requests"]["client_credentials"]
    )
    # The database's figures are there too (this process's database: empty queue).
    assert value(f"{PREFIX}_database_up") == 1


def test_neither_a_session_nor_a_project_api_token_opens_metrics(
    project, owner, security_admin
):
    client = Client()
    client.force_login(security_admin)
    assert client.get("/metrics").status_code == 401
    _token, raw = api_token_create(project=project, name="CI", actor=owner)
    assert scrape(token=raw).status_code == 401


@pytest.mark.parametrize(
    "variables, message",
    [
        ({"METRICS_TOKEN": "too-short"}, "METRICS_TOKEN must be at least 16"),
        ({"METRICS_TOKEN": "has a space in it 0123456789"}, "METRICS_TOKEN must be"),
        (
            {"PROMETHEUS_MULTIPROC_DIR": "/nonexistent/metrics-dir"},
            "PROMETHEUS_MULTIPROC_DIR must be an existing directory",
        ),
    ],
)
def test_bad_metrics_settings_stop_start_up_with_a_clear_error(
    tmp_path, variables, message
):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "VAR_DIR": str(tmp_path),
        **variables,
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert message in result.stderr
    # The token itself is not repeated.
    assert variables.get("METRICS_TOKEN", "\0") not in result.stderr
