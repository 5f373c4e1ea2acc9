"""The notifications app's periodic jobs (found by `operations.periodic`)."""

from django.utils.translation import gettext_lazy as _

from operations.periodic import register

register(
    "notifications.recover",
    "NOTIFICATIONS_LEASE_SECONDS",
    "notifications.tasks.recover_sweep",
    _(
        "Sends due deliveries no live task is sending and closes the task rows "
        "killed workers left running."
    ),
)

register(
    "notifications.mailboxes",
    "NOTIFICATIONS_MAILBOX_READ_SECONDS",
    "notifications.services.bounces.mailboxes_read",
    _(
        "Reads each active tool's Email box for non-delivery reports and marks the "
        "deliveries they name as Bounced."
    ),
)

register(
    "notifications.health_checks",
    "INTEGRATION_HEALTH_CHECK_SECONDS",
    "notifications.services.health_checks.health_checks_run",
    _(
        "Checks each active tool without sending mail (token, permission, sender "
        "mailbox; SMTP up to AUTH) and records the result on its card."
    ),
)

register(
    "notifications.attention_rechecks",
    "INTEGRATION_ATTENTION_RECHECK_SECONDS",
    "notifications.services.health_checks.attention_rechecks_run",
    _(
        "Checks again each tool that needs attention: a success makes it active, "
        "closes its incident and sends the notifications that waited."
    ),
)

register(
    "notifications.expiry_reminders",
    "INTEGRATION_EXPIRY_CHECK_SECONDS",
    "notifications.services.expiry_reminders.expiry_reminders_run",
    _(
        "Reads when each tool's client secret or certificate expires and reminds "
        "the tool-health recipients 30, 14, 7 and 1 days before."
    ),
)

register(
    "notifications.grant_keepalive",
    "INTEGRATION_GRANT_KEEPALIVE_SECONDS",
    "notifications.services.grant_keepalive.grant_keepalive_run",
    _(
        "Refreshes delegated sign-ins left unused for INTEGRATION_GRANT_IDLE_DAYS, "
        "so that they do not lapse, and tells people when one needs a new sign-in."
    ),
)
