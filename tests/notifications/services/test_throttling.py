"""Throttling against the sandbox: a throttle (429, SMTP 4.3.2 or 421) delays a
delivery but is no attempt; a delivery fails for it only when too old, with words
a person can act on; a short Retry-After is waited out in the task; after a 429 the
mailbox's budget adapts; a tool's own budget paces it; and two real workers never
have more than Graph's 4 requests in flight for one mailbox."""

import json
import signal
import subprocess
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from integrations.forms.smtp import SmtpForm
from integrations.providers.graph import graph_client
from integrations.providers.limits import GRAPH
from integrations.services import integration_save
from notifications.models import Delivery, DeliveryStatus, EventKind, ToolLink
from notifications.services import deliveries_send, event_emit
from notifications.troubleshooting import delivery_troubleshooting
from tests.integrations.smtp_support import drawer_data
from tests.notifications.conftest import settle
from tests.notifications.test_worker import (
    expected_ids,
    run,
    start_worker,
    status,
    wait_for,
    worker_env,
)
from tests.tools import activate_azure_mail

pytestmark = pytest.mark.django_db

EXCHANGE_4_3_2 = (
    "451 4.3.2 Message submission rate for this client has exceeded the configured "
    "limit"
)


def write(project, count) -> list[int]:
    """`count` committed deliveries, not sent yet (their tasks are not run)."""
    with transaction.atomic():
        for i in range(count):
            event_emit(
                project=project, kind=EventKind.SCAN_COMPLETED, payload={"new": i}
            )
    return list(
        Delivery.objects.filter(status=DeliveryStatus.PENDING)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def emit(project, count, capture) -> list[Delivery]:
    """`count` deliveries, committed; the immediate task sends them at once."""
    with capture(execute=True):
        ids = write(project, count)
    return list(Delivery.objects.filter(pk__in=ids).order_by("pk"))


def throttles(ids) -> int:
    return sum(
        Delivery.objects.filter(pk__in=ids).values_list("throttle_count", flat=True)
    )


def link_tool(project, tool) -> ToolLink:
    return ToolLink.objects.create(
        project=project,
        integration=tool,
        minimum_severity="info",
        notify_scan_completed=True,
    )


def smtp_tool(sandbox, **drawer):
    form = SmtpForm(drawer_data(sandbox, "oauth_app", **drawer))
    assert form.is_valid(), form.errors
    return integration_save(
        provider_key="smtp", cleaned_data=form.cleaned_data, actor=None
    )


# --- a throttle is not an attempt -------------------------------------------------------


def test_graph_429s_do_not_use_up_attempts(sandbox, project, link, settings):
    settings.NOTIFICATIONS_MAX_ATTEMPTS = 2
    settings.NOTIFICATIONS_INLINE_RETRY_AFTER_SECONDS = 0  # every one via the queue
    sandbox.add_fault(target="graph", status=429, retry_after="0.05", count=5)
    sandbox.add_fault(target="graph", status=503, count=1)
    write(project, 1)
    (delivery,) = settle()
    assert delivery.status == DeliveryStatus.SENT
    # Five throttles and a 503: the 503 and the success are the two attempts.
    assert (delivery.attempts, delivery.throttle_count) == (2, 5)
    assert len(sandbox.messages()) == 1


@pytest.mark.parametrize(
    "reply",
    [EXCHANGE_4_3_2, "421 4.3.2 Service not available, closing transmission channel"],
)
def test_exchange_throttling_replies_do_not_use_up_attempts(
    sandbox, project, smtp_link, settings, reply
):
    settings.NOTIFICATIONS_MAX_ATTEMPTS = 1
    # Exchange's minute, shortened: each throttle halves the mailbox's rate.
    settings.NOTIFICATIONS_PACING_WINDOW_SECONDS = 0.1
    sandbox.add_fault(target="smtp", smtp_reply=reply, smtp_stage="data", count=3)
    write(project, 2)
    final = settle()
    assert [d.status for d in final] == [DeliveryStatus.SENT] * 2
    assert [d.attempts for d in final] == [1, 1]
    assert sum(d.throttle_count for d in final) == 3
    assert len(sandbox.messages()) == 2


def test_throttled_for_longer_than_the_max_age_fails_with_words(
    sandbox, project, link, settings, client, owner
):
    settings.NOTIFICATIONS_THROTTLE_MAX_AGE_SECONDS = 0.5
    settings.NOTIFICATIONS_INLINE_RETRY_AFTER_SECONDS = 0
    sandbox.add_fault(target="graph", status=429, retry_after="0.1", probability=1.0)
    write(project, 1)
    (delivery,) = settle()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.error_code == "throttled_too_long"
    assert delivery.attempts == 0  # never an attempt, only throttles
    assert delivery.throttle_count >= 3
    assert delivery.created_at <= timezone.now() - timedelta(seconds=0.5)
    words = delivery_troubleshooting("throttled_too_long")
    assert "Microsoft kept refusing this mailbox's messages for 24 hours" in words.text
    client.force_login(owner)
    page = client.get(reverse("projects:deliveries", kwargs={"slug": project.slug}))
    assert str(words.title) in page.content.decode()


def test_throttles_within_the_max_age_are_retried_however_many(
    sandbox, project, link, settings
):
    settings.NOTIFICATIONS_MAX_ATTEMPTS = 1
    settings.NOTIFICATIONS_INLINE_RETRY_AFTER_SECONDS = 0
    sandbox.add_fault(target="graph", status=429, retry_after="0.02", count=12)
    write(project, 1)
    (delivery,) = settle()
    assert delivery.status == DeliveryStatus.SENT
    assert (delivery.attempts, delivery.throttle_count) == (1, 12)


# --- Retry-After: short ones in the task, longer ones in the queue ------------------


def test_a_short_retry_after_is_waited_out_in_the_task_on_the_same_connection(
    sandbox, project, link
):
    sandbox.add_fault(target="graph", status=429, retry_after="0.5", count=1)
    ids = write(project, 3)
    tokens = sandbox.counters()["token_requests"]["client_credentials"]
    started = time.monotonic()
    summary = deliveries_send(delivery_ids=ids)
    assert time.monotonic() - started >= 0.5
    # All sent by this task: nothing rescheduled through the queue.
    assert (summary.sent, summary.retrying, summary.deferred) == (3, 0, 0)
    assert summary.retry_at == {}
    final = list(Delivery.objects.order_by("pk"))
    assert [(d.status, d.attempts) for d in final] == [(DeliveryStatus.SENT, 1)] * 3
    assert [d.throttle_count for d in final] == [1, 0, 0]
    # The same token (and session) went on: no new token request.
    assert sandbox.counters()["token_requests"]["client_credentials"] == tokens + 1
    assert len(sandbox.messages()) == 3


def test_a_long_retry_after_goes_back_to_the_queue_without_an_attempt(
    sandbox, project, link, settings
):
    settings.NOTIFICATIONS_INLINE_RETRY_AFTER_SECONDS = 3
    sandbox.add_fault(target="graph", status=429, retry_after="4", count=1)
    ids = write(project, 2)
    summary = deliveries_send(delivery_ids=ids)
    assert set(summary.retry_at) == set(ids)  # one throttled, the other waits too
    first, second = Delivery.objects.order_by("pk")
    assert (first.status, first.attempts, first.throttle_count) == (
        DeliveryStatus.PENDING,
        0,
        1,
    )
    assert first.next_attempt_at >= timezone.now() + timedelta(seconds=3.5)
    assert (second.status, second.attempts) == (DeliveryStatus.PENDING, 0)
    assert sandbox.messages() == []


def test_a_batch_waiting_with_its_throttled_tool_is_given_back_in_one_update(
    sandbox, project, link, settings
):
    # The first of 30 claimed rows meets a long Retry-After: the 29 others, not
    # attempted, go back to the queue together (one UPDATE), all due when it ends.
    settings.NOTIFICATIONS_INLINE_RETRY_AFTER_SECONDS = 3
    settings.NOTIFICATIONS_CLAIM_BATCH = 30
    sandbox.add_fault(target="graph", status=429, retry_after="4", count=1)
    ids = write(project, 30)
    with CaptureQueriesContext(connection) as queries:
        summary = deliveries_send(delivery_ids=ids)

    assert set(summary.retry_at) == set(ids)
    # Given back: pending and unclaimed again, with no outcome (no error code).
    releases = [
        q["sql"]
        for q in queries
        if q["sql"].startswith('UPDATE "notifications_delivery"')
        and "\"claimed_by\" = ''" in q["sql"]
        and "\"status\" = 'pending'" in q["sql"]
        and '"error_code"' not in q["sql"].split("WHERE")[0]
    ]
    assert len(releases) == 1, releases
    rows = list(Delivery.objects.filter(pk__in=ids).order_by("pk"))
    assert {(d.status, d.attempts, d.claimed_by) for d in rows} == {
        (DeliveryStatus.PENDING, 0, "")
    }
    first, *others = rows
    assert first.throttle_count == 1
    assert {d.next_attempt_at for d in others} == {summary.retry_at[others[0].pk]}
    assert all(d.next_attempt_at >= first.next_attempt_at for d in others)
    assert sandbox.messages() == []


# --- the budget adapts --------------------------------------------------------------


def test_after_a_429_the_limit_met_is_learned_and_the_next_burst_keeps_to_it(
    sandbox, project, settings, django_capture_on_commit_callbacks
):
    """The tool is told 250 messages per (10 s) minute, 25 a second; the sandbox
    allows 10 per second. The first burst runs into the wall once (with what was
    in flight beside it) and the mailbox learns 10 per second; the second keeps to
    that (no recovery step within the minute): no 429."""
    sandbox.control(
        "PUT",
        "/_sandbox/throttling",
        {"enabled": True, "graph_requests_per_window": 10, "window_seconds": 1.0},
    )
    settings.NOTIFICATIONS_PACING_WINDOW_SECONDS = 10.0
    link_tool(project, activate_azure_mail(sandbox.seed, messages_per_minute=250))
    bursts = []
    for _ in range(2):
        rows = emit(project, 30, django_capture_on_commit_callbacks)
        ids = [d.pk for d in rows]
        settle(timeout=60)  # a delivery throttled too often in a row is queued
        bursts.append(throttles(ids))
    first, second = bursts
    assert 1 <= first <= GRAPH.concurrency, bursts
    assert second == 0, bursts
    final = list(Delivery.objects.all())
    assert {(d.status, d.attempts) for d in final} == {(DeliveryStatus.SENT, 1)}
    assert len(sandbox.messages()) == 60


# --- a tool's own budget ------------------------------------------------------------


@pytest.mark.parametrize("messages_per_minute", ["4", ""])
def test_a_tools_own_budget_paces_it_under_a_stricter_server(
    sandbox, project, settings, messages_per_minute
):
    """A server that takes 4 messages a (1 s) minute, stricter than Exchange
    Online's 30: with its own "Messages per minute" the tool never meets the limit;
    with Microsoft's default it does (and still delivers everything)."""
    sandbox.control(
        "PUT",
        "/_sandbox/throttling",
        {"enabled": True, "smtp_messages_per_minute": 4, "smtp_window_seconds": 1.0},
    )
    settings.NOTIFICATIONS_PACING_WINDOW_SECONDS = 1.0
    tool = smtp_tool(sandbox, messages_per_minute=messages_per_minute)
    link_tool(project, tool)
    ids = write(project, 8)
    final = settle(timeout=30)
    assert [d.status for d in final] == [DeliveryStatus.SENT] * 8
    if messages_per_minute:
        assert throttles(ids) == 0
        assert sandbox.counters()["smtp_throttled"] == 0
    else:
        assert throttles(ids) > 0
    assert sandbox.counters()["smtp_messages"] == 8


# --- Graph's 4 at a time, across workers ------------------------------------------


def test_graph_sessions_pool_enough_connections_for_the_concurrency(sandbox):
    adapter = graph_client(sandbox.graph_host).session.get_adapter("https://")
    assert adapter._pool_maxsize >= GRAPH.concurrency


@pytest.fixture
def graph_in_flight(sandbox, monkeypatch):
    """The sandbox's own count of Graph requests in flight for one mailbox, and its
    peak, observed (the sandbox runs in this process)."""
    state = sandbox.ctx.state
    enter, leave = state.graph_enter, state.graph_leave
    lock, seen = threading.Lock(), {"now": 0, "peak": 0}

    def counting_enter(*args, **kwargs):
        entered = enter(*args, **kwargs)
        if entered:
            with lock:
                seen["now"] += 1
                seen["peak"] = max(seen["peak"], seen["now"])
        return entered

    def counting_leave(*args, **kwargs):
        with lock:
            seen["now"] -= 1
        return leave(*args, **kwargs)

    monkeypatch.setattr(state, "graph_enter", counting_enter)
    monkeypatch.setattr(state, "graph_leave", counting_leave)
    return seen


def overlapping_runs(env) -> bool:
    """Whether a `deliver` task of worker a ran while one of worker b did."""
    script = (
        "from django_tasks_db.models import DBTaskResult as R\n"
        "import json\n"
        "rows = R.objects.filter(task_path__endswith='.deliver')"
        ".exclude(started_at=None).exclude(finished_at=None)\n"
        "print(json.dumps([[r.worker_ids, r.started_at.timestamp(), "
        "r.finished_at.timestamp()] for r in rows]))\n"
    )
    output = run(env, "manage.py", "shell", "-c", script)
    runs = json.loads(output.strip().splitlines()[-1])
    a = [(s, f) for ids, s, f in runs if "a" in ids]
    b = [(s, f) for ids, s, f in runs if "b" in ids]
    return any(sa < fb and sb < fa for sa, fa in a for sb, fb in b)


def test_two_workers_never_have_more_than_4_requests_in_flight_for_a_mailbox(
    sandbox, tmp_path, graph_in_flight
):
    count = 60
    env = worker_env(
        sandbox,
        tmp_path,
        f"sqlite:///{tmp_path / 'concurrency.sqlite3'}",
        NOTIFICATIONS_LEASE_SECONDS="30",
        NOTIFICATIONS_CLAIM_BATCH="4",
    )
    # 6 transactions: 6 tasks, for both workers to take.
    run(env, "-m", "tests.notifications.worker_script", "setup", str(count), "6")
    # Every sendMail takes a while: each worker alone would keep 4 in flight.
    sandbox.add_fault(target="graph", delay=0.15, probability=1.0)
    workers = [start_worker(env, "--worker-id", name) for name in ("a", "b")]
    try:
        assert wait_for(
            lambda: len(sandbox.messages()) >= count, timeout=120, interval=0.2
        ), status(env)
        assert wait_for(
            lambda: {d["status"] for d in status(env)["deliveries"]} == {"sent"},
            timeout=60,
            interval=0.3,
        ), status(env)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                worker.kill()
    state = status(env)
    assert overlapping_runs(env), "both workers should have been sending at once"
    assert graph_in_flight["peak"] == GRAPH.concurrency
    assert sandbox.counters()["graph_throttled"] == 0
    messages = sandbox.messages()
    assert len(messages) == count
    assert {m["message_id"] for m in messages} == expected_ids(state)
    assert all(d["attempts"] == 1 for d in state["deliveries"])


def test_a_run_keeps_4_graph_sends_in_flight_with_no_sending_thread(
    sandbox, project, link, graph_in_flight
):
    """The run starts each sendMail and reads its answer later, so with Graph
    slow to answer it has the mailbox's 4 in flight: side by side on its own
    thread, not on sending threads."""
    ids = write(project, 12)
    sandbox.add_fault(target="graph", delay=0.2, probability=1.0)
    threads = {}

    def observe():
        for thread in threading.enumerate():
            threads[thread.ident] = thread.name

    enter = sandbox.ctx.state.graph_enter
    sandbox.ctx.state.graph_enter = lambda *a, **k: observe() or enter(*a, **k)
    before = {thread.ident for thread in threading.enumerate()}

    summary = deliveries_send(delivery_ids=ids)

    assert summary.sent == 12
    assert graph_in_flight["peak"] == GRAPH.concurrency
    started = [name for ident, name in threads.items() if ident not in before]
    # Only the run's lease heartbeat.
    assert len(started) <= 1, started
    assert len(sandbox.messages()) == 12
