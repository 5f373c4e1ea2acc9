"""Sending deliveries: claim, send through one connection per tool, retry, resend.

A delivery is claimed with one atomic UPDATE (`status` pending and due, or sending
with an expired lease), so two workers never send the same row at the same time; a
worker that dies leaves a lease that expires, and the row is claimed again. On
PostgreSQL the candidates are picked with SELECT ... FOR UPDATE SKIP LOCKED first, so
concurrent workers take different rows instead of waiting on each other.

A worker pays per batch, not per task. One run (`deliveries_send`) claims its task's
own rows first, then the other due deliveries of the same tools, a claim batch at a
time (`_ClaimPlan`), for up to NOTIFICATIONS_RUN_MAX_SECONDS, over one connection
per tool; the tasks of the rows it sent then find nothing due, in one query. On a
database server the next batch is claimed, and its queries made, on a thread of the
run's own while the batch before it is sent (`_Run.claim_ahead`); a batch claimed
ahead and not sent (the run stopped, or its tool began to wait) is given back,
unattempted. While a run lives, its
leases are renewed every third of a lease (the heartbeat), so a slow live worker is
never overtaken and a killed one's rows are taken over about a lease after it died.

Outcomes are written a batch at a time (`_Run.flush`): one transaction, one
set-based UPDATE keyed by primary key and by this run's claim, at least every
NOTIFICATIONS_OUTCOME_FLUSH deliveries, before any wait and at the end of the run.
On a database server (PostgreSQL) the flushes made between sends are written on a
thread of the run's own (`_Aside`), one at a time, while the run goes on
sending; the next flush, any wait and the run's end wait for the write in flight.
The trade-off: a worker killed between a send and the flush leaves those rows
claimed, and they are sent again once the lease runs out, so up to that many
messages (twice that with a write in flight, plus the ones in flight) go out twice,
unless the Sent Items lookup finds them (Graph with Mail.ReadBasic.All, the SMTP
tool through its Email box). Which of a dead worker's rows may have gone out: those
of the batch it had begun (`RunProgress`, written before the batch's first send)
and before; the rows it claimed after that were never attempted, and are taken over
as such (`deliveries_claim`). A delivery's Message-ID is derived from
its uuid, so a mail client shows the two copies as one message.

Before each message the sender mailbox's budget is checked (`pacing`): over it, the
tool's deliveries wait for a free slot instead of running into Microsoft's limit (a
short wait here, a longer one in the queue). Every submission is made on the run's
thread and answered with a `PendingReply`: the message has gone out and its answer
is read later, so the run renders the next message meanwhile (`BatchEmails`: a
batch's queries made once, each message rendered when it is sent), with no sending
thread. A tool that allows several submissions at once (Graph: 4 per mailbox, over
libcurl) has up to that many in flight, within that limit for all workers together,
their answers read as they come in (`collect`); a one-at-a-time tool's (an SMTP
session's) is read when the run comes back for the connection (`resolve`). A
throttle (429, SMTP 4.3.2 or 421) is not an
attempt: it gives the claim's attempt back, counts in `throttle_count`, slows the
mailbox down for every worker, and is retried here after a short Retry-After or
from the queue after a longer one; the delivery fails for it only once older than
NOTIFICATIONS_THROTTLE_MAX_AGE_SECONDS ("throttled_too_long").
"""

import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, connections, transaction
from django.db.models import Case, F, OuterRef, Q, Subquery, Value, When
from django.utils import timezone, translation

from integrations.exceptions import (
    ConnectionFailed,
    IntegrationError,
    ServiceUnavailable,
    Throttled,
)
from integrations.models import Integration, IntegrationState
from integrations.providers.replies import PendingReply
from integrations.services import provider_for
from notifications.emails import BatchEmails, email_for
from notifications.exceptions import DeliveryInternalError
from notifications.lookups import pk_in
from notifications.models import Delivery, DeliveryStatus, RunProgress, due_q
from notifications.services.events import link_recipients
from notifications.services.health_checks import (
    TOOL_NEEDS_ATTENTION,
    TOOL_NEEDS_ATTENTION_TOO_LONG,
    WAITING_STATES,
    attention_wait_until,
    health_send_failed,
    health_send_succeeded,
)
from notifications.services.outbox import enqueue_on_commit
from notifications.services.pacing import (
    Budget,
    MailboxSlot,
    mailbox_budget,
    mailbox_slot_release,
    mailbox_slot_take,
    mailbox_slots_flush,
)
from notifications.services.recipients import (
    RECIPIENT_REFUSED,
    delivery_recipients_refused,
)
from operations import metrics

logger = logging.getLogger(__name__)

#: Error codes after which a message may have arrived although the attempt failed:
#: the answer was lost (a timeout, a dropped connection) or was a 5xx that Graph can
#: send after accepting the message. Before sending again, the tool is asked whether
#: it holds the message already (`Connection.already_sent`).
WORKER_LOST = "worker_lost"
UNCERTAIN_OUTCOMES = frozenset(
    {"timeout", "connection_failed", "service_unavailable", WORKER_LOST}
)


def _answer_may_be_lost(delivery: Delivery) -> bool:
    """Whether the delivery's last attempt may have reached the server unbeknown to
    us (its answer lost, or an uncertain error): its next attempt looks it up first,
    from the mailbox of that attempt. `_senders_update` says the same in SQL."""
    return delivery.answer_lost or delivery.error_code in UNCERTAIN_OUTCOMES


def retry_delay(*, attempts: int, retry_after: float | None = None) -> float:
    """Seconds to wait before attempt `attempts + 1`.

    Without a Retry-After: exponential backoff from NOTIFICATIONS_RETRY_BASE_SECONDS
    capped at NOTIFICATIONS_RETRY_MAX_SECONDS, with jitter over its upper half (between
    half the backoff and the backoff), so that many deliveries failing together do
    not retry together.

    With one: the server's Retry-After, never less, plus up to min(1 s, base / 10) of
    jitter; but at most NOTIFICATIONS_RETRY_AFTER_MAX_SECONDS (an hour by default), so
    a buggy or hostile server cannot park a delivery for years (or, with "inf",
    overflow the date).
    """
    base = float(settings.NOTIFICATIONS_RETRY_BASE_SECONDS)
    if retry_after is not None:
        ceiling = float(settings.NOTIFICATIONS_RETRY_AFTER_MAX_SECONDS)
        if not math.isfinite(retry_after) or retry_after > ceiling:
            retry_after = ceiling
        # A little jitter on top, so a throttled batch does not come back as a burst.
        jitter = random.uniform(0, min(1.0, base / 10))  # noqa: S311
        return max(0.0, retry_after) + jitter
    cap = float(settings.NOTIFICATIONS_RETRY_MAX_SECONDS)
    # The exponent is bounded so that a very high attempt count cannot overflow.
    backoff = min(cap, base * 2.0 ** min(max(0, attempts - 1), 64))
    return backoff / 2 + random.uniform(0, backoff / 2)  # noqa: S311


def deliveries_claim(
    *,
    worker: str,
    delivery_ids: list[int] | None = None,
    integration_ids: list[int] | None = None,
    exclude_integrations=(),
    limit: int | None = None,
    senders: dict[int, str] | None = None,
) -> list[Delivery]:
    """Claim up to `limit` due deliveries for `worker`: of `delivery_ids`, of the
    tools `integration_ids`, or any.

    `senders` (a tool's id: the mailbox it sends from) are written on the claimed
    rows of those tools in the same UPDATE (`_Run.record_senders` says why; it
    writes the others), except on a row whose last answer was lost, which keeps
    the mailbox of that attempt.

    Finding nothing costs one query, which is all most delivery tasks do once
    another run has sent their rows along with its own.
    """
    limit = limit or int(settings.NOTIFICATIONS_CLAIM_BATCH)
    lease = float(settings.NOTIFICATIONS_LEASE_SECONDS)
    now = timezone.now()
    locking = connection.features.has_select_for_update_skip_locked
    # Only the row locks need a transaction. Without them (SQLite) the UPDATE below
    # is the claim, and an IMMEDIATE transaction would take the database's write
    # lock even for a task that finds nothing.
    with transaction.atomic() if locking else nullcontext():
        candidates = Delivery.objects.filter(due_q(now))
        if delivery_ids is not None:
            candidates = candidates.filter(pk_in(delivery_ids))
        if integration_ids is not None:
            candidates = candidates.filter(integration_id__in=integration_ids)
        if exclude_integrations:
            candidates = candidates.exclude(integration_id__in=exclude_integrations)
        if locking:
            candidates = candidates.select_for_update(skip_locked=True)
        picked = list(
            candidates.order_by("next_attempt_at", "pk").values_list("pk", flat=True)[
                :limit
            ]
        )
        if not picked:
            return []
        # The WHERE repeats the due condition: on SQLite (no row locks) this UPDATE is
        # the claim, and a row another worker took in between is simply not updated.
        # A row still "sending" belonged to a worker that died: whether its message
        # went out is unknown, so the send path looks before resending; unless the
        # row was claimed after the batch that worker had begun (`RunProgress`),
        # and so never attempted: that one gets its attempt back instead.
        never_attempted = Q(
            status=DeliveryStatus.SENDING,
            claimed_at__gt=Subquery(
                RunProgress.objects.filter(worker=OuterRef("claimed_by")).values(
                    "batch_claimed_at"
                )[:1]
            ),
        )
        Delivery.objects.filter(due_q(now), pk_in(picked)).update(
            error_code=Case(
                When(never_attempted, then=F("error_code")),
                When(status=DeliveryStatus.SENDING, then=Value(WORKER_LOST)),
                default=F("error_code"),
            ),
            answer_lost=Case(
                When(never_attempted, then=F("answer_lost")),
                When(status=DeliveryStatus.SENDING, then=Value(True)),
                default=F("answer_lost"),
            ),
            attempts=Case(
                When(never_attempted, then=F("attempts")),
                default=F("attempts") + 1,
            ),
            status=DeliveryStatus.SENDING,
            claimed_by=worker,
            claimed_at=now,
            lease_expires_at=now + timedelta(seconds=lease),
            updated_at=now,
            **_senders_update(senders),
        )
    # A batch names a few projects, links and tools: each is loaded once (one query
    # per relation) and the same instance given to every row that names it, where a
    # JOIN would build one per row and decode the tool's settings each time.
    return list(
        Delivery.objects.filter(
            pk_in(picked), claimed_by=worker, status=DeliveryStatus.SENDING
        )
        .select_related("event", "event__scan")
        .prefetch_related("project", "link", "integration")
        .order_by("integration_id", "pk")
    )


def _senders_update(senders: dict[int, str] | None) -> dict:
    """The claim's `answer_lost_from`: each tool's sender, except where the last
    answer was lost (a row taken over, or `_answer_may_be_lost`, in SQL)."""
    if not senders:
        return {}
    keep = F("answer_lost_from")
    return {
        "answer_lost_from": Case(
            When(status=DeliveryStatus.SENDING, then=keep),
            When(answer_lost=True, then=keep),
            When(error_code__in=sorted(UNCERTAIN_OUTCOMES), then=keep),
            *(
                When(integration_id=integration_id, then=Value(sender[:320]))
                for integration_id, sender in senders.items()
            ),
            default=keep,
        )
    }


def _finish(outcomes: list[tuple[Delivery, dict]], worker: str) -> set[int]:
    """Write outcomes (a delivery and its fields each) for the rows `worker` still
    holds; return the primary keys written.

    One transaction, a few statements however many outcomes: the UPDATEs
    (`_write_outcomes`, rows in primary key order), each repeating `claimed_by =
    worker` in its WHERE, so a row another worker took over (this run's lease ran
    out) keeps that worker's outcome. When they wrote every row, as they do unless
    a lease ran out, that is all; else a SELECT in the same transaction tells the
    rows written (this write's `updated_at`) from the others. A value may be an
    expression (`F("throttle_count") + 1`). On PostgreSQL, outcomes that all set
    the same fields to plain values (the usual flush) are one statement, which
    names the rows it wrote (`_update_from_arrays`).
    """
    if not outcomes:
        return set()
    now = timezone.now()
    by_pk: dict[int, tuple[Delivery, dict]] = {}
    for delivery, fields in outcomes:
        fields = {"claimed_by": "", "lease_expires_at": None, **fields}
        fields["updated_at"] = now
        by_pk[delivery.pk] = (delivery, fields)
    fields_by_pk = {pk: by_pk[pk][1] for pk in sorted(by_pk)}
    plain, expressions = _by_kind(fields_by_pk)
    if connection.vendor == "postgresql" and len(plain) == 1 and not expressions:
        # The usual flush: one statement, atomic by itself (no transaction to open
        # and commit: one round trip), whose RETURNING names the rows it wrote.
        (names,) = plain
        written = _update_from_arrays(names, fields_by_pk, worker)
    else:
        with transaction.atomic():
            count = _write_outcomes(fields_by_pk, plain, expressions, worker)
            if count == len(by_pk):
                written = list(by_pk)
            else:
                written = list(
                    Delivery.objects.filter(
                        pk__in=list(by_pk), claimed_by="", updated_at=now
                    ).values_list("pk", flat=True)
                )
    for pk in written:
        delivery, fields = by_pk[pk]
        for name, value in fields.items():
            if not hasattr(value, "resolve_expression"):
                setattr(delivery, name, value)
    return set(written)


def _by_kind(fields_by_pk: dict[int, dict]) -> tuple[dict, dict]:
    """The outcomes by kind: the primary keys of those whose values are all plain,
    by their field names, and those with an expression among their values."""
    plain: dict[tuple[str, ...], list[int]] = {}
    expressions: dict[int, dict] = {}
    for pk, fields in fields_by_pk.items():
        if any(hasattr(v, "resolve_expression") for v in fields.values()):
            expressions[pk] = fields
        else:
            plain.setdefault(tuple(sorted(fields)), []).append(pk)
    return plain, expressions


def _write_outcomes(
    fields_by_pk: dict[int, dict], plain: dict, expressions: dict, worker: str
) -> int:
    """UPDATE each row held by `worker` with its own fields (`_by_kind` sorted
    them), in as many statements as there are kinds of outcome, not rows; return
    how many rows were written.

    Rows whose values are all plain (a send's outcome, the usual case) go by one
    parameterised UPDATE per set of field names: on PostgreSQL one statement
    whose rows come from arrays, a column each (`_update_from_arrays`); elsewhere
    by `executemany`, the SQL built once and each row costing its parameters only.
    Rows with an expression among their values (a throttle's `F("attempts") - 1`)
    share one ORM UPDATE with a CASE per field.
    """
    quote = connection.ops.quote_name
    meta = Delivery._meta
    table = quote(meta.db_table)
    written = 0
    for names, pks in plain.items():
        model_fields = [meta.get_field(name) for name in names]
        if connection.vendor == "postgresql":
            written += len(
                _update_from_arrays(names, {pk: fields_by_pk[pk] for pk in pks}, worker)
            )
            continue
        sql = (
            f"UPDATE {table} SET "  # nosec B608  # quoted model names, values as parameters
            + ", ".join(f"{quote(f.column)} = %s" for f in model_fields)
            + f" WHERE {table}.{quote(meta.pk.column)} = %s AND "
            + _held_sql()
        )
        rows = [
            [
                f.get_db_prep_save(fields_by_pk[pk][f.name], connection)
                for f in model_fields
            ]
            + [pk, worker, DeliveryStatus.SENDING.value]
            for pk in pks
        ]
        with connection.cursor() as cursor:
            cursor.executemany(sql, rows)
            # The rows updated, summed over the parameter sets (sqlite3, psycopg).
            written += max(0, cursor.rowcount)
    if expressions:
        written += Delivery.objects.filter(
            pk__in=list(expressions), claimed_by=worker, status=DeliveryStatus.SENDING
        ).update(**_case_by_pk(expressions))
    return written


def _held_sql() -> str:
    """The WHERE of an outcome's UPDATE: the row is still the worker's (it holds
    the claim, `claimed_by = %s`, and the row is "sending", `status = %s`)."""
    quote = connection.ops.quote_name
    table = quote(Delivery._meta.db_table)
    return " AND ".join(
        f"{table}.{quote(Delivery._meta.get_field(name).column)} = %s"
        for name in ("claimed_by", "status")
    )


def _update_from_arrays(
    names: tuple[str, ...], fields_by_pk: dict[int, dict], worker: str
) -> list[int]:
    """On PostgreSQL, UPDATE the rows `worker` holds, each with its own values of
    the fields `names`, in one statement: `UPDATE ... FROM unnest(ids, column,
    ...)`, one array a column, each cast to its column's type. One statement and
    one round trip for a flush, where an `executemany` sent a statement per row,
    each parsed and planned apart. Returns the primary keys of the rows written."""
    quote = connection.ops.quote_name
    meta = Delivery._meta
    model_fields = [meta.get_field(name) for name in names]
    columns = [meta.pk, *model_fields]
    pks = list(fields_by_pk)
    arrays = [pks] + [
        [f.get_db_prep_save(fields_by_pk[pk][f.name], connection) for pk in pks]
        for f in model_fields
    ]
    table = quote(meta.db_table)
    pk = quote(meta.pk.column)
    sql = (
        f"UPDATE {table} SET "  # nosec B608  # quoted model names, values as parameters
        + ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in model_fields)
        + " FROM unnest("
        + ", ".join(f"%s::{f.cast_db_type(connection)}[]" for f in columns)
        + ") AS v("
        + ", ".join(quote(f.column) for f in columns)
        + f") WHERE {table}.{pk} = v.{pk} AND {_held_sql()}"
        + f" RETURNING {table}.{pk}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*arrays, worker, DeliveryStatus.SENDING.value])
        return [row[0] for row in cursor.fetchall()]


def _case_by_pk(fields_by_pk: dict[int, dict]) -> dict:
    """UPDATE arguments setting each row's own values: a plain value where every
    row gets the same one, else CASE pk WHEN ... (rows without the field keep it)."""
    names = sorted({name for fields in fields_by_pk.values() for name in fields})
    updates = {}
    for name in names:
        model_field = Delivery._meta.get_field(name)
        values = {pk: f[name] for pk, f in fields_by_pk.items() if name in f}
        distinct = {repr(v) for v in values.values()}
        if len(values) == len(fields_by_pk) and len(distinct) == 1:
            updates[name] = next(iter(values.values()))
            continue
        updates[name] = Case(
            *(
                When(
                    pk=pk,
                    then=value
                    if hasattr(value, "resolve_expression")
                    else Value(value, output_field=model_field),
                )
                for pk, value in values.items()
            ),
            default=F(name),
            output_field=model_field,
        )
    return updates


def _release(deliveries: list[Delivery], worker: str, *, at: datetime) -> None:
    """Give claimed but unattempted deliveries back, due at `at`."""
    Delivery.objects.filter(
        pk_in(d.pk for d in deliveries),
        claimed_by=worker,
        status=DeliveryStatus.SENDING,
    ).update(
        status=DeliveryStatus.PENDING,
        claimed_by="",
        lease_expires_at=None,
        next_attempt_at=at,
        attempts=F("attempts") - 1,
        updated_at=timezone.now(),
    )


@dataclass
class SendSummary:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    retrying: int = 0
    #: Not attempted: the sender mailbox's budget was spent (pacing).
    deferred: int = 0
    #: When to look again for the deliveries this run scheduled for a retry.
    retry_at: dict[int, datetime] = field(default_factory=dict)
    #: The run stopped at NOTIFICATIONS_RUN_MAX_SECONDS, maybe with rows still due.
    unfinished: bool = False
    #: Deliveries claimed beyond the task's own ids (its tools' other due rows).
    others: int = 0

    @property
    def processed(self) -> int:
        return self.sent + self.failed + self.skipped + self.retrying + self.deferred


class _Connections:
    """One open provider connection per integration, for the whole run."""

    def __init__(self):
        self.open_ = {}

    def get(self, integration: Integration):
        conn = self.open_.get(integration.pk)
        if conn is None:
            conn = provider_for(integration).open()
            self.open_[integration.pk] = conn
        return conn

    def drop(self, integration_id: int) -> None:
        conn = self.open_.pop(integration_id, None)
        if conn is not None:
            try:
                conn.close()
            except IntegrationError:
                pass

    def close(self) -> None:
        for integration_id in list(self.open_):
            self.drop(integration_id)


class _Heartbeat:
    """Keeps the leases of the rows a run holds alive while the run lives.

    One UPDATE ... WHERE claimed_by = the run, at least every third of a lease: the
    run calls `beat()` between sends, and a daemon thread renews too when one send
    blocks longer than that (a slow server, a token request, a long timeout). The
    thread uses its own database connection, closed when it stops. A killed worker
    renews nothing, so its rows are taken over about a lease after it died.
    """

    def __init__(self, worker: str):
        lease = float(settings.NOTIFICATIONS_LEASE_SECONDS)
        self.worker = worker
        self.lease = timedelta(seconds=lease)
        self.every = lease / 3
        self.renewed = time.monotonic()
        #: Held while renewing; `_Run.flush` holds it too, so the two never write
        #: the run's rows at the same time.
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.renewed = time.monotonic()
        self._thread = threading.Thread(
            target=self._loop, name=f"lease-heartbeat-{self.worker[:12]}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # A renewal waiting for a database lock ends within the busy timeout;
            # the thread is a daemon either way.
            self._thread.join(timeout=30)
            self._thread = None

    def beat(self) -> None:
        """Renew the leases if a third of a lease has passed since the last time."""
        if time.monotonic() - self.renewed >= self.every:
            self.renew()

    def renew(self) -> int:
        with self.lock:
            renewed = Delivery.objects.filter(
                claimed_by=self.worker, status=DeliveryStatus.SENDING
            ).update(lease_expires_at=timezone.now() + self.lease)
            self.renewed = time.monotonic()
        return renewed

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.every / 4):
                if time.monotonic() - self.renewed < self.every:
                    continue
                try:
                    self.renew()
                except DatabaseError:
                    logger.warning(
                        "Could not renew the leases of run %s",
                        self.worker,
                        exc_info=True,
                    )
        finally:
            connections.close_all()  # this thread's connection only


def _work_aside() -> bool:
    """Whether a run does its database work between sends on a thread of its own
    (`_Aside`: outcome flushes, and the next batch's claim): on a database server,
    where each statement waits for its round trip, and only when the run is not
    inside a transaction (a second connection would not see its rows). Not on
    SQLite: there a statement is quick and in process, and a second connection
    would queue for the file's one write lock."""
    return connection.vendor != "sqlite" and not connection.in_atomic_block


class _Aside:
    """A run's database work done on a thread of its own, so that the run goes on
    rendering and sending while the database answers: its outcome flushes, and the
    claim (with its queries) of the batch after the one being sent.

    One job at a time, in the order given. The thread has its own database
    connection, closed when it stops, and the run's language (the labels a batch
    renders with).
    """

    def __init__(self, name: str):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def submit(self, job: Callable, *args) -> Future:
        return self._pool.submit(self._run, translation.get_language(), job, args)

    @staticmethod
    def _run(language, job, args):
        with translation.override(language):
            return job(*args)

    def stop(self) -> None:
        # The thread's connection is closed on the thread itself.
        self._pool.submit(connections.close_all).result()
        self._pool.shutdown()


@dataclass(frozen=True)
class _Claim:
    """What one claim asks for: of the task's `own` ids, or of the `tools`' due
    rows (both None: any due row), up to `limit`."""

    own: tuple[int, ...] | None
    tools: tuple[int, ...] | None
    limit: int


class _ClaimPlan:
    """The order in which a run claims: its task's own ids, a batch at a time; then
    the other due rows of the tools those were for, while the run has their
    connections open. Without ids, any due row."""

    def __init__(self, delivery_ids: list[int] | None, max_deliveries: int | None):
        # A batch of ids at a time: a task of a thousand rows would otherwise have
        # every claim's query name all thousand.
        self.own_left = list(delivery_ids) if delivery_ids is not None else None
        self.tools: tuple[int, ...] | None = None
        self.max_deliveries = max_deliveries

    def next(self, *, handled: int, tools: set[int], waiting) -> _Claim | None:
        """The next claim, `handled` deliveries into the run, whose rows were of
        `tools`, with `waiting` tools sending nothing more; None: the run is done."""
        limit = int(settings.NOTIFICATIONS_CLAIM_BATCH)
        if self.max_deliveries is not None:
            limit = min(limit, self.max_deliveries - handled)
        if limit <= 0:
            return None
        if self.own_left:
            return _Claim(tuple(self.own_left[:limit]), None, limit)
        if self.own_left is not None:
            # The task's own rows are done: now the same tools' other due rows.
            if not tools - set(waiting):
                return None
            return _Claim(None, tuple(sorted(tools)), limit)
        return _Claim(None, self.tools, limit)

    def made(self, claim: _Claim) -> None:
        """`claim` was made: the plan moves past it."""
        if claim.own is not None:
            self.own_left = self.own_left[len(claim.own) :]
        elif self.own_left is not None:
            self.own_left, self.tools = None, claim.tools


#: How many times in a row one delivery is retried inside the run after a short
#: Retry-After, before it goes back to the queue.
INLINE_RETRIES = 3
#: Waits at least this long write the queued outcomes first (shorter ones are the
#: pace of sending itself).
FLUSH_BEFORE_WAIT_SECONDS = 0.25


@dataclass(eq=False)
class _Submission:
    """One delivery on its way: its submission (prepared on the run's thread), the
    mailbox slot it holds, and the throttles it met in this run."""

    delivery: Delivery
    subject: str
    submit: Callable[[], str]
    #: The mailbox's budget (None: not paced) and how many may be in flight at once.
    budget: Budget | None
    concurrency: int
    slot: MailboxSlot | None = None
    #: Gone out, its answer read later (`_Run.collect`).
    pending: PendingReply | None = None
    #: Throttled and retried inside this run so far.
    retries: int = 0
    #: Not to be submitted again before this (time.monotonic()): a Retry-After.
    not_before: float = 0.0


@dataclass(frozen=True)
class _Answer:
    """What one submission came back with."""

    reply: str = ""
    error: IntegrationError | None = None
    #: The error is a bug of ours, not the server's answer (the connection is
    #: dropped to be safe).
    crashed: bool = False
    #: Gone out, the server's reply not read yet (`_Run.resolve` reads it).
    pending: PendingReply | None = None
    #: Accepted, but the transport sent it twice (`replies.ResentReply`).
    resent: bool = False


def _submit(submit: Callable[[], str | PendingReply]) -> _Answer:
    """Run one submission, or read the reply it left pending (`submit` is then
    `PendingReply.result`): network only."""
    try:
        reply = submit()
        if isinstance(reply, PendingReply):
            return _Answer(pending=reply)
        return _Answer(reply=str(reply or ""), resent=getattr(reply, "resent", False))
    except IntegrationError as error:
        return _Answer(error=error)
    except Exception:
        logger.exception("A submission failed unexpectedly")
        return _Answer(
            error=DeliveryInternalError("unexpected error while sending"), crashed=True
        )


def _count_throttle(delivery: Delivery, worker: str) -> None:
    """One more throttle for the delivery (its row, while `worker` holds it)."""
    Delivery.objects.filter(
        pk=delivery.pk, claimed_by=worker, status=DeliveryStatus.SENDING
    ).update(throttle_count=F("throttle_count") + 1)
    delivery.throttle_count += 1


class _Run:
    """One call of `deliveries_send`: its claim token, connections and outcomes."""

    def __init__(self, worker: str | None = None):
        self.worker = worker or uuid.uuid4().hex
        self.summary = SendSummary()
        self.connections = _Connections()
        self.heartbeat = _Heartbeat(self.worker)
        #: Deliveries handed to `send` so far.
        self.handled = 0
        #: The tools of the rows this run claimed: it goes on with their due rows.
        self.tools: set[int] = set()
        #: Outcomes not written yet (`finish` queues, `flush` writes).
        self.outcomes: list[tuple[Delivery, dict]] = []
        #: Where it helps (`_work_aside`), the flushes of `sent_one` and the claim
        #: of the next batch go to a thread of the run's own, started when first
        #: needed: the write in flight (its outcomes), and the claim made ahead.
        self.aside_ok = _work_aside()
        self.asides: dict[str, _Aside] = {}
        self.writing: tuple[list, Future] | None = None
        self.ahead: tuple[_Claim, Future] | None = None
        #: The claim to make ahead once a server has answered (`claim_ahead_once_
        #: answered`), and whether one has.
        self.next_claim: Callable[[], _Claim | None] | None = None
        self.answered = False
        #: Integrations this run stops sending through, and until when (throttled,
        #: needing attention, or their mailbox's budget spent).
        self.waiting: dict[int, datetime] = {}
        #: Of those, the ones waiting because their mailbox's budget is spent.
        self.paced: set[int] = set()
        #: Per integration: (sender mailbox, budget or None when not paced, how many
        #: submissions may be in flight at once).
        self.budgets: dict[int, tuple[str, Budget | None, int]] = {}
        #: Submissions in flight side by side (their answers read by `collect`), and
        #: throttled ones waiting for their Retry-After to be submitted again
        #: (`submit`, `drain`).
        self.submissions: list[_Submission] = []
        self.retries: list[_Submission] = []
        #: Tools whose server accepted a message in this run: only then do their
        #: submissions run side by side (a wrong secret fails one, not four).
        self.accepted: set[int] = set()
        #: The claimed batch's messages, each rendered when it is sent.
        self.emails: BatchEmails | None = None
        #: Whether this run has a `RunProgress` row (`begin`), deleted at `close`.
        self.progress = False
        #: Claimed deliveries not attempted because their tool waits, by the time
        #: they wait for: given back together (`release_postponed`).
        self.postponed: dict[datetime, list[Delivery]] = {}
        #: Per one-at-a-time tool, its submission gone out whose reply is read
        #: before the tool's next one (`resolve`): the run's thread gets the next
        #: message ready while the server takes this one.
        self.awaiting: dict[int, tuple[_Submission, PendingReply]] = {}

    def wait(self, integration_id: int, until: datetime) -> None:
        """Send nothing more through the tool in this run; its deliveries wait until
        `until`."""
        self.waiting[integration_id] = max(
            until, self.waiting.get(integration_id, until)
        )

    def defer_waiting(self) -> None:
        """Push the due, unclaimed deliveries of waiting tools to the wait's end.

        Every such row of the tool, not only the task's own: this run works through
        its tools' due rows, and the tasks of the others would otherwise each run
        into the same wait. The caller schedules one follow-up task for them all.
        """
        for integration_id, until in self.waiting.items():
            rows = Delivery.objects.filter(
                integration_id=integration_id,
                status=DeliveryStatus.PENDING,
                next_attempt_at__lt=until,
            )
            ids = list(rows.values_list("pk", flat=True))
            if ids:
                rows.filter(pk__in=ids).update(next_attempt_at=until)
                for pk in ids:
                    self.summary.retry_at[pk] = until

    def send(self, delivery: Delivery) -> None:
        """Send one claimed delivery, or record why not.

        A tool that allows several submissions at once may still be sending it when
        this returns (`collect` and `drain` read the answers).
        """
        self.collect()
        self.resubmit()
        integration = delivery.integration
        if delivery.integration_id in self.waiting:
            self.postpone(delivery)
            return
        if integration.state == IntegrationState.INACTIVE:
            self.finish(delivery, DeliveryStatus.SKIPPED, error_code="tool_inactive")
            return
        if integration.state in WAITING_STATES:
            self.attention_wait(delivery)
            return
        if delivery.link_id is None and delivery.project_id is not None:
            self.finish(delivery, DeliveryStatus.SKIPPED, error_code="tool_unlinked")
            return
        if delivery.link_id is not None and not delivery.link.enabled:
            # Switched off after the delivery was written: nothing goes out.
            self.finish(delivery, DeliveryStatus.SKIPPED, error_code="link_disabled")
            return
        if not delivery.recipients:
            self.finish(delivery, DeliveryStatus.FAILED, error_code="no_recipients")
            return
        try:
            email = (
                self.emails.render(
                    delivery,
                    text_part=self.connections.get(integration).text_part,
                )
                if self.emails is not None
                else email_for(delivery)
            )
            if _answer_may_be_lost(delivery):
                # The last attempt's answer was lost: the server may hold it already.
                self.resolve(integration.pk)
                held = self.connections.get(integration).already_sent(
                    email, sender=delivery.answer_lost_from or None
                )
                if held:
                    self.finish(
                        delivery,
                        DeliveryStatus.SENT,
                        subject=email.subject[:300],
                        request_id="found in the sender's Sent Items",
                        error_code="",
                        sent_at=timezone.now(),
                        answer_lost=False,
                    )
                    return
                # Sent again, and shown so: not finding it proves little (Exchange
                # files a message in Sent Items after accepting it, not at once).
                delivery.resent_unconfirmed = True
            if delivery_recipients_refused(delivery):
                # Outside the tool's allowed recipient domains now: never sent.
                self.finish(
                    delivery, DeliveryStatus.FAILED, error_code=RECIPIENT_REFUSED
                )
                return
            _, budget, concurrency = self.pacing(integration)
            # The token (and anything else that reads or writes rows) on this thread.
            submit = metrics.timed_send(
                integration.provider, self.connections.get(integration).prepare(email)
            )
        except IntegrationError as error:
            self.failed(delivery, error)
            return
        except Exception:
            # A bug (a template error, say) must not leave the row claimed forever:
            # it is retried like a transient failure and fails after the last attempt.
            logger.exception("Delivery %s could not be sent", delivery.uuid)
            error = DeliveryInternalError("unexpected error while sending")
            self.drop(integration.pk)
            self.failed(delivery, error)
            return
        self.submit(
            _Submission(
                delivery=delivery,
                subject=email.subject,
                submit=submit,
                budget=budget,
                concurrency=concurrency,
            )
        )

    def wait_for_place(self, integration_id: int, concurrency: int) -> None:
        """Wait until fewer of the tool's submissions are in flight than it allows
        (the slots keep all workers together under that; unpaced, this does), and
        than one until its server has accepted one (a wrong secret fails one
        message, not four)."""
        limit = concurrency if integration_id in self.accepted else 1
        while (
            sum(s.delivery.integration_id == integration_id for s in self.submissions)
            >= limit
        ):
            self.collect(timeout=None, first=True)

    def pacing(self, integration: Integration) -> tuple[str, Budget | None, int]:
        """The tool's sender mailbox, its budget (None: not paced) and how many
        submissions may be in flight at once; looked up once per run."""
        if integration.pk not in self.budgets:
            provider = provider_for(integration)
            limits = provider.sending_limits
            self.budgets[integration.pk] = (
                provider.sender,
                mailbox_budget(provider),
                limits.concurrency if limits else 1,
            )
        return self.budgets[integration.pk]

    def senders(self) -> dict[int, str]:
        """The sender mailbox of each tool looked up so far (`pacing`)."""
        return {pk: pacing[0] for pk, pacing in self.budgets.items()}

    def record_senders(self, batch) -> None:
        """Write on each claimed delivery the mailbox this run sends it from, so
        that if the worker dies before recording the answer, the next attempt
        looks the message up where it went (the tool's From may change in between).
        One UPDATE per tool of the batch; a delivery whose last answer was lost
        keeps the mailbox of that attempt."""
        by_sender = {}
        for delivery in batch:
            if _answer_may_be_lost(delivery):
                continue
            sender = self.pacing(delivery.integration)[0][:320]
            if delivery.answer_lost_from != sender:
                by_sender.setdefault(sender, []).append(delivery.pk)
                delivery.answer_lost_from = sender
        for sender, ids in by_sender.items():
            Delivery.objects.filter(pk_in(ids), claimed_by=self.worker).update(
                answer_lost_from=sender
            )

    def slot(self, integration: Integration) -> MailboxSlot | None:
        """One submission from the tool's sender mailbox, when the tool is paced."""
        mailbox, budget, _ = self.pacing(integration)
        if budget is None:
            return None
        return mailbox_slot_take(
            integration_id=integration.pk, mailbox=mailbox, budget=budget
        )

    def submit(self, submission: _Submission) -> None:
        """Take a slot of the mailbox's budget, then submit. Returns once the
        message has gone out: the run gets the next message ready while the server
        answers (`wait_for_place` holds it back when the tool has as many in flight
        as it allows).

        A wait for the slot, or for a Retry-After, shorter than
        NOTIFICATIONS_INLINE_RETRY_AFTER_SECONDS (all of this delivery's waits
        together) is spent here, collecting the other submissions meanwhile; a
        longer one defers the delivery, and the tool's others, to the queue.
        """
        delivery = submission.delivery
        # The tool's last message first: its reply may make this one wait.
        self.resolve(delivery.integration_id)
        if submission.concurrency > 1:
            self.wait_for_place(delivery.integration_id, submission.concurrency)
        inline = float(settings.NOTIFICATIONS_INLINE_RETRY_AFTER_SECONDS)
        waited = 0.0
        while True:
            if delivery.integration_id in self.waiting:
                # Throttled or out of budget meanwhile: not attempted after all.
                self.postpone(delivery)
                return
            pause = submission.not_before - time.monotonic()
            if pause > 0:
                self.pause(pause)
                continue
            slot = self.slot(delivery.integration)
            if slot is None or slot.taken:
                break
            if waited + slot.wait > inline:
                self.defer(delivery, slot.free_at)
                return
            waited += slot.wait
            self.pause(slot.wait)
        submission.slot = slot
        answer = _submit(submission.submit)
        if answer.pending is None:
            self.settle(submission, answer)
        elif submission.concurrency > 1 and answer.pending.pollable:
            # Side by side with the tool's others (`wait_for_place` keeps count).
            submission.pending = answer.pending
            self.submissions.append(submission)
        else:
            # Read before the tool's next submission (`resolve`).
            self.awaiting[delivery.integration_id] = (submission, answer.pending)

    def pause(self, seconds: float) -> None:
        """Wait here, recording the outcomes of submissions that finish meanwhile.

        A longer wait writes the queued outcomes first, so that a worker killed while
        waiting sends nothing twice.
        """
        # The writes below are part of the wait, not added to it.
        deadline = time.monotonic() + seconds
        self.resolve()
        if seconds >= FLUSH_BEFORE_WAIT_SECONDS:
            self.flush()
        while (left := deadline - time.monotonic()) > 0:
            if self.submissions:
                self.collect(timeout=left, first=True)
            else:
                time.sleep(left)
        self.heartbeat.beat()

    def collect(self, *, timeout: float | None = 0, first: bool = False) -> None:
        """Record the outcomes of the submissions in flight that have their answer:
        those answered now (`timeout` 0), or waiting up to `timeout` seconds (None:
        without limit) for the first (`first`) or all of them."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.submissions:
            answered = [s for s in self.submissions if s.pending.done()]
            for submission in answered:
                if submission in self.submissions:
                    self.submissions.remove(submission)
                    self.settle(submission, _submit(submission.pending.result))
            if not self.submissions or (first and answered):
                return
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            self.submissions[0].pending.wait(left)

    def resolve(self, integration_id: int | None = None) -> None:
        """Read the reply left pending on the tool's connection (None: on every
        tool's) and record its outcome."""
        tools = list(self.awaiting) if integration_id is None else [integration_id]
        for tool in tools:
            awaiting = self.awaiting.pop(tool, None)
            if awaiting is not None:
                submission, pending = awaiting
                self.settle(submission, _submit(pending.result))

    def drop(self, integration_id: int) -> None:
        """Close the tool's connection (a new one opens for its next message),
        after reading the reply still pending on it: closing first would lose
        that message's outcome, and it would go again."""
        self.resolve(integration_id)
        self.connections.drop(integration_id)

    def resubmit(self) -> None:
        """Submit again the throttled deliveries whose Retry-After was short."""
        while self.retries:
            self.submit(self.retries.pop(0))

    def drain(self) -> None:
        """Wait for every submission under way, and retry the throttled ones
        waiting here, until all have an outcome."""
        while self.submissions or self.retries or self.awaiting:
            self.resolve()
            if self.retries:
                self.resubmit()
            else:
                self.collect(timeout=None)

    def settle(self, submission: _Submission, answer: _Answer) -> None:
        """The server answered (on the run's thread): give the slot back, telling
        the mailbox's budget whether it was throttled, and record the outcome."""
        delivery, error = submission.delivery, answer.error
        self.answered = True
        pause = None
        if isinstance(error, Throttled):
            _count_throttle(delivery, self.worker)
            pause = self.throttle_pause(delivery, error)
        if submission.slot is not None:
            # A success is written with the mailbox's next take (see `close`).
            mailbox_slot_release(
                slot=submission.slot,
                budget=submission.budget,
                throttled_for=pause,
                later=True,
            )
            submission.slot = None
        if error is None:
            if delivery.integration_id not in self.accepted:
                # The tool's first success in this run closes its open incident.
                health_send_succeeded(integration=delivery.integration)
            self.accepted.add(delivery.integration_id)
            self.finish(
                delivery,
                DeliveryStatus.SENT,
                subject=submission.subject[:300],
                request_id=answer.reply[:500],
                error_code="",
                sent_at=timezone.now(),
                resent_unconfirmed=delivery.resent_unconfirmed or answer.resent,
                answer_lost=False,
            )
            return
        if answer.crashed:
            self.drop(delivery.integration_id)
        if isinstance(error, Throttled):
            self.throttled(delivery, error, pause=pause, submission=submission)
        else:
            self.failed(delivery, error)

    def attention_wait(self, delivery: Delivery) -> None:
        """The tool needs a person (attention, re-authorization): the delivery, not
        attempted, waits until the next recheck, and the tool's others with it; it
        fails once older than NOTIFICATIONS_ATTENTION_MAX_AGE_SECONDS."""
        now = timezone.now()
        age = (now - delivery.created_at).total_seconds()
        # Not an attempt: give back the one the claim counted.
        common = {"attempts": F("attempts") - 1}
        if age >= float(settings.NOTIFICATIONS_ATTENTION_MAX_AGE_SECONDS):
            self.finish(
                delivery,
                DeliveryStatus.FAILED,
                error_code=TOOL_NEEDS_ATTENTION_TOO_LONG,
                **common,
            )
            return
        until = attention_wait_until(now)
        self.finish(
            delivery,
            DeliveryStatus.PENDING,
            next_attempt_at=until,
            error_code=TOOL_NEEDS_ATTENTION,
            **common,
        )
        self.wait(delivery.integration_id, until)

    def postpone(self, delivery: Delivery) -> None:
        """The tool is waiting (throttled, out of budget, needing attention): the
        delivery, not attempted, waits with it. Given back with the batch's others
        (`release_postponed`): one UPDATE, not one per row."""
        at = self.waiting[delivery.integration_id]
        self.postponed.setdefault(at, []).append(delivery)
        if delivery.integration_id in self.paced:
            self.summary.deferred += 1
        else:
            self.summary.retrying += 1
        self.summary.retry_at[delivery.pk] = at

    def release_postponed(self) -> None:
        """Give back the postponed deliveries, one UPDATE per time they wait for."""
        postponed, self.postponed = self.postponed, {}
        for at, deliveries in postponed.items():
            _release(deliveries, self.worker, at=at)

    def defer(self, delivery: Delivery, until: datetime) -> None:
        """The mailbox's budget is spent: the delivery (not attempted) and the tool's
        others wait until a slot frees."""
        _release([delivery], self.worker, at=until)
        self.wait(delivery.integration_id, until)
        self.paced.add(delivery.integration_id)
        self.summary.deferred += 1
        self.summary.retry_at[delivery.pk] = until

    def finish(self, delivery: Delivery, status: str, **fields) -> None:
        """Record the delivery's outcome (`status` and the fields to write).

        Queued, not written: `flush` writes it with the others.
        """
        self.outcomes.append((delivery, {"status": status, **fields}))

    def flush(self, *, wait: bool = True) -> None:
        """Write the queued outcomes in one transaction (see `_finish`).

        Called at least every NOTIFICATIONS_OUTCOME_FLUSH deliveries, when a group
        of sends completes; call it before any wait too, so that a worker killed
        while waiting sends nothing twice. An outcome whose row another worker
        took over (this run's lease ran out) is dropped: that worker's wins.

        The write in flight on the run's `_Aside` thread is collected first; with
        `wait=False` this write may go there too, and this returns at once (a
        killed worker leaves at most one such write more unwritten). A write
        that failed has its outcomes queued again and its error raised.
        """
        self.collect_written()
        outcomes, self.outcomes = self.outcomes, []
        if not outcomes:
            return
        if not wait and self.aside_ok:
            self.writing = (
                outcomes,
                self.aside_thread("outcomes").submit(self.write, outcomes),
            )
            return
        try:
            written = self.write(outcomes)
        except Exception:
            # Nothing was written (one transaction): keep them for the next flush.
            self.outcomes[:0] = outcomes
            raise
        self.account(outcomes, written)

    def write(self, outcomes: list[tuple[Delivery, dict]]) -> set[int]:
        # Never while the heartbeat renews the same rows: on PostgreSQL the two
        # statements could lock them in opposite orders and deadlock.
        with self.heartbeat.lock:
            return _finish(outcomes, self.worker)

    def collect_written(self) -> None:
        """Wait for the outcome write in flight, if any, and count what it wrote."""
        if self.writing is None:
            return
        (outcomes, future), self.writing = self.writing, None
        try:
            written = future.result()
        except Exception:
            self.outcomes[:0] = outcomes
            raise
        self.account(outcomes, written)

    def begin(self, batch: list[Delivery]) -> None:
        """Record that this run begins sending `batch` (`RunProgress`), before its
        first message goes out: should the worker die, the rows it claimed after
        this batch were never attempted. One statement, committed at once."""
        claimed_at = max(delivery.claimed_at for delivery in batch)
        RunProgress.objects.bulk_create(
            [RunProgress(worker=self.worker, batch_claimed_at=claimed_at)],
            update_conflicts=True,
            unique_fields=["worker"],
            update_fields=["batch_claimed_at", "updated_at"],
        )
        self.progress = True

    def end_progress(self) -> None:
        if self.progress:
            RunProgress.objects.filter(worker=self.worker).delete()
            self.progress = False

    def aside_thread(self, role: str) -> _Aside:
        if role not in self.asides:
            self.asides[role] = _Aside(f"{role}-{self.worker[:12]}")
        return self.asides[role]

    def claim(self, claim: _Claim) -> tuple[list[Delivery], BatchEmails | None]:
        """The batch `claim` asks for, with its messages (`BatchEmails`): the one
        claimed ahead when it was claimed for the same, else claimed now (one
        claimed ahead for something else is given back)."""
        if self.ahead is not None and self.ahead[0] == claim:
            _claim, future = self.ahead
            self.ahead = None
            return future.result()
        self.give_back_ahead()
        return self.claim_batch(claim, list(self.waiting), self.senders())

    def claim_ahead_once_answered(self, next_claim: Callable[[], _Claim | None]):
        """Claim ahead (`claim_ahead`) what `next_claim()` names, as soon as a
        server has answered in this run: the first batch's sends wait for one
        answer anyway (`wait_for_place`), and that answer (its TLS handshake, the
        token before it) comes sooner with no claim competing for the process."""
        self.next_claim = next_claim
        self.claim_ahead_if_answered()

    def claim_ahead_if_answered(self) -> None:
        if self.next_claim is not None and self.answered:
            next_claim, self.next_claim = self.next_claim, None
            self.claim_ahead(next_claim())

    def claim_ahead(self, claim: _Claim | None) -> None:
        """Claim the next batch on the run's `_Aside` thread while this one is
        sent, where that helps; `claim` None: there is no next one."""
        if claim is not None and self.aside_ok:
            future = self.aside_thread("claims").submit(
                self.claim_batch, claim, list(self.waiting), self.senders()
            )
            self.ahead = (claim, future)

    def claim_batch(
        self, claim: _Claim, exclude: list[int], senders: dict[int, str]
    ) -> tuple[list[Delivery], BatchEmails | None]:
        """Claim (`deliveries_claim`), record where each message goes from
        (`senders`, the tools' this run has looked up so far, in the claim itself;
        `record_senders` for the others) and make the batch's queries
        (`BatchEmails`)."""
        batch = deliveries_claim(
            worker=self.worker,
            delivery_ids=None if claim.own is None else list(claim.own),
            integration_ids=None if claim.tools is None else list(claim.tools),
            exclude_integrations=exclude,
            limit=claim.limit,
            senders=senders,
        )
        if not batch:
            return batch, None
        with self.heartbeat.lock:  # the run's rows: never while they are renewed
            self.record_senders(batch)
        return batch, BatchEmails(batch)

    def give_back_ahead(self) -> None:
        """Give back the batch claimed ahead and not sent (the run stopped, or
        went on with other rows): due at once, or when their tool's wait ends;
        the caller schedules a look then (`summary.retry_at`)."""
        if self.ahead is None:
            return
        (_claim, future), self.ahead = self.ahead, None
        batch, _emails = future.result()
        now = timezone.now()
        by_time: dict[datetime, list[Delivery]] = {}
        for delivery in batch:
            at = self.waiting.get(delivery.integration_id, now)
            by_time.setdefault(at, []).append(delivery)
            self.summary.retry_at[delivery.pk] = at
        for at, deliveries in by_time.items():
            _release(deliveries, self.worker, at=at)

    def account(self, outcomes: list[tuple[Delivery, dict]], written: set[int]):
        """Count the outcomes written in the run's summary and metrics."""
        for delivery, fields in outcomes:
            if delivery.pk not in written:
                logger.warning(
                    "Delivery %s was taken over by another worker", delivery.uuid
                )
                continue
            status = fields["status"]
            metrics.delivery_outcome(tool=delivery.integration.provider, status=status)
            if status == DeliveryStatus.SENT:
                self.summary.sent += 1
            elif status == DeliveryStatus.FAILED:
                self.summary.failed += 1
            elif status == DeliveryStatus.SKIPPED:
                self.summary.skipped += 1
            else:
                self.summary.retrying += 1
                self.summary.retry_at[delivery.pk] = fields["next_attempt_at"]

    def sent_one(self) -> None:
        """After each send (a group of one): flush when enough outcomes are queued,
        claim the next batch ahead once a server has answered, and renew the
        leases when due."""
        self.handled += 1
        if len(self.outcomes) >= max(1, int(settings.NOTIFICATIONS_OUTCOME_FLUSH)):
            self.flush(wait=False)
        self.claim_ahead_if_answered()
        self.heartbeat.beat()

    def close(self) -> None:
        """Write what is still queued (after an error too), stop the heartbeat and
        close the connections."""
        try:
            for step, what in (
                # A write that failed aside queues its outcomes again: the flush
                # below writes them with the rest.
                (self.collect_written, "write the outcomes"),
                (self.drain, "finish the sends"),
                (self.release_postponed, "give back the deliveries"),
                (self.give_back_ahead, "give back the deliveries claimed ahead"),
                (self.flush, "write the outcomes"),
                # Without it, rows left claimed count as attempted (the safe side).
                (self.end_progress, "forget the batch begun"),
            ):
                try:
                    step()  # each does nothing when it has nothing to do
                except Exception:
                    # Their rows stay claimed: taken over (and sent, or looked up
                    # and sent) once the lease runs out.
                    logger.exception("Could not %s of run %s", what, self.worker)
        finally:
            if self.asides:
                # Still in flight only if a step above was interrupted: waited
                # for; if one failed, its rows stay claimed, as above.
                for step, what in (
                    (self.collect_written, "write the outcomes"),
                    (self.give_back_ahead, "give back the deliveries claimed ahead"),
                ):
                    try:
                        step()
                    except Exception:
                        logger.exception("Could not %s of run %s", what, self.worker)
                for aside in self.asides.values():
                    aside.stop()
            # The slots of the last answers, held back by `settle`.
            mailbox_slots_flush()
            self.heartbeat.stop()
            self.connections.close()

    def failed(self, delivery: Delivery, error: IntegrationError) -> None:
        """Record a failed attempt: retried later while retryable and attempts are
        left; when the error concerns the tool (a person must fix it), the tool is
        marked and the delivery waits for it (no attempt used); else failed. A
        throttle is no attempt (`throttled`)."""
        if isinstance(error, Throttled):
            _count_throttle(delivery, self.worker)
            self.throttled(delivery, error, pause=self.throttle_pause(delivery, error))
            return
        integration = delivery.integration
        max_attempts = int(settings.NOTIFICATIONS_MAX_ATTEMPTS)
        common = {
            "error_code": error.code[:64],
            "request_id": (error.request_id or "")[:500],
        }
        if error.code in UNCERTAIN_OUTCOMES:
            # Kept until the message is sent, whatever later attempts answer.
            common["answer_lost"] = True
            common["answer_lost_from"] = self.pacing(integration)[0][:320]
        logger.warning(
            "Delivery %s attempt %s through %s failed: %s",
            delivery.uuid,
            delivery.attempts,
            integration.provider,
            error,
        )
        if isinstance(error, (ConnectionFailed, ServiceUnavailable)):
            # The session may be broken (a dropped connection, an SMTP 4xx).
            self.drop(integration.pk)
        if error.retryable and delivery.attempts < max_attempts:
            delay = retry_delay(
                attempts=delivery.attempts, retry_after=error.retry_after
            )
            at = timezone.now() + timedelta(seconds=delay)
            self.finish(delivery, DeliveryStatus.PENDING, next_attempt_at=at, **common)
            return
        if error.needs_attention and not error.retryable:
            # The tool is broken, not this message: mark it (an incident, one
            # email), and this delivery and the tool's others wait for it (not
            # failed, no attempt used) until a check or a save makes it work.
            health_send_failed(integration=integration, error=error)
            if integration.state != IntegrationState.INACTIVE:
                until = attention_wait_until()
                self.finish(
                    delivery,
                    DeliveryStatus.PENDING,
                    next_attempt_at=until,
                    **{
                        **common,
                        "error_code": TOOL_NEEDS_ATTENTION,
                        "attempts": F("attempts") - 1,
                    },
                )
                self.wait(integration.pk, until)
                return
        self.finish(delivery, DeliveryStatus.FAILED, **common)

    @staticmethod
    def throttle_pause(delivery: Delivery, error: Throttled) -> float:
        """How long the mailbox should rest after `error`: the server's Retry-After
        (at most NOTIFICATIONS_RETRY_AFTER_MAX_SECONDS), else a backoff on how often
        this delivery was throttled."""
        retry_after = error.retry_after
        if retry_after is None:
            return retry_delay(attempts=max(1, delivery.throttle_count))
        ceiling = float(settings.NOTIFICATIONS_RETRY_AFTER_MAX_SECONDS)
        if not math.isfinite(retry_after) or retry_after > ceiling:
            return ceiling
        return max(0.0, retry_after)

    def throttled(
        self,
        delivery: Delivery,
        error: Throttled,
        *,
        pause: float,
        submission: _Submission | None = None,
    ) -> None:
        """The server asked to slow down (already counted in `throttle_count`).

        Not an attempt: the claim's is given back. After a short Retry-After the
        same submission goes again from here, at most INLINE_RETRIES times in a row;
        otherwise the delivery waits `pause` in the queue, and the tool's others with
        it. It fails ("throttled_too_long") only once older than
        NOTIFICATIONS_THROTTLE_MAX_AGE_SECONDS.
        """
        integration = delivery.integration
        metrics.throttle_reply(tool=integration.provider, error=error)
        logger.info(
            "Delivery %s through %s throttled (%s), resting %.1fs: %s",
            delivery.uuid,
            integration.provider,
            delivery.throttle_count,
            pause,
            error,
        )
        if error.status == 421:
            # Exchange closes the session with its 421.
            self.drop(integration.pk)
        common = {
            "error_code": error.code[:64],
            "request_id": (error.request_id or "")[:500],
            # A throttle is not an attempt: give back the one the claim counted.
            "attempts": F("attempts") - 1,
        }
        age = (timezone.now() - delivery.created_at).total_seconds()
        if age >= float(settings.NOTIFICATIONS_THROTTLE_MAX_AGE_SECONDS):
            self.finish(
                delivery,
                DeliveryStatus.FAILED,
                **{**common, "error_code": "throttled_too_long"},
            )
            return
        inline = float(settings.NOTIFICATIONS_INLINE_RETRY_AFTER_SECONDS)
        if (
            submission is not None
            and error.retry_after is not None
            and pause < inline
            and submission.retries < INLINE_RETRIES
        ):
            submission.retries += 1
            submission.not_before = time.monotonic() + pause
            self.retries.append(submission)
            return
        at = timezone.now() + timedelta(
            seconds=retry_delay(attempts=delivery.throttle_count, retry_after=pause)
        )
        self.finish(delivery, DeliveryStatus.PENDING, next_attempt_at=at, **common)
        # The tool's other deliveries wait too instead of being refused one by one.
        self.wait(integration.pk, at)


def deliveries_send(
    *,
    delivery_ids: list[int] | None = None,
    max_deliveries: int | None = None,
    worker: str | None = None,
    on_claim: Callable[[], object] | None = None,
) -> SendSummary:
    """Send the due deliveries among `delivery_ids`, then the other due deliveries
    of their tools (or, without `delivery_ids`, every due one).

    Claims NOTIFICATIONS_CLAIM_BATCH at a time, for up to
    NOTIFICATIONS_RUN_MAX_SECONDS (then `summary.unfinished` is set), and sends each
    tool's share over one connection (one token, one keep-alive or SMTP session) for
    the whole run; many small tasks due together are sent by the first one to run,
    and the others find nothing (one query). Retryable failures (throttling, 5xx,
    timeouts, dropped connections, SMTP 4xx) are scheduled again with backoff,
    honouring Retry-After; permanent ones fail the delivery at once, except those
    that concern the tool itself (authentication, permission, sender), which mark
    it "Needs attention" (an incident: `health_checks`) while the delivery waits
    for it, as every delivery through a tool needing attention does, up to
    NOTIFICATIONS_ATTENTION_MAX_AGE_SECONDS. A paced tool's deliveries beyond its mailbox's budget are not
    attempted but wait for a free slot.

    `worker` is the claim token (`claimed_by`; a fresh one by default); `on_claim`
    is called once, after the first rows are claimed (the task books its recovery
    then). Leases are renewed while the run lives; outcomes are written a batch at
    a time (see the module's docstring for what a kill may send twice). Returns what
    happened; the caller schedules the next look at `summary.retry_at`.
    """
    run = _Run(worker=worker)
    deadline = time.monotonic() + float(settings.NOTIFICATIONS_RUN_MAX_SECONDS)
    plan = _ClaimPlan(delivery_ids, max_deliveries)
    try:
        while True:
            if time.monotonic() >= deadline:
                run.summary.unfinished = True
                break
            # A claim ahead not made yet (no answer came) is made here instead.
            run.next_claim = None
            claim = plan.next(handled=run.handled, tools=run.tools, waiting=run.waiting)
            if claim is None:
                break
            batch, run.emails = run.claim(claim)
            plan.made(claim)
            if not batch:
                if claim.own is not None:
                    # None of these ids was due: on to the task's next ones.
                    continue
                break
            run.begin(batch)
            if not run.tools:
                run.heartbeat.start()
                if on_claim is not None:
                    on_claim()
            if claim.tools is not None:
                run.summary.others += len(batch)
            run.tools.update(delivery.integration_id for delivery in batch)
            # The next batch is claimed while this one is sent (where that helps):
            # the same claim the loop makes next, unless a tool starts waiting.
            after = run.handled + len(batch)
            run.claim_ahead_once_answered(
                lambda after=after: plan.next(
                    handled=after, tools=run.tools, waiting=run.waiting
                )
            )
            for delivery in batch:
                run.send(delivery)
                run.sent_one()
            run.release_postponed()
        run.drain()
        run.release_postponed()
        run.flush()
        run.defer_waiting()
    finally:
        run.close()
    return run.summary


@transaction.atomic
def delivery_resend(*, delivery: Delivery) -> Delivery:
    """Send a failed (or not sent) delivery again, as the same message.

    Same row, same Message-ID; recipients are looked up again only when there were
    none.
    """
    if not delivery.recipients and delivery.link_id:
        Delivery.objects.filter(pk=delivery.pk).update(
            recipients=link_recipients(delivery.link)
        )
    updated = Delivery.objects.filter(
        pk=delivery.pk, status__in=[DeliveryStatus.FAILED, DeliveryStatus.SKIPPED]
    ).update(
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=timezone.now(),
        error_code="",
        claimed_by="",
        lease_expires_at=None,
        updated_at=timezone.now(),
    )
    delivery.refresh_from_db()
    if updated:
        enqueue_on_commit([delivery])
    return delivery
