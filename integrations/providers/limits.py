"""
What Microsoft lets one sender mailbox do, declared once: the providers declare these
limits, the drawers validate a tool's own figure against them, and delivery paces each
mailbox under them (`notifications.services.pacing`).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class SendingLimits:
    """At most `messages` per `minutes`, and `concurrency` submissions at a time, for
    one sender mailbox through one app."""

    messages: int
    minutes: int
    concurrency: int

    @property
    def per_minute(self) -> int:
        """The same budget as messages per minute (rounded down, at least 1)."""
        return max(1, self.messages // self.minutes)


# Microsoft Graph, Outlook service limits, per app and mailbox: 10,000 API requests
# in a 10 minute period and 4 concurrent requests (one sendMail is one request).
# https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits
GRAPH = SendingLimits(messages=10_000, minutes=10, concurrency=4)

# Exchange Online, SMTP client submission: 30 messages a minute per mailbox ("451
# 4.3.2" beyond it); one message at a time over one SMTP session.
# https://learn.microsoft.com/office365/servicedescriptions/exchange-online-service-description/exchange-online-limits#sending-limits-1
EXCHANGE_SMTP = SendingLimits(messages=30, minutes=1, concurrency=1)

#: The highest "Messages per minute" a tool may set for a server that is not
#: Microsoft's (Microsoft's own services are bounded by their limits above).
MAX_MESSAGES_PER_MINUTE = 10_000


def with_messages_per_minute(
    limits: SendingLimits, messages_per_minute: int | None
) -> SendingLimits:
    """`limits` with another budget in messages per minute (a tool's own, or the
    operator's), concurrency unchanged; `limits` itself when there is none."""
    if not messages_per_minute:
        return limits
    return SendingLimits(
        messages=int(messages_per_minute),
        minutes=1,
        concurrency=limits.concurrency,
    )
