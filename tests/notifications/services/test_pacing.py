"""Per-mailbox pacing: never more than the budget in any window of its length, as
close to it as that allows, shared by every worker, in the database or in Redis,
with Microsoft's limits as budgets; after a throttle the mailbox learns the limit it
met and grows back from it. Against the sandbox's Exchange-like SMTP limit and its
Graph budget, a batch beyond the budget is paced instead of running into "451 4.3.2"
or 429."""

import math
import random
import time
import uuid
from datetime import datetime

import pytest
from django.core.cache import caches

from integrations.providers.microsoft_azure_mail import MicrosoftAzureMailProvider
from integrations.providers.smtp import SmtpProvider
from integrations.services import provider_for
from notifications.models import (
    Delivery,
    DeliveryStatus,
    EventKind,
    MailboxBudget,
    ToolLink,
)
from notifications.services import deliveries_send, event_emit
from notifications.services.pacing import (
    _SCALARS,
    MIN_CUT,
    SLOTS,
    Budget,
    _Bucket,
    _redis_key,
    mailbox_budget,
    mailbox_slot_release,
    mailbox_slot_take,
    mailbox_slots_flush,
)
from tests.notifications.conftest import settle
from tests.tools import activate_azure_mail

pytestmark = pytest.mark.django_db

MAILBOX = "Sender@Contoso.test"


def budget(**overrides) -> Budget:
    values = dict(messages=30, window=60.0, concurrency=4, hold=30.0, adapt_every=60.0)
    return Budget(**{**values, **overrides})


# --- the budgets: Microsoft's limits, the tool's own, the operator's ------------------


def test_budgets_are_microsofts_published_limits(smtp_link, graph_tool):
    smtp = mailbox_budget(provider_for(smtp_link.integration))
    assert (smtp.messages, smtp.window, smtp.concurrency) == (30, 60.0, 1)
    graph = mailbox_budget(provider_for(graph_tool))
    assert (graph.messages, graph.window, graph.concurrency) == (10_000, 600.0, 4)
    delegated_api = SmtpProvider(
        config={"auth_type": "oauth_delegated", "communication_type": "api"}, secrets={}
    )
    assert mailbox_budget(delegated_api) == graph  # Graph /me/sendMail
    assert (smtp.rate, graph.rate) == (0.5, 10_000 / 600)


def test_a_tools_own_messages_per_minute_wins_over_the_setting(settings):
    own = MicrosoftAzureMailProvider(config={"messages_per_minute": 120}, secrets={})
    default = MicrosoftAzureMailProvider(config={}, secrets={})
    assert (mailbox_budget(own).messages, mailbox_budget(own).window) == (120, 60.0)
    assert mailbox_budget(own).concurrency == 4  # Graph's, whatever the rate
    settings.NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE = 10
    assert mailbox_budget(default).messages == 10
    assert mailbox_budget(own).messages == 120
    settings.NOTIFICATIONS_PACING_WINDOW_SECONDS = 2
    assert mailbox_budget(own).window == 2.0
    settings.NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE = 0
    assert mailbox_budget(own) is None  # pacing off


# --- the rule, on a simulated clock ---------------------------------------------------


def greedy(plan, *, seconds, latency, seed=0, later=False):
    """Senders that take every slot the bucket gives, on a fine simulated clock;
    each request reaches the server at a random moment between its take and its
    answer (`latency` later at most). Returns the arrival times and the bucket."""
    rng = random.Random(seed)
    bucket, arrivals, flying, pending = _Bucket(), [], [], []
    step, now, number = min(plan.window / 4000, latency / 4), 0.0, 0
    while now < seconds:
        for answer, slot_id in [f for f in flying if f[0] <= now]:
            flying.remove((answer, slot_id))
            if later:  # held back until the next take, counted as of its answer
                pending.append((slot_id, answer))
            else:
                bucket.release(now, plan, slot_id, None)
        while True:
            for slot_id, answer in pending:
                bucket.release(now, plan, slot_id, None, now - answer)
            pending = []
            if bucket.take(now, plan, str(number))[1]:
                break
            answer = now + rng.uniform(0.2, 1.0) * latency
            arrivals.append(rng.uniform(now, answer))
            flying.append((answer, str(number)))
            number += 1
        now += step
    return sorted(arrivals), bucket


def most_in_any_window(times, window) -> int:
    start, most = 0, 0
    for end, stamp in enumerate(times):
        while times[start] <= stamp - window:
            start += 1
        most = max(most, end - start + 1)
    return most


@pytest.mark.parametrize(
    ("messages", "window", "concurrency", "latency"),
    [
        (1, 1.0, 1, 0.01),
        (3, 1.0, 1, 0.05),
        (20, 2.0, 4, 0.01),  # bench/throttling.py's scaled-down Graph budget
        (30, 60.0, 1, 0.5),  # Exchange Online SMTP
        (95, 1.0, 4, 0.002),
        (10_000, 600.0, 4, 0.05),  # Graph, with a fast server
    ],
)
@pytest.mark.parametrize("later", [False, True])
def test_no_window_ever_sees_more_than_the_budget_and_a_backlog_uses_it(
    messages, window, concurrency, latency, later
):
    """However late a request reaches the server within its round trip, no window
    of the budget's length sees more than the budget; a backlog goes out at the
    budget's rate less one slot and one round trip per window."""
    plan = budget(messages=messages, window=window, concurrency=concurrency)
    seconds = (2 if messages > 1000 else 6) * window
    arrivals, bucket = greedy(plan, seconds=seconds, latency=latency, later=later)
    assert most_in_any_window(arrivals, window) <= messages
    # Each message of a window waits for the one a budget before it: its answer,
    # the window, the rest of its slot, a round trip, one step of the clock.
    cycle = window + window / SLOTS + latency + min(window / 4000, latency / 4)
    assert len(arrivals) >= messages * math.floor(seconds / cycle)
    # The state does not grow with the messages sent.
    assert len(bucket.h) <= len(_SCALARS) + concurrency + SLOTS + 2


def test_a_budget_of_one_per_window_sends_one_per_window():
    plan = budget(messages=1, window=10.0, concurrency=4)
    bucket = _Bucket()
    assert bucket.take(0.0, plan, "a") == (0.0, "")
    assert bucket.take(0.1, plan, "b")[1] == "busy"  # in flight fills the window
    bucket.release(0.2, plan, "a", None)
    wait, reason = bucket.take(0.3, plan, "b")
    assert reason == "budget"
    # Once the slot of the answer (0.2 s) is all older than 10 s.
    assert wait == pytest.approx(10.0)
    assert bucket.take(10.35, plan, "b") == (0.0, "")


def test_a_killed_workers_slot_counts_until_a_window_after_it_lapsed():
    plan = budget(messages=2, window=10.0, concurrency=2, hold=1.0)
    bucket = _Bucket()
    assert bucket.take(0.0, plan, "dead") == (0.0, "")
    assert bucket.take(0.0, plan, "alive") == (0.0, "")
    bucket.release(0.1, plan, "alive", None)
    # "dead" lapses at 1.0: its message may have reached the server.
    assert bucket.take(1.5, plan, "next")[1] == "budget"
    assert bucket.take(11.2, plan, "next") == (0.0, "")


def test_a_new_budget_starts_afresh_but_keeps_what_was_counted():
    small = budget(messages=2, window=10.0)
    bucket = _Bucket()
    for name in "ab":
        assert bucket.take(0.0, small, name) == (0.0, "")
        bucket.release(0.0, small, name, None)
    # The tool's budget is raised: what went out still counts.
    larger = budget(messages=3, window=10.0)
    assert bucket.take(1.0, larger, "c") == (0.0, "")
    assert bucket.take(1.0, larger, "d")[1] == "budget"


def test_after_a_throttle_the_limit_met_is_learned_and_grows_back():
    """The server took 5 and then said "again in 0.9 s": 5 per second (from the
    first of their answers to the end of the Retry-After) is what it allows."""
    plan = budget(messages=70, window=10.0, concurrency=4, adapt_every=5.0)
    bucket = _Bucket()
    for i in range(5):
        assert bucket.take(0.02 * i, plan, str(i)) == (0.0, "")
        bucket.release(0.02 * i + 0.01, plan, str(i), None)
    assert bucket.take(0.1, plan, "x") == (0.0, "")
    assert bucket.take(0.1, plan, "y") == (0.0, "")
    bucket.release(0.11, plan, "x", 0.9)  # 429, Retry-After: 0.9
    assert (bucket.h["ln"], bucket.h["lw"]) == (5.0, pytest.approx(1.0))
    assert bucket.take(0.5, plan, "z") == (pytest.approx(0.51), "paused")
    bucket.release(0.12, plan, "y", 0.9)  # the same wall: learned once
    assert bucket.h["ln"] == 5.0
    # What went before counts as of the throttle, in the learned window.
    assert bucket.take(1.05, plan, "z")[1] == "budget"
    # Then 5 in any second, and a wait.
    now = 1.15
    for i in range(5):
        assert bucket.take(now, plan, f"a{i}") == (0.0, "")
        bucket.release(now + 0.01, plan, f"a{i}", None)
    wait, reason = bucket.take(now + 0.1, plan, "a5")
    assert reason == "budget"
    assert 0.9 <= wait <= 1.0 + 1.0 / SLOTS
    # 5 s without a throttle add back a tenth (at least one message) ...
    assert bucket.take(6.5, plan, "b") == (0.0, "")
    bucket.release(6.5, plan, "b", None)
    assert bucket.h["ln"] == 6.0
    assert bucket.take(8.0, plan, "c") == (0.0, "")
    bucket.release(8.0, plan, "c", None)
    assert bucket.h["ln"] == 6.0  # not 5 s since the last step
    # ... and once it allows the budget's rate (7 a second), the budget it is.
    assert bucket.take(12.0, plan, "d") == (0.0, "")
    bucket.release(12.0, plan, "d", None)
    assert bucket.h["ln"] == 0.0
    assert bucket.limit(plan) == (70.0, 10.0)


def test_a_throttle_always_cuts_the_rate_that_met_it():
    """A throttle after a long run at the budget's own rate (the server's limit is
    a little lower): at least MIN_CUT below that rate, never above it."""
    plan = budget(messages=10, window=1.0, concurrency=1)
    bucket = _Bucket()
    now = 0.0
    for i in range(100):  # 10 a second for 10 seconds
        assert bucket.take(now, plan, str(i)) == (0.0, ""), i
        bucket.release(now + 0.001, plan, str(i), None)
        now += 0.1 + 2 / SLOTS / 10
    assert bucket.take(now, plan, "x") == (0.0, "")
    bucket.release(now + 0.001, plan, "x", 0.05)
    assert bucket.h["ln"] / bucket.h["lw"] <= (1 - MIN_CUT) * plan.rate


def test_throttled_before_anything_was_accepted_halves():
    plan = budget(messages=40, window=10.0)
    bucket = _Bucket()
    assert bucket.take(0.0, plan, "a") == (0.0, "")
    bucket.release(0.1, plan, "a", 2.0)
    assert bucket.limit(plan) == (20.0, 10.0)


# --- the state, in the database and in Redis ------------------------------------------


class DatabaseStore:
    name = "database"

    def __init__(self, integration_id):
        self.integration_id = integration_id

    def state(self) -> dict:
        row = MailboxBudget.objects.get(
            integration_id=self.integration_id, mailbox=MAILBOX.lower()
        )
        return {k: v for k, v in row.in_flight.items()}

    def counted(self) -> float:
        return sum(counted(row.in_flight) for row in MailboxBudget.objects.all())

    def size(self) -> tuple[int, int]:
        """Rows, and in-flight slots in them."""
        rows = list(MailboxBudget.objects.all())
        return len(rows), sum(
            sum(k.startswith("s:") for k in row.in_flight) for row in rows
        )


class RedisStore:
    name = "redis"

    def __init__(self, integration_id, prefix):
        self.integration_id = integration_id
        self.prefix = prefix
        self.cache = caches["default"]
        self.client = self.cache._cache.get_client()

    def state(self) -> dict:
        key = _redis_key(self.cache, self.integration_id, MAILBOX.lower())
        return {k.decode(): float(v) for k, v in self.client.hgetall(key).items()}

    def counted(self) -> float:
        return sum(
            counted({k.decode(): float(v) for k, v in self.client.hgetall(key).items()})
            for key in self.client.keys(f"{self.prefix}*")
        )

    def size(self) -> tuple[int, int]:
        """Keys, and in-flight slots in them."""
        keys = self.client.keys(f"{self.prefix}*")
        slots = sum(
            sum(k.startswith(b"s:") for k in self.client.hkeys(key)) for key in keys
        )
        return len(keys), slots


@pytest.fixture(params=["database", pytest.param("redis", marks=pytest.mark.services)])
def store(request, settings, graph_tool):
    if request.param == "database":
        yield DatabaseStore(graph_tool.pk)
        return
    redis_url = request.getfixturevalue("redis_url")
    prefix = f"test-pacing-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": prefix,
        }
    }
    redis = RedisStore(graph_tool.pk, prefix)
    try:
        yield redis
    finally:
        for key in redis.client.keys(f"{prefix}*"):
            redis.client.delete(key)


def take(store, plan):
    return mailbox_slot_take(
        integration_id=store.integration_id, mailbox=MAILBOX, budget=plan
    )


def release(slot, plan, **kwargs):
    mailbox_slot_release(slot=slot, budget=plan, **kwargs)


def in_flight(state) -> int:
    return sum(k.startswith("s:") for k in state)


def counted(state) -> float:
    return sum(v for k, v in state.items() if k.startswith("c:"))


def test_the_whole_budget_then_a_wait_shared_by_every_worker(store):
    plan = budget(messages=3, window=1.0)
    started = time.monotonic()
    for _ in range(3):  # the whole budget at once (each call could be another worker)
        slot = take(store, plan)
        assert slot.taken
        release(slot, plan)
    refused = take(store, plan)
    assert (refused.taken, refused.reason) == (False, "budget")
    # Until the first of them is a window (and at most a slot) old.
    assert 1.0 - (time.monotonic() - started) <= refused.wait <= 1.0 + 1.0 / SLOTS
    assert refused.free_at is not None
    # Another mailbox has its own.
    other = mailbox_slot_take(
        integration_id=store.integration_id, mailbox="other@contoso.test", budget=plan
    )
    assert other.taken
    deadline = time.monotonic() + 5
    while not (slot := take(store, plan)).taken:
        assert slot.reason == "budget"
        assert time.monotonic() < deadline
        time.sleep(min(slot.wait, 0.05))
    assert time.monotonic() - started >= 1.0


def test_at_most_the_concurrency_in_flight_and_a_dead_workers_slots_lapse(store):
    plan = budget(messages=1000, window=1.0, concurrency=2, hold=0.3)
    first, second = take(store, plan), take(store, plan)
    assert first.taken and second.taken
    busy = take(store, plan)
    assert (busy.taken, busy.reason) == (False, "busy")
    release(first, plan)
    third = take(store, plan)
    assert third.taken
    assert in_flight(store.state()) == 2
    # Never released (their worker was killed): both lapse after `hold`, and two
    # new submissions may be under way; the lapsed ones count as sent.
    deadline, fresh = time.monotonic() + 5, []
    while len(fresh) < 2:
        assert time.monotonic() < deadline
        slot = take(store, plan)
        if slot.taken:
            fresh.append(slot)
        else:
            assert slot.reason == "busy"
            time.sleep(0.02)
    state = store.state()
    assert in_flight(state) == 2
    assert counted(state) == 3  # first, and second and third when they lapsed
    assert not take(store, plan).taken


def test_answers_held_back_count_as_of_their_answer(store):
    """`later=True`: the slot stays in flight for every worker until this process
    next takes one (or flushes), and its message counts from its answer."""
    plan = budget(messages=2, window=1.0, concurrency=2)
    first = take(store, plan)
    answered = time.monotonic()
    release(first, plan, later=True)
    assert in_flight(store.state()) == 1  # held back
    time.sleep(0.3)
    second = take(store, plan)  # writes the first's answer, then takes
    assert second.taken
    state = store.state()
    assert (in_flight(state), counted(state)) == (1, 1)
    release(second, plan, later=True)
    mailbox_slots_flush()
    state = store.state()
    assert (in_flight(state), counted(state)) == (0, 2)
    # The window is full until the first answer is a window (and a slot) old,
    # not a window after the write 0.3 s later.
    refused = take(store, plan)
    assert refused.reason == "budget"
    assert refused.wait <= 1.0 + 1.0 / SLOTS - (time.monotonic() - answered) + 0.05


def test_a_throttle_pauses_every_worker_and_the_limit_met_is_learned_once(store):
    plan = budget(messages=100, window=10.0, adapt_every=0.5)
    for _ in range(4):
        slot = take(store, plan)
        release(slot, plan)
    slot, other = take(store, plan), take(store, plan)
    release(slot, plan, throttled_for=0.4)
    state = store.state()
    # 4 accepted, then "again in 0.4 s": at most 4 per (a second at least).
    assert (state["ln"], state["lw"]) == (4.0, 1.0)
    paused = take(store, plan)
    assert (paused.taken, paused.reason) == (False, "paused")
    assert 0.3 <= paused.wait <= 0.4
    # The other submission in flight met the same wall: learned once.
    release(other, plan, throttled_for=0.4)
    assert store.state()["ln"] == 4.0
    deadline, sent = time.monotonic() + 10, 0
    while sent < 5:
        assert time.monotonic() < deadline
        slot = take(store, plan)
        if not slot.taken:
            assert slot.reason in ("paused", "budget")
            time.sleep(min(slot.wait, 0.05))
            continue
        release(slot, plan)
        sent += 1
    # 5 went: the learned window (1 s) had to pass after the first 4 had.
    assert store.state()["ln"] in (4.0, 5.0)  # grown back by one after 0.5 s


def test_one_state_however_many_messages(store):
    plan = budget(messages=10_000, window=600.0)
    for _ in range(200):
        slot = take(store, plan)
        assert slot.taken
        release(slot, plan, later=True)
    mailbox_slots_flush()
    assert store.size() == (1, 0)
    state = store.state()
    assert counted(state) == 200
    assert len(state) <= len(_SCALARS) + SLOTS + 1


# --- against the sandbox --------------------------------------------------------------

BUDGET = 3
WINDOW = 1.0  # seconds: Exchange's minute, shortened for the test


@pytest.fixture
def exchange_limit(sandbox, settings):
    """The sandbox refuses a mailbox's 4th SMTP message per second with 4.3.2, and
    the product paces each mailbox to 3 messages per second."""
    sandbox.control(
        "PUT",
        "/_sandbox/throttling",
        {
            "enabled": True,
            "smtp_messages_per_minute": BUDGET,
            "smtp_window_seconds": WINDOW,
        },
    )
    settings.NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE = BUDGET
    settings.NOTIFICATIONS_PACING_WINDOW_SECONDS = WINDOW
    return sandbox


def emit(project, count, capture):
    with capture(execute=True):
        for i in range(count):
            event_emit(
                project=project, kind=EventKind.SCAN_COMPLETED, payload={"new": i}
            )
    return list(Delivery.objects.order_by("pk"))


def expected_ids(deliveries):
    return {f"<delivery-{d.uuid}@appsec.example.test>" for d in deliveries}


def received(sandbox) -> list[float]:
    """When the sandbox received each message (one per Message-ID), sorted."""
    first = {}
    for message in sandbox.messages():
        at = datetime.fromisoformat(message["received_at"].replace("Z", "+00:00"))
        first.setdefault(message["message_id"], at.timestamp())
    return sorted(first.values())


def test_batch_beyond_the_budget_is_paced_in_the_task_without_4_3_2(
    exchange_limit, project, smtp_link, django_capture_on_commit_callbacks
):
    started = time.monotonic()
    final = emit(project, 8, django_capture_on_commit_callbacks)
    # Waits for the window (a second here) are spent in the task itself.
    assert [d.status for d in final] == [DeliveryStatus.SENT] * 8
    assert [(d.attempts, d.throttle_count, d.error_code) for d in final] == [
        (1, 0, "")
    ] * 8
    assert {m["message_id"] for m in exchange_limit.messages()} == expected_ids(final)
    assert exchange_limit.counters()["smtp_messages"] == 8
    assert exchange_limit.counters()["smtp_throttled"] == 0
    # 3 at once, 3 a second later, 2 a second after that.
    assert time.monotonic() - started >= 2 * WINDOW
    assert most_in_any_window(received(exchange_limit), WINDOW) <= BUDGET
    assert MailboxBudget.objects.count() == 1


def test_a_longer_wait_for_the_budget_defers_to_the_queue(
    exchange_limit, project, smtp_link, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFICATIONS_INLINE_RETRY_AFTER_SECONDS = 0.1
    rows = emit(project, 5, django_capture_on_commit_callbacks)
    assert [d.status for d in rows].count(DeliveryStatus.SENT) == BUDGET
    waiting = [d for d in rows if d.status == DeliveryStatus.PENDING]
    assert len(waiting) == 5 - BUDGET
    # Not attempted: no attempt used, no error.
    assert all(d.attempts == 0 and d.error_code == "" for d in waiting)
    final = settle(timeout=30)
    assert [(d.status, d.attempts) for d in final] == [(DeliveryStatus.SENT, 1)] * 5
    assert exchange_limit.counters()["smtp_messages"] == 5
    assert exchange_limit.counters()["smtp_throttled"] == 0


def test_without_pacing_the_same_batch_runs_into_4_3_2_which_is_no_attempt(
    exchange_limit, project, smtp_link, settings, django_capture_on_commit_callbacks
):
    # The control experiment: the sandbox's limit is real.
    settings.NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE = 0
    rows = emit(project, 5, django_capture_on_commit_callbacks)
    refused = Delivery.objects.get(pk=rows[BUDGET].pk)
    assert refused.status == DeliveryStatus.PENDING
    assert refused.attempts == 0  # a throttle is not an attempt
    assert refused.throttle_count == 1
    assert refused.error_code == "throttled"
    assert "4.3.2" in refused.request_id


def graph_budget(sandbox, settings, *, told: bool):
    """The sandbox allows 15 Graph requests per second per mailbox; told, the tool
    knows it (15 "per minute" of a second); not told, Microsoft's real limits (and
    a real minute between recovery steps)."""
    sandbox.control(
        "PUT",
        "/_sandbox/throttling",
        {"enabled": True, "graph_requests_per_window": 15, "window_seconds": 1.0},
    )
    if not told:
        return activate_azure_mail(sandbox.seed)
    settings.NOTIFICATIONS_PACING_WINDOW_SECONDS = 1.0
    return activate_azure_mail(sandbox.seed, messages_per_minute=15)


def test_told_the_graph_budget_no_429_and_no_window_over_it(
    sandbox, project, settings, django_capture_on_commit_callbacks
):
    tool = graph_budget(sandbox, settings, told=True)
    ToolLink.objects.create(
        project=project,
        integration=tool,
        minimum_severity="info",
        notify_scan_completed=True,
    )
    started = time.monotonic()
    emit(project, 50, django_capture_on_commit_callbacks)
    final = settle(timeout=60)
    elapsed = time.monotonic() - started
    assert [(d.status, d.attempts, d.throttle_count) for d in final] == [
        (DeliveryStatus.SENT, 1, 0)
    ] * 50
    assert sandbox.counters()["graph_throttled"] == 0
    times = received(sandbox)
    assert len(times) == 50
    assert most_in_any_window(times, 1.0) <= 15
    # 15, 15, 15 and 5: the last 5 go after three windows (and the waits).
    assert elapsed >= 3.0


def test_not_told_the_graph_budget_learns_it_from_the_first_429(
    sandbox, project, settings, django_capture_on_commit_callbacks
):
    """Microsoft's defaults (10,000 per 10 minutes) against a server allowing 15 a
    second: the first burst meets the wall once; from then on the mailbox keeps to
    what it learned, and every message goes out once."""
    tool = graph_budget(sandbox, settings, told=False)
    ToolLink.objects.create(
        project=project,
        integration=tool,
        minimum_severity="info",
        notify_scan_completed=True,
    )
    emit(project, 60, django_capture_on_commit_callbacks)
    final = settle(timeout=60)
    assert {(d.status, d.attempts) for d in final} == {(DeliveryStatus.SENT, 1)}
    messages = sandbox.messages()
    assert sorted(m["message_id"] for m in messages) == sorted(expected_ids(final))
    # The first burst's wall (up to 4 in flight met it), then none.
    assert 1 <= sandbox.counters()["graph_throttled"] <= 4
    row = MailboxBudget.objects.get(integration=tool)
    assert 0 < row.in_flight["ln"] <= 15
    assert most_in_any_window(received(sandbox)[15:], 1.0) <= 15
    assert row.in_flight["lw"] >= 1.0


def test_the_state_does_not_grow_with_the_messages_sent(
    store, sandbox, project, link, django_capture_on_commit_callbacks
):
    """Graph at its default budget (10,000 per 10 minutes): after 40 messages, one
    row (or one Redis key) and no slot left behind."""
    rows = emit(project, 40, django_capture_on_commit_callbacks)
    assert {d.status for d in rows} == {DeliveryStatus.SENT}
    assert store.size() == (1, 0)
    assert store.counted() == 40
    assert len(sandbox.messages()) == 40
    deliveries_send()  # nothing due: nothing new in the store either
    assert store.size() == (1, 0)
