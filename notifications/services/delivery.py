"""Sending deliveries: claim, send through one connection per tool, retry, resend.

A delivery is claimed with one atomic UPDATE (`status` pending and due, or sending
with an expired lease), so two workers never send the same row at the same time; a
worker that dies leaves a lease that expires, and the row is claimed again. On
PostgreSQL the candidates are picked with SELECT ... FOR UPDATE SKIP LOCKED first, so
concurrent workers take different rows instead of waiting on each other.

Before each message the sender mailbox's budget is checked (`pacing`): over it, the
tool's deliveries wait for a free slot instead of running into Microsoft's limit.
"""

import logging
import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from integrations.exceptions import (
    ConnectionFailed,
    IntegrationError,
    ServiceUnavailable,
    Throttled,
)
from integrations.models import Integration, IntegrationState
from integrations.services import integration_mark_needs_attention, provider_for
from notifications.emails import email_for
from notifications.exceptions import DeliveryInternalError
from notifications.models import Delivery, DeliveryStatus
from notifications.services.events import link_recipients
from notifications.services.outbox import enqueue_on_commit
from notifications.services.pacing import (
    mailbox_budget,
    mailbox_slot_settle,
    mailbox_slot_take,
)

logger = logging.getLogger(__name__)


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


def _due_q(now: datetime) -> Q:
    return Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now) | Q(
        status=DeliveryStatus.SENDING, lease_expires_at__lt=now
    )


def deliveries_claim(
    *,
    worker: str,
    delivery_ids: list[int] | None = None,
    exclude_integrations=(),
    limit: int | None = None,
) -> list[Delivery]:
    """Claim up to `limit` due deliveries (of `delivery_ids`, or any) for `worker`."""
    limit = limit or int(settings.NOTIFICATIONS_CLAIM_BATCH)
    lease = float(settings.NOTIFICATIONS_LEASE_SECONDS)
    now = timezone.now()
    with transaction.atomic():
        candidates = Delivery.objects.filter(_due_q(now))
        if delivery_ids is not None:
            candidates = candidates.filter(pk__in=delivery_ids)
        if exclude_integrations:
            candidates = candidates.exclude(integration_id__in=exclude_integrations)
        if connection.features.has_select_for_update_skip_locked:
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
        Delivery.objects.filter(_due_q(now), pk__in=picked).update(
            status=DeliveryStatus.SENDING,
            claimed_by=worker,
            lease_expires_at=now + timedelta(seconds=lease),
            attempts=F("attempts") + 1,
            updated_at=now,
        )
    return list(
        Delivery.objects.filter(
            pk__in=picked, claimed_by=worker, status=DeliveryStatus.SENDING
        )
        .select_related("project", "event", "event__scan", "link", "integration")
        .order_by("integration_id", "pk")
    )


def _finish(delivery: Delivery, worker: str, **fields) -> bool:
    """Write the outcome, only if `worker` still holds the claim."""
    fields.setdefault("claimed_by", "")
    fields.setdefault("lease_expires_at", None)
    fields["updated_at"] = timezone.now()
    updated = Delivery.objects.filter(
        pk=delivery.pk, claimed_by=worker, status=DeliveryStatus.SENDING
    ).update(**fields)
    for name, value in fields.items():
        setattr(delivery, name, value)
    return bool(updated)


def _release(deliveries: list[Delivery], worker: str, *, at: datetime) -> None:
    """Give claimed but unattempted deliveries back, due at `at`."""
    Delivery.objects.filter(
        pk__in=[d.pk for d in deliveries],
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


class _Run:
    """One call of `deliveries_send`: its claim token, connections and outcomes."""

    def __init__(self):
        self.worker = uuid.uuid4().hex
        self.summary = SendSummary()
        self.connections = _Connections()
        #: Integrations this run stops sending through, and until when (throttled,
        #: needing attention, or their mailbox's budget spent).
        self.waiting: dict[int, datetime] = {}
        #: Of those, the ones waiting because their mailbox's budget is spent.
        self.paced: set[int] = set()
        #: Per integration: (sender mailbox, budget), or None when not paced.
        self.budgets: dict[int, tuple[str, int] | None] = {}

    def wait(self, integration_id: int, until: datetime) -> None:
        """Send nothing more through the tool in this run; its deliveries wait until
        `until`."""
        self.waiting[integration_id] = max(
            until, self.waiting.get(integration_id, until)
        )

    def defer_waiting(self, delivery_ids: list[int] | None) -> None:
        """Push the due, unclaimed deliveries of waiting tools to the wait's end.

        Of `delivery_ids` (a task's own rows), or of every row for a sweep, so that
        the caller schedules one follow-up task for them at the wait's end.
        """
        for integration_id, until in self.waiting.items():
            rows = Delivery.objects.filter(
                integration_id=integration_id,
                status=DeliveryStatus.PENDING,
                next_attempt_at__lt=until,
            )
            if delivery_ids is not None:
                rows = rows.filter(pk__in=delivery_ids)
            ids = list(rows.values_list("pk", flat=True))
            if ids:
                rows.filter(pk__in=ids).update(next_attempt_at=until)
                for pk in ids:
                    self.summary.retry_at[pk] = until

    def send(self, delivery: Delivery) -> None:
        integration = delivery.integration
        if delivery.integration_id in self.waiting:
            at = self.waiting[delivery.integration_id]
            _release([delivery], self.worker, at=at)
            if delivery.integration_id in self.paced:
                self.summary.deferred += 1
            else:
                self.summary.retrying += 1
            self.summary.retry_at[delivery.pk] = at
            return
        if integration.state == IntegrationState.INACTIVE:
            self.finish(delivery, DeliveryStatus.SKIPPED, error_code="tool_inactive")
            return
        if delivery.link_id is None:
            self.finish(delivery, DeliveryStatus.SKIPPED, error_code="tool_unlinked")
            return
        if not delivery.link.enabled:
            # Switched off after the delivery was written: nothing goes out.
            self.finish(delivery, DeliveryStatus.SKIPPED, error_code="link_disabled")
            return
        if not delivery.recipients:
            self.finish(delivery, DeliveryStatus.FAILED, error_code="no_recipients")
            return
        slot = None
        try:
            email = email_for(delivery)
            slot = self.slot(integration)
            if slot is not None and not slot.taken:
                self.defer(delivery, slot.free_at)
                return
            reply = self.connections.get(integration).send(email)
        except IntegrationError as error:
            self.failed(delivery, error)
            return
        except Exception:
            # A bug (a template error, say) must not leave the row claimed forever:
            # it is retried like a transient failure and fails after the last attempt.
            logger.exception("Delivery %s could not be sent", delivery.uuid)
            error = DeliveryInternalError("unexpected error while sending")
            self.connections.drop(integration.pk)
            self.failed(delivery, error)
            return
        finally:
            if slot is not None:
                mailbox_slot_settle(slot=slot)
        self.finish(
            delivery,
            DeliveryStatus.SENT,
            subject=email.subject[:300],
            request_id=str(reply or "")[:500],
            error_code="",
            sent_at=timezone.now(),
        )

    def slot(self, integration: Integration):
        """One submission from the tool's sender mailbox, when the tool is paced."""
        if integration.pk not in self.budgets:
            provider = provider_for(integration)
            budget = mailbox_budget(provider)
            self.budgets[integration.pk] = (provider.sender, budget) if budget else None
        paced = self.budgets[integration.pk]
        if paced is None:
            return None
        mailbox, budget = paced
        return mailbox_slot_take(
            integration_id=integration.pk, mailbox=mailbox, budget=budget
        )

    def defer(self, delivery: Delivery, until: datetime) -> None:
        """The mailbox's budget is spent: the delivery (not attempted) and the tool's
        others wait until a slot frees."""
        _release([delivery], self.worker, at=until)
        self.wait(delivery.integration_id, until)
        self.paced.add(delivery.integration_id)
        self.summary.deferred += 1
        self.summary.retry_at[delivery.pk] = until

    def finish(self, delivery: Delivery, status: str, **fields) -> None:
        if not _finish(delivery, self.worker, status=status, **fields):
            # Our lease expired and another worker took the row over: its outcome wins.
            logger.warning(
                "Delivery %s was taken over by another worker", delivery.uuid
            )
            return
        if status == DeliveryStatus.SENT:
            self.summary.sent += 1
        elif status == DeliveryStatus.FAILED:
            self.summary.failed += 1
        elif status == DeliveryStatus.SKIPPED:
            self.summary.skipped += 1
        else:
            self.summary.retrying += 1
            self.summary.retry_at[delivery.pk] = fields["next_attempt_at"]

    def failed(self, delivery: Delivery, error: IntegrationError) -> None:
        integration = delivery.integration
        max_attempts = int(settings.NOTIFICATIONS_MAX_ATTEMPTS)
        common = {
            "error_code": error.code[:64],
            "request_id": (error.request_id or "")[:500],
        }
        logger.warning(
            "Delivery %s attempt %s through %s failed: %s",
            delivery.uuid,
            delivery.attempts,
            integration.provider,
            error,
        )
        if isinstance(error, (ConnectionFailed, ServiceUnavailable)):
            # The session may be broken (a dropped connection, an SMTP 421).
            self.connections.drop(integration.pk)
        if error.retryable and delivery.attempts < max_attempts:
            delay = retry_delay(
                attempts=delivery.attempts, retry_after=error.retry_after
            )
            at = timezone.now() + timedelta(seconds=delay)
            self.finish(delivery, DeliveryStatus.PENDING, next_attempt_at=at, **common)
            if isinstance(error, Throttled):
                # The server asked this client to slow down: the tool's other
                # deliveries wait too instead of being refused one by one.
                self.wait(integration.pk, at)
            return
        self.finish(delivery, DeliveryStatus.FAILED, **common)
        if error.needs_attention:
            integration_mark_needs_attention(integration=integration, error=error)
            # The rest would fail the same way; they wait for the next run.
            base = float(settings.NOTIFICATIONS_RETRY_BASE_SECONDS)
            self.wait(integration.pk, timezone.now() + timedelta(seconds=base))


def deliveries_send(
    *, delivery_ids: list[int] | None = None, max_deliveries: int | None = None
) -> SendSummary:
    """Send the due deliveries among `delivery_ids` (or every due one).

    Claims them a few at a time and sends each tool's share over one connection
    (one token, one keep-alive or SMTP session) for the whole run. Retryable
    failures (throttling, 5xx, timeouts, dropped connections, SMTP 4xx) are
    scheduled again with backoff, honouring Retry-After; permanent ones fail the
    delivery at once, and those that concern the tool itself (authentication,
    permission, sender) also mark it "Needs attention". A paced tool's deliveries
    beyond its mailbox's budget are not attempted but wait for a free slot. Returns
    what happened; the caller schedules the next look at `summary.retry_at`.
    """
    run = _Run()
    try:
        while max_deliveries is None or run.summary.processed < max_deliveries:
            batch = deliveries_claim(
                worker=run.worker,
                delivery_ids=delivery_ids,
                exclude_integrations=list(run.waiting),
            )
            if not batch:
                break
            for delivery in batch:
                run.send(delivery)
        run.defer_waiting(delivery_ids)
    finally:
        run.connections.close()
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
