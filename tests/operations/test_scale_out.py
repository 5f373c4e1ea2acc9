"""Scale-out, proven (issue 12, item 8): bench/scale_out.py's drill, scaled down.

Two gunicorn instances and three task workers (the Procfile's commands) on a
PostgreSQL database of their own with the cache on Redis, 600 deliveries through
Graph and SMTP from three sender mailboxes while SARIF files are uploaded through the
API on both instances and a worker is killed with SIGKILL and restarted; then Test
Connection's rate limit and the sign-in lockout, each tried across both instances.

The drill is the benchmark's own code, run as a person runs it (a subprocess with its
throwaway database and sandbox), its figures read from its --json file. Skipped
without PostgreSQL or Redis, failed instead under REQUIRE_SERVICES=1 (CI). It empties
Redis database 14 on the REDIS_URL server (the benchmark's cache; the database
backend, so database 15 is not touched).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
DELIVERIES = 600
UPLOADS_PER_INSTANCE = 2
REDIS_DB = 14


def _redis_database(redis_url: str) -> str:
    host_port = re.match(r"redis://([^/]+)", redis_url).group(1)
    return f"redis://{host_port}/{REDIS_DB}"


@pytest.fixture(scope="module")
def drill(tmp_path_factory, postgres_url, redis_url):
    """The drill's figures (bench/scale_out.py --json), and its printed output."""
    out = tmp_path_factory.mktemp("scale-out")
    figures_path, log_path = out / "figures.json", out / "output.txt"
    with log_path.open("w") as log:
        # A session of its own: on a timeout the whole process group goes (the
        # bench's gunicorns, workers and sandbox are in it).
        process = subprocess.Popen(
            [
                sys.executable,
                "bench/scale_out.py",
                "--deliveries",
                str(DELIVERIES),
                "--uploads",
                str(UPLOADS_PER_INSTANCE),
                "--database-url",
                postgres_url,
                "--redis-url",
                _redis_database(redis_url),
                "--json",
                str(figures_path),
            ],
            cwd=ROOT,
            env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 400
        while process.poll() is None:
            assert time.monotonic() < deadline, (
                "the drill did not finish in 400 s:\n" + log_path.read_text()[-4000:]
            )
            time.sleep(0.5)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the bench cleans up its own
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
    output = log_path.read_text()
    assert figures_path.exists(), f"no figures written:\n{output[-4000:]}"
    return json.loads(figures_path.read_text()), output


def test_nothing_is_lost_across_two_web_instances_and_three_workers(drill):
    figures, output = drill

    assert figures["expected"] == DELIVERIES, output
    assert figures["delivered"] == DELIVERIES, output
    assert figures["lost"] == 0, output
    assert figures["killed_mid_task"], output
    assert not figures["failed_tasks"], output
    # Both tools; the Graph tool's From changed mid-run (an admin's Save). A run
    # under way keeps the From it started with (up to NOTIFICATIONS_RUN_MAX_SECONDS),
    # so the third mailbox may send few or none of them.
    senders = {name.split(" ")[0] for name in figures["sender_mailboxes"]}
    assert "smtp-alerts@contoso.onmicrosoft.com" in senders, output
    assert "notifications@contoso.onmicrosoft.com" in senders, output
    assert senders <= {
        "smtp-alerts@contoso.onmicrosoft.com",
        "notifications@contoso.onmicrosoft.com",
        "security-alerts@contoso.onmicrosoft.com",
    }, output


def test_nothing_is_doubled_that_the_product_could_have_known_about(drill):
    """No fault is injected, so the only possible doubles are the killed worker's
    SMTP sends whose outcome it had not yet written (the documented trade-off of
    NOTIFICATIONS_OUTCOME_FLUSH, notifications/services/delivery.py): SMTP cannot
    look a message up, Graph can (Sent Items), so Graph never doubles, and each
    SMTP double is marked on the delivery log as sent again unconfirmed."""
    figures, output = drill
    doubles = figures["doubles"]

    assert doubles["graph"] == 0, output
    assert doubles["unmarked"] == 0, output
    assert figures["doubled"] <= doubles["bound"], output


def test_token_requests_are_as_few_as_one_worker_would_make(drill):
    figures, output = drill

    assert 1 <= figures["token_requests"] <= figures["token_requests_one_worker"]


def test_every_upload_on_either_instance_is_accepted_and_imported(drill):
    figures, output = drill

    assert set(figures["uploads"]) == {"web-a", "web-b"}
    for upload in figures["uploads"].values():
        assert upload["posted"] == UPLOADS_PER_INSTANCE, output
        assert upload["accepted"] == UPLOADS_PER_INSTANCE, output
        assert upload["imported"] == UPLOADS_PER_INSTANCE, output


def test_test_connection_rate_limit_is_shared_by_the_instances(drill):
    figures, output = drill
    rate = figures["test_connection"]

    assert rate["attempts"] == rate["limit"] + 1
    assert rate["allowed"] == rate["limit"], output
    assert rate["refused"] == 1, output
    # Both instances answered some of the attempts.
    assert set(rate["by_instance"]) == {"web-a", "web-b"}
    assert rate["shared"], output


def test_the_sign_in_lockout_is_shared_by_the_instances(drill):
    figures, output = drill
    lockout = figures["lockout"]

    # Neither instance alone saw enough failures to lock the account...
    assert max(lockout["failures_by_instance"].values()) < lockout["limit"]
    # ...and both refuse its correct password now.
    assert lockout["correct_password_after"] == {"web-a": 429, "web-b": 429}, output
    assert lockout["shared"], output


def test_the_drill_prints_its_figures(drill):
    _figures, output = drill

    for label in (
        "expected",
        "delivered",
        "lost",
        "doubled",
        "duration",
        "token requests",
        "Test Connection",
        "sign-in lockout",
        "result",
    ):
        assert re.search(rf"^{re.escape(label)} ", output, re.M), label
