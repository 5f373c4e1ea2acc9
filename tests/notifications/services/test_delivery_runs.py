"""A run pays per batch: many small tasks are sent by the first to run, outcomes are
written a batch at a time with a bounded number of queries, a live run keeps its
leases (the heartbeat) and a taken-over row keeps the other worker's outcome.
tests/notifications/test_worker.py drills the same with real db_worker processes."""

import re
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tasks import task_backends

from notifications import tasks
from notifications.models import Delivery, DeliveryStatus, EventKind
from notifications.services import deliveries_send, event_emit
from notifications.services.delivery import _Claim, _ClaimPlan, _Run, deliveries_claim
from tests.notifications.conftest import call_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(settings):
    """A backend that records enqueued tasks instead of running them, as the
    database backend holds them for db_worker."""
    settings.TASKS = {
        "default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}
    }
    backend = task_backends["default"]
    backend.clear()
    yield backend
    backend.clear()


@pytest.fixture
def aside(settings, monkeypatch):
    """Runs that do their database work on threads of their own (`_Aside`), as on a
    database server (tests/notifications/test_worker.py: PostgreSQL); here on
    SQLite, made to. Unpaced."""
    from notifications.services import delivery

    settings.NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE = 0
    monkeypatch.setattr(delivery, "_work_aside", lambda: True)


def emit(project, count):
    """`count` committed deliveries (their enqueue, if any, left to the caller)."""
    with transaction.atomic():
        for i in range(count):
            event_emit(
                project=project, kind=EventKind.SCAN_COMPLETED, payload={"new": i}
            )
    return list(Delivery.objects.filter(status=DeliveryStatus.PENDING).order_by("pk"))


def test_a_batch_names_its_ids_as_one_list_the_database_compares_with_its_column(
    project, link
):
    from notifications.lookups import pk_in

    ids = [d.pk for d in emit(project, 3)]
    assert len(ids) == 3
    with CaptureQueriesContext(connection) as queries:
        found = sorted(Delivery.objects.filter(pk_in(ids)).values_list("pk", flat=True))
    assert found == ids
    (sql,) = [q["sql"] for q in queries]
    if connection.vendor == "postgresql":
        # One array, typed as the column: psycopg would type small ids smallint[],
        # and PostgreSQL answers `bigint = ANY(smallint[])` with a sequential scan
        # comparing each row with every id (23 ms for a batch's findings, not 2).
        # (psycopg's own cast, if any, comes first: the constant is cast again.)
        typed = r'"id" = ANY\(\'\{[0-9,]+\}\'(::\w+\[\])?::bigint\[\]\)'
        assert re.search(typed, sql), sql
    else:
        assert re.search(r'"id" IN \([0-9, ]+\)', sql), sql


def message_ids(deliveries):
    return {f"<delivery-{d.uuid}@appsec.example.test>" for d in deliveries}


def delivery_writes(queries):
    """The statements that write delivery rows (an `executemany` is one, which the
    debug cursor records as "N times: <sql>")."""
    statements = [re.sub(r"^\d+ times: ", "", q["sql"]) for q in queries]
    return [
        sql
        for sql in statements
        if sql.startswith(("UPDATE", "INSERT", "DELETE"))
        and '"notifications_delivery"' in sql.split("SET")[0]
    ]


def test_many_small_tasks_are_sent_by_the_first_run_and_the_rest_find_nothing(
    sandbox, project, link, queued, django_capture_on_commit_callbacks
):
    count = 200
    # One delivery per transaction, as events commit one by one: 200 tasks.
    for i in range(count):
        with django_capture_on_commit_callbacks(execute=True):
            with transaction.atomic():
                event_emit(
                    project=project, kind=EventKind.SCAN_COMPLETED, payload={"new": i}
                )
    delivers = [r for r in queued.results if r.task.name == "deliver"]
    assert len(delivers) == count

    runs = []
    empty_queries = []
    for result in delivers:
        with CaptureQueriesContext(connection) as queries:
            summary = call_task(result.task, *result.args)
        runs.append(summary["sent"])
        if not summary["sent"]:
            empty_queries.append(
                len([q for q in queries if "SAVEPOINT" not in q["sql"]])
            )

    assert sum(runs) == count
    assert len([sent for sent in runs if sent]) == 1  # one run sent them all
    # The other 199 tasks each found their row sent: one query (the claim's SELECT;
    # on PostgreSQL inside the test's transaction, between a savepoint's two).
    assert set(empty_queries) == {1}
    final = list(Delivery.objects.order_by("pk"))
    assert {d.status for d in final} == {DeliveryStatus.SENT}
    assert all(d.attempts == 1 for d in final)
    messages = sandbox.messages()
    assert len(messages) == count
    assert {m["message_id"] for m in messages} == message_ids(final)


def test_a_large_task_claims_its_own_rows_a_batch_of_ids_at_a_time(
    sandbox, project, link, settings
):
    # One task of 60 rows (an import's events committed together), of which a few
    # were sent already: each claim names at most a batch of the task's ids, where
    # naming all 60 in every claim made a thousand-row task's claims grow with it.
    settings.NOTIFICATIONS_CLAIM_BATCH = 25
    settings.NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE = 0
    deliveries = emit(project, 60)
    ids = [d.pk for d in deliveries]
    # A whole window of them sent meanwhile (by another run, say).
    Delivery.objects.filter(pk__in=ids[25:50]).update(status=DeliveryStatus.SENT)
    with CaptureQueriesContext(connection) as queries:
        summary = deliveries_send(delivery_ids=ids)
    assert summary.sent == 35
    # An IN list, or on PostgreSQL one array (`notifications.lookups.IdIn`).
    claims = [q["sql"] for q in queries if '"notifications_delivery"' in q["sql"]]
    named = re.compile(r'"id" IN \(([^)]*)\)|"id" = ANY\(\'\{([^}]*)\}\'')
    id_lists = [
        (in_list or array).split(",")
        for sql in claims
        for in_list, array in named.findall(sql)
    ]
    assert id_lists and max(map(len, id_lists)) <= 25, id_lists
    assert sum(map(len, id_lists)) >= 60  # the claims name every id
    assert {d.status for d in Delivery.objects.filter(pk__in=ids)} == {
        DeliveryStatus.SENT
    }
    assert len(sandbox.messages()) == 35


def test_a_run_stops_at_its_time_limit_and_the_task_enqueues_its_rest(
    sandbox, project, link, queued, settings
):
    settings.NOTIFICATIONS_CLAIM_BATCH = 2
    settings.NOTIFICATIONS_RUN_MAX_SECONDS = 0  # one claim, then time is up
    deliveries = emit(project, 5)
    ids = [d.pk for d in deliveries]
    first = call_task(tasks.deliver, ids)
    assert first["sent"] == 0  # stopped before its first claim
    (again,) = [r for r in queued.results if r.task.name == "deliver"]
    assert again.args == [ids]

    settings.NOTIFICATIONS_RUN_MAX_SECONDS = 60
    assert call_task(tasks.deliver, ids)["sent"] == 5


def test_a_run_goes_on_with_other_due_rows_of_its_tools_only(
    sandbox, project, link, smtp_link, settings
):
    deliveries = emit(project, 4)
    graph = [d for d in deliveries if d.integration_id == link.integration_id]
    smtp = [d for d in deliveries if d.integration_id == smtp_link.integration_id]
    assert len(graph) == len(smtp) == 4
    summary = deliveries_send(delivery_ids=[graph[0].pk])
    assert summary.sent == 4  # its own row, then the tool's three others
    statuses = {
        d.pk: d.status for d in Delivery.objects.filter(pk__in=[d.pk for d in smtp])
    }
    assert set(statuses.values()) == {DeliveryStatus.PENDING}  # another tool


def test_writing_outcomes_takes_the_same_queries_for_5_or_25_deliveries(
    sandbox, project, link, settings
):
    settings.NOTIFICATIONS_CLAIM_BATCH = 25
    settings.NOTIFICATIONS_OUTCOME_FLUSH = 25
    emit(project, 1)
    deliveries_send()  # a token and a connection, so both runs start warm

    figures = {}
    for count in (5, 25):
        emit(project, count)
        with CaptureQueriesContext(connection) as queries:
            summary = deliveries_send()
        assert summary.sent == count
        figures[count] = (len(queries), len(delivery_writes(queries)))
    # Claiming and writing the outcomes: the claim's UPDATE and one UPDATE of the
    # outcomes, whatever the number of deliveries. Around them, 6 more statements
    # either way: the claim's SELECT and its SELECT of the rows; the outcomes'
    # SAVEPOINT, SELECT, RELEASE; the claim that finds nothing more. (Reading what
    # the emails need is `emails_for`'s; the mailbox's budget, `pacing`'s.)
    # Plus one UPDATE per tool recording the mailbox each claimed delivery goes
    # from (looked up there if the worker dies before recording the answer).
    assert figures[5][1] == figures[25][1] == 3, figures


def test_a_whole_batch_takes_the_same_queries_for_5_or_25_deliveries(
    sandbox, project, link, settings
):
    # Everything a run does in the database (claims, the emails' findings, the
    # outcomes), pacing aside: pacing shares each mailbox's budget between workers
    # and takes its slot per message (in Redis, with CACHE_URL, not the database).
    from projects.models import Finding

    settings.NOTIFICATIONS_CLAIM_BATCH = 25
    settings.NOTIFICATIONS_OUTCOME_FLUSH = 25
    settings.NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE = 0
    emit(project, 1)
    deliveries_send()

    def new_vulnerabilities(count):
        # Each event its own 10 high findings, as imports emit them.
        with transaction.atomic():
            for e in range(count):
                findings = Finding.objects.bulk_create(
                    Finding(
                        project=project,
                        tool_name="Scanner",
                        fingerprint=f"{count}-{e}-{i}",
                        rule_id=f"R{i}",
                        message=f"finding {i}",
                        severity="high",
                        path=f"src/m{i}.py",
                        start_line=i + 1,
                    )
                    for i in range(10)
                )
                event_emit(
                    project=project,
                    kind=EventKind.NEW_VULNERABILITIES,
                    payload={
                        "finding_ids": [f.pk for f in findings],
                        "counts": {"high": 10},
                    },
                )

    totals = {}
    for count in (5, 25):
        new_vulnerabilities(count)
        with CaptureQueriesContext(connection) as queries:
            assert deliveries_send().sent == count
        totals[count] = len(queries)
    assert totals[5] == totals[25], totals
    sent = sandbox.messages(to=sandbox.seed["recipient"])
    assert sum("finding 9" in str(m) for m in sent) >= 30


def test_outcomes_are_flushed_every_few_deliveries(
    sandbox, project, smtp_link, settings
):
    settings.NOTIFICATIONS_CLAIM_BATCH = 25
    settings.NOTIFICATIONS_OUTCOME_FLUSH = 4
    settings.NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE = 0  # no waits for the budget
    emit(project, 10)
    with CaptureQueriesContext(connection) as queries:
        assert deliveries_send().sent == 10
    # One message at a time over SMTP: the claim and its senders, then the outcomes
    # after the 4th, the 8th and at the end.
    assert len(delivery_writes(queries)) == 2 + 3


@pytest.mark.parametrize(
    "expression", [True, False], ids=["with-an-expression", "plain-values"]
)
def test_a_taken_over_row_keeps_the_other_workers_outcome(project, link, expression):
    # Plain values go in one UPDATE per kind of outcome (on PostgreSQL, its rows
    # from arrays); a value that is an expression, in an UPDATE with CASEs.
    emit(project, 3)
    run = _Run()
    mine = deliveries_claim(worker=run.worker)
    assert len(mine) == 3
    # The run stalled past its lease; another worker took the second row over.
    Delivery.objects.filter(pk=mine[1].pk).update(claimed_by="other-worker")
    sent_at = timezone.now()
    for delivery in mine:
        run.finish(
            delivery,
            DeliveryStatus.SENT,
            subject=f"Subject {delivery.pk}",
            request_id=f"request-{delivery.pk}",
            error_code="",
            sent_at=sent_at,
            throttle_count=F("throttle_count") + 1 if expression else 1,
        )
    assert Delivery.objects.filter(status=DeliveryStatus.SENT).count() == 0  # queued
    run.flush()
    assert run.summary.sent == 2
    rows = {d.pk: d for d in Delivery.objects.all()}
    for delivery in (mine[0], mine[2]):
        row = rows[delivery.pk]
        assert row.status == DeliveryStatus.SENT
        assert (row.subject, row.request_id) == (
            f"Subject {delivery.pk}",
            f"request-{delivery.pk}",
        )
        assert row.claimed_by == "" and row.lease_expires_at is None
        assert row.sent_at == sent_at
        assert row.throttle_count == 1
    taken = rows[mine[1].pk]
    assert (taken.status, taken.claimed_by) == (DeliveryStatus.SENDING, "other-worker")
    assert taken.subject == "" and taken.throttle_count == 0


def test_a_flush_of_rows_still_held_is_its_updates_alone(project, link):
    emit(project, 6)
    run = _Run()
    mine = deliveries_claim(worker=run.worker)
    for delivery in mine:
        run.finish(delivery, DeliveryStatus.SENT, request_id=f"r{delivery.pk}")

    with CaptureQueriesContext(connection) as queries:
        run.flush()

    assert run.summary.sent == 6
    statements = [q["sql"] for q in queries]
    assert len(delivery_writes(queries)) == 1
    assert not [sql for sql in statements if sql.startswith("SELECT")], statements
    assert set(Delivery.objects.values_list("status", "claimed_by").distinct()) == {
        (DeliveryStatus.SENT, "")
    }


def test_a_row_another_worker_finished_meanwhile_is_not_counted_as_ours(project, link):
    emit(project, 3)
    run = _Run()
    mine = deliveries_claim(worker=run.worker)
    # Taken over after this run's lease ran out, and already sent by the other.
    Delivery.objects.filter(pk=mine[1].pk).update(
        claimed_by="", status=DeliveryStatus.SENT, request_id="theirs"
    )
    for delivery in mine:
        run.finish(delivery, DeliveryStatus.SENT, request_id=f"r{delivery.pk}")

    run.flush()

    assert run.summary.sent == 2
    rows = {d.pk: d for d in Delivery.objects.all()}
    assert rows[mine[1].pk].request_id == "theirs"
    assert [rows[d.pk].request_id for d in (mine[0], mine[2])] == [
        f"r{mine[0].pk}",
        f"r{mine[2].pk}",
    ]


def test_outcomes_of_every_kind_are_written_in_statements_per_kind_not_per_row(
    project, link
):
    emit(project, 9)
    run = _Run()
    mine = deliveries_claim(worker=run.worker)
    assert len(mine) == 9
    Delivery.objects.filter(pk=mine[4].pk).update(claimed_by="other-worker")
    now = timezone.now()
    later = now + timedelta(minutes=5)
    for i, delivery in enumerate(mine):
        if i % 3 == 0:  # sent: plain values, a datetime and booleans among them
            fields = {
                "subject": f"Sent {i} 'quoted' %s",
                "request_id": f"r{i}",
                "error_code": "",
                "sent_at": now,
                "answer_lost": False,
                "resent_unconfirmed": i == 3,
            }
            status = DeliveryStatus.SENT
        elif i % 3 == 1:  # to be retried: plain values, another set of fields
            fields = {"error_code": "timeout", "next_attempt_at": later}
            status = DeliveryStatus.PENDING
        else:  # throttled: an expression among the values
            fields = {
                "error_code": "throttled",
                "next_attempt_at": later,
                "attempts": F("attempts") - 1,
            }
            status = DeliveryStatus.PENDING
        run.finish(delivery, status, **fields)

    with CaptureQueriesContext(connection) as queries:
        run.flush()

    # Three kinds of outcome: three UPDATEs, not nine.
    assert len(delivery_writes(queries)) == 3
    rows = {d.pk: d for d in Delivery.objects.filter(pk__in=[d.pk for d in mine])}
    for i, delivery in enumerate(mine):
        row = rows[delivery.pk]
        if i == 4:
            assert (row.status, row.claimed_by) == ("sending", "other-worker")
            assert row.error_code == "" and row.attempts == 1
            continue
        assert row.claimed_by == "" and row.lease_expires_at is None
        assert row.updated_at >= now
        if i % 3 == 0:
            assert row.status == DeliveryStatus.SENT
            assert row.subject == f"Sent {i} 'quoted' %s"
            assert (row.request_id, row.sent_at) == (f"r{i}", now)
            assert row.resent_unconfirmed is (i == 3)
        else:
            assert row.status == DeliveryStatus.PENDING
            assert row.next_attempt_at == later
            assert row.error_code == ("timeout" if i % 3 == 1 else "throttled")
            assert row.attempts == (1 if i % 3 == 1 else 0)
    assert run.summary.sent == 3 and run.summary.retrying == 5


def test_a_claim_records_when(project, link):
    emit(project, 1)
    before = timezone.now()
    (claimed,) = deliveries_claim(worker="w")
    assert before <= claimed.claimed_at <= timezone.now()


@pytest.mark.django_db(transaction=True)
def test_a_slow_live_run_keeps_its_leases_and_nothing_is_sent_twice(
    sandbox, project, link, settings, queued
):
    """Each send blocks for longer than two leases; the heartbeat thread renews them,
    so a competitor claiming all the while never takes a row over."""
    # Renewed every 0.5 s, a lease of 1.5 s leaves a second for a renewal that
    # waits on the competitor's lock on a loaded machine.
    lease, delay = 1.5, 3.2
    settings.NOTIFICATIONS_LEASE_SECONDS = lease
    sandbox.add_fault(target="graph", delay=delay, probability=1.0)
    deliveries = emit(project, 2)

    stolen, stop = [], threading.Event()

    def competitor():
        try:
            while not stop.is_set():
                stolen.extend(deliveries_claim(worker="competitor"))
                time.sleep(0.05)
        finally:
            connection.close()

    thread = threading.Thread(target=competitor)
    try:
        started = time.monotonic()
        # The competitor starts once the run holds the rows.
        summary = deliveries_send(on_claim=thread.start)
        took = time.monotonic() - started
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
    assert took > delay > 2 * lease  # a send outlasted two leases
    assert stolen == []
    assert summary.sent == 2
    final = list(Delivery.objects.order_by("pk"))
    assert [(d.status, d.attempts) for d in final] == [(DeliveryStatus.SENT, 1)] * 2
    messages = sandbox.messages()
    assert len(messages) == 2
    assert {m["message_id"] for m in messages} == message_ids(deliveries)


@pytest.mark.django_db(transaction=True)
def test_without_a_heartbeat_a_dead_runs_rows_are_taken_over_after_a_lease(
    project, link, settings, queued
):
    settings.NOTIFICATIONS_LEASE_SECONDS = 0.5
    emit(project, 1)
    deliveries_claim(worker="killed-run")  # claimed, then nothing renews it
    assert deliveries_claim(worker="other") == []
    time.sleep(0.6)
    (taken,) = deliveries_claim(worker="other")
    assert taken.claimed_by == "other" and taken.attempts == 2
    assert taken.lease_expires_at > timezone.now() + timedelta(seconds=0.3)


def test_a_dead_runs_rows_claimed_after_the_batch_it_began_were_never_attempted(
    sandbox, project, link
):
    """The batch a run had begun may have gone out: taken over, each is looked up
    (or resent and marked). The batch it had claimed ahead had not: taken over, it
    is sent as a first attempt, neither looked up nor marked."""
    emit(project, 4)
    run = _Run()
    begun = deliveries_claim(worker=run.worker, limit=2)
    run.begin(begun)
    ahead = deliveries_claim(worker=run.worker, limit=2)
    assert min(d.claimed_at for d in ahead) > max(d.claimed_at for d in begun)
    # The worker dies here, its leases run out, and another run takes over.
    Delivery.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    summary = deliveries_send()

    assert summary.sent == 4
    rows = Delivery.objects.in_bulk([d.pk for d in begun + ahead])
    for delivery in begun:
        row = rows[delivery.pk]
        assert (row.attempts, row.resent_unconfirmed) == (2, True)
    for delivery in ahead:
        row = rows[delivery.pk]
        assert (row.attempts, row.resent_unconfirmed) == (1, False)
        assert (row.error_code, row.answer_lost) == ("", False)
    assert len(sandbox.messages()) == 4


def test_a_run_records_the_batch_it_begins_before_sending_and_forgets_it_after(
    sandbox, project, link
):
    from notifications.models import RunProgress

    emit(project, 3)
    seen = []

    def on_claim():  # called once the first batch is claimed, before it is sent
        seen.extend(RunProgress.objects.values_list("worker", "batch_claimed_at"))
        seen.append(len(sandbox.messages()))

    summary = deliveries_send(worker="run-1", on_claim=on_claim)

    claimed_at = Delivery.objects.values_list("claimed_at", flat=True).first()
    assert seen == [("run-1", claimed_at), 0]
    assert summary.sent == 3
    assert not RunProgress.objects.exists()


def test_a_dead_run_without_a_batch_begun_has_every_row_taken_over_as_attempted(
    project, link
):
    emit(project, 2)
    deliveries_claim(worker="dead", limit=1)
    deliveries_claim(worker="dead", limit=1)
    Delivery.objects.update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    taken = deliveries_claim(worker="other")
    assert [(d.attempts, d.answer_lost) for d in taken] == [(2, True)] * 2


@pytest.mark.django_db(transaction=True)
def test_an_outcome_write_that_fails_aside_is_written_again_before_the_run_ends(
    sandbox, project, link, settings, monkeypatch, queued, aside
):
    # A run on a database server writes its flushes on a thread of its own (see
    # tests/notifications/test_worker.py for PostgreSQL); here on SQLite, made to.
    from django.db import DatabaseError

    from notifications.services import delivery

    settings.NOTIFICATIONS_OUTCOME_FLUSH = 3
    real_finish, calls = delivery._finish, []

    def finish(outcomes, worker):
        calls.append((threading.current_thread().name, len(outcomes)))
        if len(calls) == 1:
            raise DatabaseError("the connection to the database was lost")
        return real_finish(outcomes, worker)

    monkeypatch.setattr(delivery, "_finish", finish)
    deliveries = emit(project, 7)

    with pytest.raises(DatabaseError, match="connection to the database was lost"):
        deliveries_send()

    # The first flush failed on the writer's thread; the run learnt it at its next
    # flush, stopped, and wrote those outcomes again on its own thread at its end.
    # (At least NOTIFICATIONS_OUTCOME_FLUSH: an answer read may bring in others.)
    assert calls[0][1] >= 3 and calls[0][0].startswith("outcomes-")
    assert not calls[-1][0].startswith("outcomes-")
    sent = {m["message_id"] for m in sandbox.messages()}
    assert len(sent) >= 3
    rows = {message_ids([d]).pop(): d for d in Delivery.objects.all()}
    assert len(rows) == len(deliveries)
    for message_id, row in rows.items():
        if message_id in sent:
            assert row.status == DeliveryStatus.SENT, message_id
        else:  # claimed, not reached: taken over once its lease runs out
            assert row.status == DeliveryStatus.SENDING and row.claimed_by
    assert not [t for t in threading.enumerate() if t.name.startswith("outcomes-")]


@pytest.mark.django_db(transaction=True)
def test_a_run_that_stops_with_a_failed_write_aside_writes_it_when_it_closes(
    project, link, monkeypatch, queued, aside
):
    # The run stopped for another reason (a claim that failed, say) while a write
    # was in flight on the writer's thread, and that write failed too.
    from django.db import DatabaseError

    from notifications.services import delivery

    real_finish, calls = delivery._finish, []

    def finish(outcomes, worker):
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            raise DatabaseError("the connection to the database was lost")
        return real_finish(outcomes, worker)

    monkeypatch.setattr(delivery, "_finish", finish)
    emit(project, 4)
    run = _Run()
    mine = deliveries_claim(worker=run.worker)
    for delivery_ in mine:
        run.finish(delivery_, DeliveryStatus.SENT, request_id=f"r{delivery_.pk}")
    run.flush(wait=False)

    run.close()

    assert calls[0].startswith("outcomes-") and len(calls) == 2
    assert run.summary.sent == 4
    assert set(Delivery.objects.values_list("status", "claimed_by").distinct()) == {
        (DeliveryStatus.SENT, "")
    }


# --- the next batch claimed while one is sent (on a database server) -------------


def test_the_claim_plan_takes_the_tasks_ids_a_batch_at_a_time_then_its_tools(
    settings,
):
    settings.NOTIFICATIONS_CLAIM_BATCH = 2
    plan = _ClaimPlan([1, 2, 3], max_deliveries=None)
    first = plan.next(handled=0, tools=set(), waiting={})
    assert first == _Claim(own=(1, 2), tools=None, limit=2)
    # Asked again before the claim is made: the same claim (what a claim made
    # ahead is matched with).
    assert plan.next(handled=0, tools=set(), waiting={}) == first
    plan.made(first)
    second = plan.next(handled=2, tools={7}, waiting={})
    assert second == _Claim(own=(3,), tools=None, limit=2)
    plan.made(second)
    # The task's own rows done: its tools' other due rows, waiting ones included
    # in the names (the claim leaves those out), while one of them may send.
    assert plan.next(handled=3, tools={7, 8}, waiting={}) == _Claim(
        own=None, tools=(7, 8), limit=2
    )
    assert plan.next(handled=3, tools={7, 8}, waiting={7: None, 8: None}) is None
    third = plan.next(handled=3, tools={7, 8}, waiting={8: None})
    plan.made(third)
    assert plan.next(handled=5, tools={7, 8, 9}, waiting={}) == third
    # Without ids: any due row, and never beyond max_deliveries.
    anything = _ClaimPlan(None, max_deliveries=3)
    assert anything.next(handled=0, tools=set(), waiting={}) == _Claim(None, None, 2)
    assert anything.next(handled=2, tools={7}, waiting={}) == _Claim(None, None, 1)
    assert anything.next(handled=3, tools={7}, waiting={}) is None


@pytest.mark.django_db(transaction=True)
def test_the_next_batch_is_claimed_on_a_thread_of_the_run_while_one_is_sent(
    sandbox, project, link, settings, monkeypatch, queued, aside
):
    # On a database server (see tests/notifications/test_worker.py for PostgreSQL);
    # here on SQLite, made to.
    from django.utils import translation

    from notifications.services import delivery

    settings.NOTIFICATIONS_CLAIM_BATCH = 3
    real_claim, real_emails, claims, languages = (
        delivery.deliveries_claim,
        delivery.BatchEmails,
        [],
        [],
    )

    def claim(**kwargs):
        batch = real_claim(**kwargs)
        claims.append((threading.current_thread().name, len(batch)))
        return batch

    def emails(batch):
        languages.append(translation.get_language())
        return real_emails(batch)

    monkeypatch.setattr(delivery, "deliveries_claim", claim)
    monkeypatch.setattr(delivery, "BatchEmails", emails)
    deliveries = emit(project, 8)

    with translation.override("fr"):
        summary = deliveries_send(delivery_ids=[d.pk for d in deliveries[:4]])

    # The first claim on the run's thread; each next one on the claims thread
    # while the batch before it went out: the task's ids, then its tool's others.
    assert claims[0] == (threading.current_thread().name, 3)
    assert [n for _name, n in claims[1:]] == [1, 3, 1, 0]
    assert all(name.startswith("claims-") for name, _n in claims[1:])
    # Their messages made in the run's language.
    assert languages == ["fr"] * 4
    assert (summary.sent, summary.others, summary.retry_at) == (8, 4, {})
    assert len(sandbox.messages()) == 8
    assert {(d.status, d.attempts) for d in Delivery.objects.all()} == {
        (DeliveryStatus.SENT, 1)
    }
    assert not [
        t for t in threading.enumerate() if t.name.startswith(("claims-", "outcomes-"))
    ]


@pytest.mark.django_db(transaction=True)
def test_the_next_batch_is_claimed_ahead_only_once_a_server_has_answered(
    sandbox, project, link, settings, monkeypatch, queued, aside
):
    # Until then the run waits for its first answer (one message at a time until
    # the tool accepts one), and that answer (the token, the TLS handshake) would
    # wait longer with a claim competing for the process.
    from notifications.services import delivery

    settings.NOTIFICATIONS_CLAIM_BATCH = 3
    real_claim, received_before_claims_ahead = delivery.deliveries_claim, []

    def claim(**kwargs):
        if threading.current_thread().name.startswith("claims-"):
            received_before_claims_ahead.append(len(sandbox.messages()))
        return real_claim(**kwargs)

    monkeypatch.setattr(delivery, "deliveries_claim", claim)
    deliveries = emit(project, 6)

    summary = deliveries_send(delivery_ids=[d.pk for d in deliveries[:3]])

    assert summary.sent == 6
    assert received_before_claims_ahead
    assert received_before_claims_ahead[0] >= 1


@pytest.mark.django_db(transaction=True)
def test_a_batch_claimed_ahead_for_a_tool_that_starts_waiting_is_given_back(
    sandbox, project, link, settings, monkeypatch, queued, aside
):
    # The task's three rows go out while the tool's three others are claimed
    # ahead; the first send is throttled for two minutes, so the run ends there:
    # the rows claimed ahead are given back unattempted, due when the wait ends
    # (not at once, which would send them into the throttle).
    settings.NOTIFICATIONS_CLAIM_BATCH = 3
    sandbox.add_fault(target="graph", status=429, retry_after="120", count=1)
    deliveries = emit(project, 6)
    own = [d.pk for d in deliveries[:3]]

    summary = deliveries_send(delivery_ids=own)

    assert summary.sent == 0 and sandbox.messages() == []
    assert set(summary.retry_at) == {d.pk for d in deliveries}
    later = timezone.now() + timedelta(seconds=100)
    assert all(at >= later for at in summary.retry_at.values())
    for row in Delivery.objects.all():
        assert (row.status, row.claimed_by, row.attempts) == (
            DeliveryStatus.PENDING,
            "",
            0,
        ), row.pk
        assert row.next_attempt_at >= later, row.pk
