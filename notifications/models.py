"""Vulnerability events and their email deliveries (the transactional outbox)."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class EventKind(models.TextChoices):
    NEW_VULNERABILITIES = "new_vulnerabilities", _("New vulnerabilities")
    SCAN_COMPLETED = "scan_completed", _("Scan completed")
    STATUS_CHANGED = "status_changed", _("Status changed")
    TEST = "test", _("Test notification")


class Event(models.Model):
    """Something that happened in a project and may be worth an email.

    Created by `notifications.services.event_emit` inside the same transaction as the
    change that caused it, so an event exists if and only if its cause was committed.
    """

    project = models.ForeignKey(
        "projects.Project", on_delete=models.CASCADE, related_name="events"
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
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.get_kind_display()} in {self.project}"
