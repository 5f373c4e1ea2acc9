"""LOG_FORMAT=json (issue 12, item 7): one JSON object per line, the request's id on
every line logged while it is handled, the task's id on every line logged while it
runs, and no secret anywhere.

The secret-leak flow of tests/notifications/test_secret_leaks.py again, with the
product's JSON logging configuration (config/logs.py, at DEBUG, SQL included) writing
to a buffer: a Test Connection with a wrong sentinel password and a Save with the
right one go through the drawer's pages, deliveries are sent (one retried) and then
fail with wrong sentinels through the database worker, the delivery logs are read.
"""

import io
import json
import logging
import logging.config
import re

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.urls import reverse

from config.logs import JsonFormatter, logging_config
from notifications.models import Delivery, DeliveryStatus, ToolLink
from tests.integrations.smtp_support import drawer_data
from tests.notifications.test_secret_leaks import (
    DEBUG_LOGGERS,
    GOOD_PASSWORD,
    GOOD_SECRET,
    SANDBOX_LOGGERS,
    SENTINELS,
    WRONG_PASSWORD,
    WRONG_SECRET,
    emit_for_both_tools,
    save_graph_tool,
    save_smtp_tool,
    work,
)

TASK_LINE = re.compile(r"Task id=(\S+) path=\S+ state=(\w+)")


@pytest.fixture(autouse=True)
def fast_retries(settings):
    """As tests/notifications/conftest.py: retries in tenths of a second."""
    settings.NOTIFICATIONS_RETRY_BASE_SECONDS = 0.05
    settings.NOTIFICATIONS_RETRY_MAX_SECONDS = 2.0
    settings.NOTIFICATIONS_MAX_ATTEMPTS = 6
    settings.SITE_URL = "https://appsec.example.test"


@pytest.fixture
def db_tasks(settings):
    """The database task backend and its worker, as in production."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


@pytest.fixture
def sql_logged():
    """SQL statements and their parameters logged (django.db.backends, DEBUG)."""
    connection.force_debug_cursor = True
    yield
    connection.force_debug_cursor = False


@pytest.fixture
def json_log():
    """The product's LOG_FORMAT=json configuration at DEBUG, into a buffer."""
    buffer = io.StringIO()
    logging.config.dictConfig(logging_config("json", "DEBUG"))
    (handler,) = logging.getLogger().handlers
    assert isinstance(handler.formatter, JsonFormatter)
    handler.setStream(buffer)
    for name in DEBUG_LOGGERS:  # some are quieter in the configuration
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield buffer
    logging.config.dictConfig(django_settings.LOGGING)
    for name in DEBUG_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    logging.getLogger("msal").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


class Log:
    """The buffer's lines, each parsed (a line that is not JSON fails the test)."""

    def __init__(self, buffer):
        self.buffer = buffer

    def mark(self) -> int:
        return len(self.buffer.getvalue())

    def lines(self, start=0, end=None) -> list[dict]:
        text = self.buffer.getvalue()[start:end]
        parsed = []
        for number, line in enumerate(text.splitlines(), 1):
            try:
                entry = json.loads(line)
            except ValueError:
                pytest.fail(f"line {number} is not JSON: {line[:300]!r}")
            assert isinstance(entry, dict), line[:300]
            assert {"time", "level", "logger", "message"} <= set(entry), entry
            parsed.append(entry)
        return parsed

    def request(self, send, *args, **kwargs):
        """`send(*args, **kwargs)` (a test client call); every line logged meanwhile
        carries the id the response says."""
        start = self.mark()
        response = send(*args, **kwargs)
        lines = self.lines(start, self.mark())
        request_id = response["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", request_id)
        assert lines, "nothing was logged during the request (DEBUG, SQL included)"
        for line in lines:
            if not line["logger"].startswith(SANDBOX_LOGGERS):
                assert line.get("request_id") == request_id, line
        return response


def assert_task_lines_carry_the_task_id(lines) -> int:
    """Between a task's "state=RUNNING" line and its last line, every line of the
    product has the task's id; returns how many task runs were seen."""
    running = None
    runs = 0
    for line in lines:
        match = TASK_LINE.fullmatch(line["message"])
        if line["logger"] == "django_tasks" and match:
            task, state = match.groups()
            assert line.get("task_id") == task, line
            if state == "RUNNING":
                assert running is None, f"{task} started inside {running}"
                running, runs = task, runs + 1
            else:
                assert running == task, line
                running = None
            continue
        if running and not line["logger"].startswith(SANDBOX_LOGGERS):
            assert line.get("task_id") == running, line
        elif not running:
            assert "task_id" not in line, line
    return runs


@pytest.mark.django_db(transaction=True)
def test_json_lines_carry_request_and_task_ids_and_no_secret(
    client, sandbox, project, owner, security_admin, db_tasks, sql_logged, json_log
):
    log = Log(json_log)
    seed = sandbox.seed
    sandbox.control(
        "POST",
        f"/tenants/{seed['tenant_id']}/apps/{seed['client_id']}/secrets",
        json={"value": GOOD_SECRET},
    )
    sandbox.control(
        "PATCH",
        f"/tenants/{seed['tenant_id']}/users/{seed['user']}",
        json={"password": GOOD_PASSWORD},
    )
    security_admin.email = "secadmin@contoso.onmicrosoft.com"
    security_admin.save()
    client.force_login(security_admin)

    # Through the drawer's pages: a Test Connection with a wrong password, then Save.
    tested = log.request(
        client.post,
        reverse("integrations:test", args=["smtp"]),
        drawer_data(sandbox, "basic", password=WRONG_PASSWORD),
    )
    assert tested.status_code in (200, 400)
    saved = log.request(
        client.post,
        reverse("integrations:tool", args=["smtp"]),
        drawer_data(sandbox, "basic", password=GOOD_PASSWORD),
    )
    assert saved.status_code == 302, saved.content.decode()[:3000]
    from integrations.models import Integration

    smtp_tool = Integration.objects.get(provider="smtp")
    for tool in (save_graph_tool(sandbox, GOOD_SECRET), smtp_tool):
        ToolLink.objects.create(
            project=project,
            integration=tool,
            minimum_severity="info",
            notify_scan_completed=True,
        )

    # Right secrets: sent, one after a retry; then wrong ones: the tools need
    # attention and the deliveries wait for them.
    sandbox.add_fault(target="graph", status=503, count=1)
    emit_for_both_tools(project)
    work()
    assert Delivery.objects.filter(status=DeliveryStatus.SENT).count() == 4
    save_graph_tool(sandbox, WRONG_SECRET)
    save_smtp_tool(sandbox, WRONG_PASSWORD)
    emit_for_both_tools(project)
    work()
    waiting = Delivery.objects.filter(status=DeliveryStatus.PENDING, project=project)
    assert waiting.count() == 4
    assert not Integration.objects.filter(state="active").exists()

    # The delivery logs, read by their owner and by the security admin.
    log.request(
        client.get, reverse("notifications:deliveries"), HTTP_X_REQUEST_ID="a b"
    )
    client.force_login(owner)
    page = log.request(
        client.get, reverse("projects:deliveries", kwargs={"slug": project.slug})
    )
    assert page.status_code == 200

    lines = log.lines()
    text = json_log.getvalue()
    for sentinel in SENTINELS:
        assert sentinel not in text, f"{sentinel} found in the JSON log"
    assert assert_task_lines_carry_the_task_id(lines) >= 4
    product = [line for line in lines if not line["logger"].startswith(SANDBOX_LOGGERS)]
    assert any(
        line["logger"].startswith("notifications") and line.get("task_id")
        for line in product
    )
    assert any(line["level"] == "DEBUG" for line in product)
    assert any("exception" in line for line in product) or any(
        line["level"] in ("WARNING", "ERROR") for line in product
    )


def test_an_exception_is_one_line_with_its_traceback():
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.json_logs")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError("broken\nacross lines")
        except ValueError:
            logger.error("it failed: %s", "why")
            logger.exception("it failed: %s", "why")
    finally:
        logger.removeHandler(handler)

    first, second = buffer.getvalue().splitlines()
    assert "exception" not in json.loads(first)
    entry = json.loads(second)
    assert entry["level"] == "ERROR" and entry["logger"] == "tests.json_logs"
    assert entry["message"] == "it failed: why"
    assert "ValueError: broken\nacross lines" in entry["exception"]
    assert "request_id" not in entry and "task_id" not in entry


def test_log_format_is_checked():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="LOG_FORMAT"):
        logging_config("xml", "INFO")
