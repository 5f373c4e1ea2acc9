"""Per-mailbox pacing: a token bucket per (tool, mailbox) shared by every worker, in
the database or in Redis, with Microsoft's limits as budgets; against the sandbox's
Exchange-like SMTP limit, a batch beyond the budget is paced instead of running into
"451 4.3.2"."""

import time
import uuid

import pytest
from django.core.cache import caches

from integrations.providers.microsoft_azure_mail import MicrosoftAzureMailProvider
from integrations.providers.smtp import SmtpProvider
from integrations.services import provider_for
from notifications.models import Delivery, DeliveryStatus, EventKind, MailboxBudget
from notifications.services import deliveries_send, event_emit
from notifications.services.pacing import (
    FACTOR_STEP,
    Budget,
    _Bucket,
    _redis_key,
    mailbox_budget,
    mailbox_slot_release,
    mailbox_slot_take,
)
from tests.notifications.conftest import settle

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
    # The burst is a twentieth of the budget, the rest spread over the window.
    assert (smtp.capacity, smtp.rate) == (1.0, 29 / 60)
    assert (graph.capacity, graph.rate) == (500.0, 9500 / 600)


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


@pytest.mark.parametrize("messages", [1, 3, 10, 30, 95, 10_000])
def test_no_window_ever_sees_more_than_the_budget(messages):
    """Greedy senders, on a fine clock, against the bucket alone: in every window of
    the budget's length at most `messages` are taken, and over a long run about
    the whole budget is used."""
    window = 1.0
    plan = budget(messages=messages, window=window, concurrency=1)
    bucket, taken, now, step = _Bucket(), [], 0.0, window / 2000
    while now < 6 * window:
        while bucket.take(now, plan, "slot") == (0.0, ""):
            bucket.release(now, plan, "slot", throttled_for=None)
            taken.append(now)
        now += step
    start = 0
    for end, stamp in enumerate(taken):
        while taken[start] <= stamp - window:
            start += 1
        assert end - start + 1 <= messages
    per_window = (len(taken) - plan.capacity) / (6 * window)
    assert per_window >= 0.949 * messages or messages <= 10


# --- the bucket, in the database and in Redis -----------------------------------------


class DatabaseStore:
    name = "database"

    def __init__(self, integration_id):
        self.integration_id = integration_id

    def state(self) -> dict:
        row = MailboxBudget.objects.get(
            integration_id=self.integration_id, mailbox=MAILBOX.lower()
        )
        return {
            "factor": row.rate_factor,
            "resume_at": row.resume_at,
            "in_flight": len(row.in_flight),
        }

    def size(self) -> int:
        """Rows, and in-flight entries in them."""
        rows = list(MailboxBudget.objects.all())
        return len(rows), sum(len(row.in_flight) for row in rows)


class RedisStore:
    name = "redis"

    def __init__(self, integration_id, prefix):
        self.integration_id = integration_id
        self.prefix = prefix
        self.cache = caches["default"]
        self.client = self.cache._cache.get_client()

    def state(self) -> dict:
        key = _redis_key(self.cache, self.integration_id, MAILBOX.lower())
        raw = {k.decode(): v.decode() for k, v in self.client.hgetall(key).items()}
        return {
            "factor": float(raw.get("factor", 1)),
            "resume_at": float(raw.get("resume_at", 0)),
            "in_flight": sum(k.startswith("s:") for k in raw),
        }

    def size(self) -> int:
        """Keys, and in-flight entries in them."""
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


def test_burst_of_a_twentieth_then_the_rate_shared_by_every_worker(store):
    plan = budget(messages=60, window=60.0)
    for _ in range(3):  # the burst: 3 of 60 (each call could be another worker)
        slot = take(store, plan)
        assert slot.taken
        release(slot, plan)
    refused = take(store, plan)
    assert not refused.taken
    assert refused.reason == "budget"
    # The next token comes at 57 per minute.
    assert 60 / 57 - 0.2 <= refused.wait <= 60 / 57
    assert refused.free_at is not None
    # Another mailbox has its own bucket.
    other = mailbox_slot_take(
        integration_id=store.integration_id, mailbox="other@contoso.test", budget=plan
    )
    assert other.taken


def test_at_most_the_concurrency_in_flight_and_a_dead_workers_slots_lapse(store):
    plan = budget(messages=1000, window=1.0, concurrency=2, hold=0.3)
    first, second = take(store, plan), take(store, plan)
    assert first.taken and second.taken
    busy = take(store, plan)
    assert (busy.taken, busy.reason) == (False, "busy")
    release(first, plan)
    third = take(store, plan)
    assert third.taken
    assert store.state()["in_flight"] == 2
    # Never released (their worker was killed): both lapse after `hold`, and two
    # new submissions may be under way.
    deadline, fresh = time.monotonic() + 5, []
    while len(fresh) < 2:
        assert time.monotonic() < deadline
        slot = take(store, plan)
        if slot.taken:
            fresh.append(slot)
        else:
            assert slot.reason == "busy"
            time.sleep(0.02)
    assert store.state()["in_flight"] == 2
    assert not take(store, plan).taken


def test_a_throttle_pauses_every_worker_and_halves_the_rate_once(store):
    plan = budget(messages=100, window=1.0, adapt_every=0.3)
    slot, other = take(store, plan), take(store, plan)
    release(slot, plan, throttled_for=0.4)
    state = store.state()
    assert state["factor"] == 0.5
    paused = take(store, plan)
    assert (paused.taken, paused.reason) == (False, "paused")
    assert 0.3 <= paused.wait <= 0.4
    # The other submission in flight was throttled by the same wall: no second cut.
    release(other, plan, throttled_for=0.4)
    assert store.state()["factor"] == 0.5
    deadline = time.monotonic() + 5
    while not (slot := take(store, plan)).taken:
        assert time.monotonic() < deadline
        time.sleep(min(slot.wait, 0.05))
    # Successes give the budget back a step per window, not all at once.
    release(slot, plan)
    assert store.state()["factor"] == 0.5
    time.sleep(0.35)
    slot = take(store, plan)
    assert slot.taken
    release(slot, plan)
    assert store.state()["factor"] == pytest.approx(0.5 + FACTOR_STEP)


def test_one_bucket_however_many_messages(store):
    plan = budget(messages=10_000, window=600.0)
    for _ in range(200):
        slot = take(store, plan)
        assert slot.taken
        release(slot, plan)
    assert store.size() == (1, 0)


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


def test_batch_beyond_the_budget_is_paced_in_the_task_without_4_3_2(
    exchange_limit, project, smtp_link, django_capture_on_commit_callbacks
):
    started = time.monotonic()
    final = emit(project, 8, django_capture_on_commit_callbacks)
    # Waits for the next token (half a second here) are spent in the task itself.
    assert [d.status for d in final] == [DeliveryStatus.SENT] * 8
    assert [(d.attempts, d.throttle_count, d.error_code) for d in final] == [
        (1, 0, "")
    ] * 8
    assert {m["message_id"] for m in exchange_limit.messages()} == expected_ids(final)
    assert exchange_limit.counters()["smtp_messages"] == 8
    # One at once, then 2 a second: 7 more take 3.5 seconds.
    assert time.monotonic() - started >= 3.4
    assert MailboxBudget.objects.count() == 1


def test_a_longer_wait_for_the_budget_defers_to_the_queue(
    exchange_limit, project, smtp_link, settings, django_capture_on_commit_callbacks
):
    settings.NOTIFICATIONS_INLINE_RETRY_AFTER_SECONDS = 0.1
    rows = emit(project, 5, django_capture_on_commit_callbacks)
    assert [d.status for d in rows].count(DeliveryStatus.SENT) == 1
    waiting = [d for d in rows if d.status == DeliveryStatus.PENDING]
    assert len(waiting) == 4
    # Not attempted: no attempt used, no error.
    assert all(d.attempts == 0 and d.error_code == "" for d in waiting)
    final = settle(timeout=30)
    assert [(d.status, d.attempts) for d in final] == [(DeliveryStatus.SENT, 1)] * 5
    assert exchange_limit.counters()["smtp_messages"] == 5


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


def test_the_bucket_does_not_grow_with_the_messages_sent(
    store, sandbox, project, link, django_capture_on_commit_callbacks
):
    """Graph at its default budget (10,000 per 10 minutes): after 40 messages, one
    row (or one Redis key) and no slot left behind."""
    rows = emit(project, 40, django_capture_on_commit_callbacks)
    assert {d.status for d in rows} == {DeliveryStatus.SENT}
    assert store.size() == (1, 0)
    assert len(sandbox.messages()) == 40
    deliveries_send()  # nothing due: nothing new in the store either
    assert store.size() == (1, 0)
