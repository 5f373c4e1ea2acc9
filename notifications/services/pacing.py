"""Per-mailbox pacing: stay under what Microsoft lets one mailbox send per minute.

Exchange Online accepts 30 messages a minute from one mailbox by SMTP client
submission and refuses the next with "451 4.3.2 ... submission rate ... exceeded";
Microsoft Graph limits requests per app and mailbox (10,000 per 10 minutes, 4 at a
time) and says so with 429 and Retry-After, which the retries honour.
https://learn.microsoft.com/office365/servicedescriptions/exchange-online-service-description/exchange-online-limits#sending-limits-1
https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits

The budget is a sliding window kept in the database (`SendWindow`), so every worker
shares it: together they submit at most `budget` messages per window per mailbox. A
delivery over the budget is not attempted; it waits until a slot frees.
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import transaction

from notifications.models import SendWindow


@dataclass(frozen=True)
class MailboxSlot:
    """The answer to "may this mailbox send one more message now?"."""

    integration_id: int
    mailbox: str
    #: When the submission was counted (seconds since the epoch); None if refused.
    stamp: float | None
    #: When refused: when the window's oldest submission leaves it.
    free_at: datetime | None = None

    @property
    def taken(self) -> bool:
        return self.stamp is not None


def mailbox_budget(provider) -> int | None:
    """Messages per window for `provider`'s sender mailbox; None for no pacing.

    NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE when set (0 turns pacing off), else the
    provider's own figure (`messages_per_minute`).
    """
    override = settings.NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE
    budget = provider.messages_per_minute if override is None else override
    return int(budget) if budget else None


def _window() -> float:
    return float(settings.NOTIFICATIONS_PACING_WINDOW_SECONDS)


def _locked_window(integration_id: int, mailbox: str) -> SendWindow:
    rows = SendWindow.objects.select_for_update().filter(
        integration_id=integration_id, mailbox=mailbox
    )
    row = rows.first()
    if row is None:
        SendWindow.objects.bulk_create(
            [SendWindow(integration_id=integration_id, mailbox=mailbox)],
            ignore_conflicts=True,
        )
        row = rows.get()
    return row


@transaction.atomic
def mailbox_slot_take(*, integration_id: int, mailbox: str, budget: int) -> MailboxSlot:
    """Count one submission from `mailbox` through the tool, if the budget allows.

    Locks the mailbox's row (SELECT ... FOR UPDATE on PostgreSQL; SQLite runs
    IMMEDIATE transactions one at a time), so concurrent workers never both take the
    last slot. Call `mailbox_slot_settle` once the server has answered.
    """
    mailbox = mailbox.lower()
    window = _window()
    row = _locked_window(integration_id, mailbox)
    now = time.time()
    recent = sorted(t for t in row.sent if t > now - window)
    if len(recent) >= budget:
        frees = recent[len(recent) - budget] + window
        return MailboxSlot(
            integration_id, mailbox, None, datetime.fromtimestamp(frees, tz=UTC)
        )
    recent.append(now)
    row.sent = recent[-budget:]
    row.save(update_fields=["sent"])
    return MailboxSlot(integration_id, mailbox, now)


@transaction.atomic
def mailbox_slot_settle(*, slot: MailboxSlot) -> None:
    """Move the slot's submission to now, when the server has answered.

    The server counts a message when it receives it, which is after the slot was
    taken (a new connection, STARTTLS, a token): counting from the answer keeps the
    next window's first message from reaching the server inside the current one.
    """
    if not slot.taken:
        return
    row = _locked_window(slot.integration_id, slot.mailbox)
    sent = list(row.sent)
    if slot.stamp in sent:
        sent[sent.index(slot.stamp)] = time.time()
        row.sent = sorted(sent)
        row.save(update_fields=["sent"])
