"""Vulnerability events, the links that route them to notification tools, and their
email deliveries (the transactional outbox). Rows only."""

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from projects.models import Severity


class EventKind(models.TextChoices):
    NEW_VULNERABILITIES = "new_vulnerabilities", _("New vulnerabilities")
    SCAN_COMPLETED = "scan_completed", _("Scan completed")
    STATUS_CHANGED = "status_changed", _("Status changed")
    TEST = "test", _("Test notification")
    #: About a notification tool itself (expiry reminders, incidents), to the
    #: tool-health recipients; belongs to no project.
    TOOL_HEALTH = "tool_health", _("Tool health")


class Event(models.Model):
    """Something that happened in a project and may be worth an email.

    Created by `notifications.services.event_emit` inside the same transaction as the
    change that caused it, so an event exists if and only if its cause was committed.
    """

    #: None for tool-health events, which belong to no project.
    project = models.ForeignKey(
        "projects.Project",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="events",
    )
    kind = models.CharField(max_length=32, choices=EventKind.choices)
    scan = models.ForeignKey(
        "projects.Scan",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="events",
    )
    # What the email needs, frozen at the time of the event: finding ids, counts by
    # severity, status transitions. Never secrets.
    payload = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.get_kind_display()} in {self.project}"


class DeliveryMode(models.TextChoices):
    IMMEDIATE = "immediate", _("Immediately, one email per event")
    DIGEST = "digest", _("One digest per scan")


class ToolLink(models.Model):
    """A globally active notification tool linked to a project, with what it sends."""

    project = models.ForeignKey(
        "projects.Project", on_delete=models.CASCADE, related_name="tool_links"
    )
    integration = models.ForeignKey(
        "integrations.Integration", on_delete=models.CASCADE, related_name="tool_links"
    )
    enabled = models.BooleanField(_("enabled"), default=True)
    notify_new_vulnerabilities = models.BooleanField(
        _("new vulnerabilities"), default=True
    )
    minimum_severity = models.CharField(
        _("minimum severity"),
        max_length=16,
        choices=Severity.choices,
        default=Severity.HIGH,
    )
    notify_scan_completed = models.BooleanField(_("scan completed"), default=False)
    notify_status_changed = models.BooleanField(_("status changed"), default=False)
    #: The statuses a finding moves *to* that are worth an email; empty means all.
    status_transitions = models.JSONField(_("transitions"), default=list, blank=True)
    #: Addresses for this project; empty means the tool's own To.
    recipients = models.JSONField(_("recipients"), default=list, blank=True)
    delivery_mode = models.CharField(
        _("delivery"),
        max_length=16,
        choices=DeliveryMode.choices,
        default=DeliveryMode.IMMEDIATE,
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "integration"], name="notifications_toollink_unique"
            )
        ]
        ordering = ["project", "integration__provider"]

    def __str__(self):
        return f"{self.integration.provider} for {self.project}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    SENDING = "sending", _("Sending")
    SENT = "sent", _("Sent")
    FAILED = "failed", _("Failed")
    SKIPPED = "skipped", _("Not sent")
    #: Accepted, then a recipient's server sent a non-delivery report back to the
    #: sender mailbox (read with the tool's Email box): see `DeliveryReport`.
    BOUNCED = "bounced", _("Bounced")


def due_q(now) -> models.Q:
    """Deliveries due at `now`: pending and due, or being sent under a lease that
    ran out (their worker died)."""
    return models.Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now) | models.Q(
        status=DeliveryStatus.SENDING, lease_expires_at__lt=now
    )


class Delivery(models.Model):
    """One email for one event (or one scan's digest) through one linked tool.

    Written in the event's transaction; sent later by a background task. `uuid` makes
    the Message-ID, so a retry is the same message to a mail client.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    #: "event:<event>:link:<link>", "digest:<scan>:link:<link>", ...: at most one
    #: delivery per event (or scan digest) and link.
    dedupe_key = models.CharField(max_length=200, unique=True)
    #: None for tool-health emails (in the security admins' log only).
    project = models.ForeignKey(
        "projects.Project",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="deliveries",
    )
    event = models.ForeignKey(
        Event, on_delete=models.CASCADE, related_name="deliveries"
    )
    #: A digest's events, in order (the first is `event`).
    digest_event_ids = models.JSONField(default=list, blank=True)
    link = models.ForeignKey(
        ToolLink,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deliveries",
    )
    integration = models.ForeignKey(
        "integrations.Integration", on_delete=models.CASCADE, related_name="deliveries"
    )
    recipients = models.JSONField(default=list)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    #: Who is sending it and until when; an expired lease means its worker died.
    #: A live worker renews the lease (its heartbeat) while it holds the row.
    claimed_by = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    #: When a worker last claimed it (kept after the outcome, for the log).
    claimed_at = models.DateTimeField(null=True, blank=True)
    #: How many times the tool's server answered "slow down" (429, SMTP 4.3.2);
    #: throttles are not counted as attempts.
    throttle_count = models.PositiveIntegerField(default=0)
    #: Sent again after an attempt whose answer was lost (a timeout, a dropped
    #: connection, Graph's 504 after accepting), with no way to look the first one
    #: up: the recipients may have it twice (same Message-ID).
    resent_unconfirmed = models.BooleanField(default=False)
    #: An attempt's answer was lost (see `resent_unconfirmed`): before the next
    #: attempt the tool is asked whether it holds the message already.
    answer_lost = models.BooleanField(default=False)
    #: The sender mailbox of the attempt whose answer was lost: where to look for
    #: it, even if an admin changed the tool's From address since.
    answer_lost_from = models.CharField(max_length=320, blank=True)
    subject = models.CharField(max_length=300, blank=True)
    #: The provider's request id (Graph) or the server's reply (SMTP).
    request_id = models.CharField(max_length=500, blank=True)
    #: Stable error code (integrations.troubleshooting or notifications.troubleshooting).
    error_code = models.CharField(max_length=64, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]
        verbose_name_plural = "deliveries"

    def __str__(self):
        return f"Delivery {self.uuid} ({self.status})"

    @property
    def is_digest(self) -> bool:
        return self.dedupe_key.startswith("digest:")


class RunProgress(models.Model):
    """The batch a delivery run has begun sending: its rows' `claimed_at`, written
    before the batch's first message goes out.

    A run claims its next batch while it sends one (`_Run.claim_ahead`). When its
    worker dies, the rows it held that were claimed after this (the batch claimed
    ahead, or claimed and not begun) were never attempted: taking them over marks
    no answer lost, so they are neither looked up nor shown as possibly sent
    twice, and their attempt is given back. A run deletes its row when it ends;
    a dead one's goes with retention.
    """

    worker = models.CharField(max_length=64, primary_key=True)
    batch_claimed_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "run progress"

    def __str__(self):
        return f"Run {self.worker} (batch claimed at {self.batch_claimed_at})"


class ReportKind(models.TextChoices):
    BOUNCED = "bounced", _("Bounced")
    DELAYED = "delayed", _("Delayed")


class DeliveryReport(models.Model):
    """What a delivery status notification in the sender mailbox said about one
    recipient of one delivery: a permanent failure (Bounced) or a delay (a warning).

    Found by `notifications.services.bounces` in the mailbox the tool's Email box
    reads, matched through the original message's Message-ID. One row per
    (delivery, recipient, kind): reading a report twice changes nothing.
    """

    delivery = models.ForeignKey(
        Delivery, on_delete=models.CASCADE, related_name="reports"
    )
    recipient = models.CharField(max_length=320)
    kind = models.CharField(max_length=16, choices=ReportKind.choices)
    #: The enhanced status code (RFC 3463), e.g. "5.1.10".
    status_code = models.CharField(max_length=16, blank=True)
    #: The remote server's words (Diagnostic-Code), one line, cut.
    diagnostic = models.CharField(max_length=500, blank=True)
    #: Which mailbox message said so ("imap:<uidvalidity>:<uid>", "graph:<id>").
    source = models.CharField(max_length=300, blank=True)
    reported_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["delivery", "recipient", "kind"],
                name="notifications_deliveryreport_unique",
            )
        ]
        ordering = ["delivery", "recipient", "kind"]

    def __str__(self):
        return f"{self.recipient} {self.kind} {self.status_code} ({self.delivery_id})"


class BouncedRecipient(models.Model):
    """An address of a link that bounced permanently: how often, why, and whether it
    is suppressed (left out of the link's deliveries until an owner clears it,
    after NOTIFICATIONS_BOUNCE_SUPPRESS_AFTER bounces)."""

    link = models.ForeignKey(
        ToolLink, on_delete=models.CASCADE, related_name="bounced_recipients"
    )
    address = models.CharField(max_length=320)
    bounce_count = models.PositiveIntegerField(default=0)
    last_status_code = models.CharField(max_length=16, blank=True)
    last_diagnostic = models.CharField(max_length=500, blank=True)
    last_bounced_at = models.DateTimeField()
    suppressed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["link", "address"], name="notifications_bouncedrecipient_unique"
            )
        ]
        ordering = ["link", "address"]

    def __str__(self):
        return f"{self.address} on {self.link_id}: {self.bounce_count} bounces"


class MailboxReading(models.Model):
    """Where reading a tool's Email box stopped, and who is reading it now.

    `cursor` is the reader's own (IMAP: UIDVALIDITY and the last UID; Graph: the
    delta link); it is dropped when `mailbox` changes. A worker reads only while it
    holds the lease (`lease_owner` until `lease_expires_at`), taken with a
    conditional UPDATE, so two workers never read one mailbox at once.
    """

    integration = models.OneToOneField(
        "integrations.Integration",
        on_delete=models.CASCADE,
        related_name="mailbox_reading",
    )
    mailbox = models.CharField(max_length=320, blank=True)
    cursor = models.JSONField(default=dict, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_read_at = models.DateTimeField(null=True, blank=True)
    last_error_code = models.CharField(max_length=64, blank=True)
    last_error_detail = models.CharField(max_length=500, blank=True)
    messages_read = models.PositiveIntegerField(default=0)
    reports_found = models.PositiveIntegerField(default=0)

    def __str__(self):
        return f"Email box of {self.integration_id}: {self.mailbox}"


class MailboxBudget(models.Model):
    """The pacing of one sender mailbox through one tool, shared by every worker.

    A sliding count (`notifications.services.pacing`): the whole state is the JSON
    in `in_flight` (the messages answered in each of the last window's 100 slots,
    the submissions under way with when each lapses, and what was learned from
    Microsoft's last throttle). `rate`, `capacity`, `tokens`, `rate_factor` and
    `resume_at` are a readable summary of it, written with it and never read back.
    One row per (tool, mailbox), however many messages go through it. Times are
    seconds since the epoch. With CACHE_URL on Redis the same state lives in Redis
    instead.
    """

    integration = models.ForeignKey(
        "integrations.Integration", on_delete=models.CASCADE, related_name="+"
    )
    mailbox = models.CharField(max_length=254)
    #: Messages per second and the largest burst, at a factor of 1 (the tool's
    #: budget when last used).
    rate = models.FloatField(default=0.0)
    capacity = models.FloatField(default=0.0)
    tokens = models.FloatField(default=0.0)
    #: When `tokens` was computed; None for a bucket never used (it starts full).
    tokens_at = models.FloatField(null=True, blank=True)
    #: The share of the budget used now (1 = all of it), when it last changed, and
    #: what each window of successful sending adds to it (a tenth of the factor
    #: that last met a throttle).
    rate_factor = models.FloatField(default=1.0)
    rate_factor_at = models.FloatField(default=0.0)
    rate_step = models.FloatField(default=0.1)
    #: Nothing is sent before this (Microsoft's Retry-After).
    resume_at = models.FloatField(default=0.0)
    in_flight = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "mailbox"],
                name="notifications_mailboxbudget_unique",
            )
        ]

    def __str__(self):
        return f"{self.mailbox} through {self.integration_id}"


class RecoverySchedule(models.Model):
    """When the next `recover` task is booked to run (one row).

    Every delivery task books a recovery for when its lease would expire, so a worker
    that dies mid-batch leaves a task behind that finishes its batch; the row keeps
    those bookings to one at a time.
    """

    next_run_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"Next delivery recovery at {self.next_run_at}"
