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
