"""Reading each tool's Email box and turning the reports found there into the
delivery log's Bounced (and Delayed) entries.

`mailboxes_read()` is the periodic `notifications.mailboxes` job: for every active
tool whose Email box is on it calls `mailbox_read()`, which

1. takes the mailbox's lease (`MailboxReading`, a conditional UPDATE), so two
   workers never read one mailbox at once;
2. reads what arrived after the stored cursor (IMAP UIDVALIDITY and UID, or the
   Graph delta link: `integrations.providers.mailbox`), a page at a time, storing
   the cursor with the page's reports in one transaction, so nothing is read twice
   or skipped even when a worker dies in the middle;
3. classifies each message (`notifications.bounces.report_parse`): a delivery
   status notification names the original Message-ID, which is ours
   (`<delivery-{uuid}@{site host}>`, `notifications.emails.message_id_for`), so it
   finds the delivery; the recipients it reports failed become `DeliveryReport`
   rows (Bounced), delayed ones warnings. Automatic replies and anything that
   matches none of our deliveries are left alone. Nothing is deleted or marked read.

A permanent bounce also counts against the address on its link
(`BouncedRecipient`): after NOTIFICATIONS_BOUNCE_SUPPRESS_AFTER bounces the
address is suppressed for that link (left out of its deliveries) until an owner
clears it (`bounced_recipient_clear`).
"""

import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from integrations.exceptions import IntegrationError
from integrations.models import Integration, IntegrationState
from integrations.services import provider_for
from integrations.text import single_line
from notifications.bounces import MailKind, MailReport, report_parse
from notifications.models import (
    BouncedRecipient,
    Delivery,
    DeliveryReport,
    DeliveryStatus,
    MailboxReading,
    ReportKind,
)

logger = logging.getLogger(__name__)

#: `<delivery-{uuid}@{host}>`, as `message_id_for` writes it.
_OUR_MESSAGE_ID = re.compile(
    r"^<delivery-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})@([^<>\s]+)>$",
    re.IGNORECASE,
)
#: Messages fetched per page (and per transaction).
PAGE_SIZE = 50


@dataclass
class ReadSummary:
    """What one read of one mailbox did (also the periodic job's result)."""

    mailbox: str = ""
    messages: int = 0
    bounced: int = 0
    delayed: int = 0
    ignored_auto_replies: int = 0
    unmatched: int = 0
    reset: bool = False
    skipped: str = ""  # why nothing was read ("locked", "off", ...)
    error_code: str = ""
    suppressed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "mailbox": self.mailbox,
            "messages": self.messages,
            "bounced": self.bounced,
            "delayed": self.delayed,
            "auto_replies": self.ignored_auto_replies,
            "unmatched": self.unmatched,
            "reset": self.reset,
            "skipped": self.skipped,
            "error_code": self.error_code,
        }


def our_delivery_uuids(message_ids) -> list[uuid.UUID]:
    """The deliveries that `message_ids` (a report's original Message-IDs) name, when
    they are ours: the host must be this site's, as `message_id_for` writes it."""
    host = (urlsplit(settings.SITE_URL).hostname or "localhost").lower()
    found = []
    for message_id in message_ids:
        match = _OUR_MESSAGE_ID.match((message_id or "").strip())
        if match and match.group(2).lower() == host:
            found.append(uuid.UUID(match.group(1)))
    return list(dict.fromkeys(found))


def _reported_at(raw: bytes, default: datetime) -> datetime:
    """The report's Date header when it is sane (not in the future), else now."""
    head = raw[:16384].split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    match = re.search(rb"^Date:[ \t]*(.+)$", head, re.IGNORECASE | re.MULTILINE)
    if match:
        try:
            when = parsedate_to_datetime(match.group(1).decode("ascii", "replace"))
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None and when.tzinfo is not None and when <= default:
            return when
    return default


def report_record(
    report: MailReport, *, source: str, reported_at: datetime, summary: ReadSummary
) -> None:
    """Write what `report` says about our deliveries (inside the caller's
    transaction). Idempotent: a report read again adds nothing."""
    if report.kind == MailKind.AUTO_REPLY:
        summary.ignored_auto_replies += 1
        return
    if report.kind not in (MailKind.BOUNCE, MailKind.DELAY):
        return
    uuids = our_delivery_uuids(report.original_message_ids)
    deliveries = list(
        Delivery.objects.select_for_update()
        .select_related("link")
        .filter(uuid__in=uuids)
    )
    if not deliveries:
        summary.unmatched += 1
        return
    kind = ReportKind.BOUNCED if report.kind == MailKind.BOUNCE else ReportKind.DELAYED
    for delivery in deliveries:
        ours = {address.lower(): address for address in delivery.recipients}
        reported = [r for r in report.recipients if r.recipient.lower() in ours]
        if not reported and len(ours) == 1 and len(report.recipients) == 1:
            # The report names the address after a forward or a rewrite (a mail
            # contact, an alias): the delivery had one recipient, so it is that one.
            reported = list(report.recipients)
            ours = {reported[0].recipient.lower(): next(iter(ours.values()))}
        for status in reported:
            address = ours[status.recipient.lower()]
            _, created = DeliveryReport.objects.get_or_create(
                delivery=delivery,
                recipient=address,
                kind=kind,
                defaults={
                    "status_code": status.status[:16],
                    "diagnostic": single_line(status.diagnostic, 500),
                    "source": source[:300],
                    "reported_at": reported_at,
                },
            )
            if not created:
                continue
            if kind == ReportKind.DELAYED:
                summary.delayed += 1
                continue
            summary.bounced += 1
            if delivery.status == DeliveryStatus.SENT:
                Delivery.objects.filter(pk=delivery.pk).update(
                    status=DeliveryStatus.BOUNCED, updated_at=timezone.now()
                )
            if delivery.link_id is not None and status.status.startswith("5"):
                if _count_bounce(delivery, address, status, reported_at):
                    summary.suppressed.append(address)


def _count_bounce(delivery, address, status, reported_at) -> bool:
    """Count a permanent bounce of `address` on the delivery's link; True when this
    one suppressed it."""
    row, _ = BouncedRecipient.objects.select_for_update().get_or_create(
        link_id=delivery.link_id,
        address=address.lower(),
        defaults={"last_bounced_at": reported_at},
    )
    row.bounce_count += 1
    row.last_status_code = status.status[:16]
    row.last_diagnostic = single_line(status.diagnostic, 500)
    row.last_bounced_at = max(row.last_bounced_at, reported_at)
    newly_suppressed = (
        row.suppressed_at is None
        and row.bounce_count >= settings.NOTIFICATIONS_BOUNCE_SUPPRESS_AFTER
    )
    if newly_suppressed:
        row.suppressed_at = timezone.now()
    row.save()
    return newly_suppressed


# --- the lease ---------------------------------------------------------------------


def _lease_take(integration_id: int, owner: str) -> MailboxReading | None:
    MailboxReading.objects.get_or_create(integration_id=integration_id)
    now = timezone.now()
    taken = MailboxReading.objects.filter(
        Q(lease_expires_at__isnull=True)
        | Q(lease_expires_at__lt=now)
        | Q(lease_owner=owner),
        integration_id=integration_id,
    ).update(
        lease_owner=owner,
        lease_expires_at=now
        + timedelta(seconds=settings.NOTIFICATIONS_MAILBOX_LEASE_SECONDS),
    )
    if not taken:
        return None
    return MailboxReading.objects.get(integration_id=integration_id)


def _lease_renew(reading: MailboxReading, owner: str, **fields) -> bool:
    """Store `fields` and extend the lease, if this worker still holds it."""
    return bool(
        MailboxReading.objects.filter(pk=reading.pk, lease_owner=owner).update(
            lease_expires_at=timezone.now()
            + timedelta(seconds=settings.NOTIFICATIONS_MAILBOX_LEASE_SECONDS),
            **fields,
        )
    )


def _lease_release(reading: MailboxReading, owner: str, **fields) -> None:
    MailboxReading.objects.filter(pk=reading.pk, lease_owner=owner).update(
        lease_owner="", lease_expires_at=None, **fields
    )


# --- reading -------------------------------------------------------------------------


def mailbox_read(*, integration: Integration, owner: str | None = None) -> ReadSummary:
    """Read the new messages of `integration`'s Email box once (see the module)."""
    owner = owner or f"read-{uuid.uuid4().hex}"
    summary = ReadSummary()
    provider = provider_for(integration)
    reader = provider.mailbox_reader()
    if reader is None:
        summary.skipped = "off"
        return summary
    reading = _lease_take(integration.pk, owner)
    if reading is None:
        summary.skipped = "locked"
        return summary
    summary.mailbox = reader.mailbox
    cursor = dict(reading.cursor or {})
    if (reading.mailbox or "").lower() != (reader.mailbox or "").lower():
        cursor = {}  # another mailbox: its own cursor
    since = timezone.now() - timedelta(
        days=settings.NOTIFICATIONS_MAILBOX_FIRST_READ_DAYS
    )
    deadline = timezone.now() + timedelta(
        seconds=settings.NOTIFICATIONS_MAILBOX_LEASE_SECONDS / 2
    )
    try:
        with reader:
            while True:
                page = reader.read(cursor, limit=PAGE_SIZE, since=since)
                summary.reset = summary.reset or page.reset
                found_before = summary.bounced + summary.delayed
                with transaction.atomic():
                    for message in page.messages:
                        summary.messages += 1
                        if not message.raw:
                            continue
                        report = report_parse(message.raw)
                        report_record(
                            report,
                            source=message.ref,
                            reported_at=_reported_at(message.raw, timezone.now()),
                            summary=summary,
                        )
                    cursor = dict(page.cursor)
                    if not _lease_renew(
                        reading,
                        owner,
                        cursor=cursor,
                        mailbox=reader.mailbox,
                        messages_read=F("messages_read") + len(page.messages),
                        reports_found=F("reports_found")
                        + (summary.bounced + summary.delayed - found_before),
                    ):
                        # Another worker took the mailbox over (this one was too
                        # slow): its reports stay, the other one goes on.
                        transaction.set_rollback(True)
                        summary.skipped = "lease_lost"
                        return summary
                if not page.more or timezone.now() > deadline:
                    break
    except IntegrationError as error:
        summary.error_code = error.code
        logger.warning(
            "Reading the Email box of %s failed: %s",
            integration.provider,
            error.code,
        )
        _lease_release(
            reading,
            owner,
            last_error_code=error.code,
            last_error_detail=single_line(str(error), 500),
            last_read_at=timezone.now(),
        )
        return summary
    _lease_release(
        reading,
        owner,
        last_error_code="",
        last_error_detail="",
        last_read_at=timezone.now(),
    )
    return summary


def mailboxes_read() -> dict:
    """The periodic `notifications.mailboxes` job: every active tool's Email box."""
    results = {}
    for integration in Integration.objects.exclude(state=IntegrationState.INACTIVE):
        if not (integration.config or {}).get("email_box"):
            continue
        try:
            results[integration.provider] = mailbox_read(
                integration=integration
            ).as_dict()
        except KeyError:  # a provider no longer registered
            continue
    return results


# --- suppression ---------------------------------------------------------------------


def suppressed_addresses(link_id: int) -> set[str]:
    """The link's addresses left out of its deliveries (lower case)."""
    return set(
        BouncedRecipient.objects.filter(
            link_id=link_id, suppressed_at__isnull=False
        ).values_list("address", flat=True)
    )


@transaction.atomic
def bounced_recipient_clear(*, link, address: str) -> bool:
    """An owner clears an address's bounces on `link`: it is sent to again."""
    deleted, _ = BouncedRecipient.objects.filter(
        link=link, address=address.lower()
    ).delete()
    return bool(deleted)
