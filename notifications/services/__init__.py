"""Writes for events, tool links and deliveries.

- `events`: `event_emit`, the transactional outbox (an event and its deliveries in
  the caller's transaction);
- `outbox`: `enqueue_on_commit`, which hands committed deliveries to the `deliver`
  task (`notifications.tasks` imports the services, never the other way round at
  load time);
- `links`: Project › Settings › Notification Tools;
- `delivery`: claiming, sending, retrying and resending deliveries;
- `pacing`: each sender mailbox's budget under Microsoft's limits;
- `bounces`: reading each tool's Email box; Bounced deliveries and suppressed
  addresses;
- `recovery`: when the worker's `recover` task looks for what a dead worker left,
  and closing the task rows a dead worker left RUNNING.
"""

from notifications.services.bounces import bounced_recipient_clear
from notifications.services.delivery import (
    deliveries_send,
    delivery_resend,
)
from notifications.services.events import event_emit
from notifications.services.links import (
    link_create,
    link_delete,
    link_send_test,
    link_update,
)

__all__ = [
    "bounced_recipient_clear",
    "deliveries_send",
    "delivery_resend",
    "event_emit",
    "link_create",
    "link_delete",
    "link_send_test",
    "link_update",
]
