"""Projects, their people, scans, findings and API tokens. Rows only."""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Project(models.Model):
    name = models.CharField(_("name"), max_length=200)
    slug = models.SlugField(_("slug"), max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        through="Membership",
        related_name="projects",
        blank=True,
    )

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", _("Owner")
    MEMBER = "member", _("Member")


class Membership(models.Model):
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="memberships"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(
        _("role"), max_length=16, choices=Role.choices, default=Role.MEMBER
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "user"], name="projects_membership_unique"
            )
        ]
        ordering = ["project", "user__username"]

    def __str__(self):
        return f"{self.user} ({self.get_role_display()}) in {self.project}"


class ScanSource(models.TextChoices):
    UPLOAD = "upload", _("Upload")
    API = "api", _("API")
    COMMAND = "command", _("Command")


class ScanStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    PROCESSING = "processing", _("Processing")
    COMPLETE = "complete", _("Complete")
    FAILED = "failed", _("Failed")


class Scan(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="scans")
    # From the SARIF runs' tool.driver; several runs give a comma-separated list.
    # Empty while a queued upload waits for its import.
    tool_name = models.CharField(_("tool"), max_length=200, blank=True)
    tool_version = models.CharField(_("tool version"), max_length=100, blank=True)
    # The analysis category (GitHub code scanning's `category`, SARIF
    # runAutomationDetails.id): a scan replaces the results of its tool and category.
    # Several runs give a comma-separated list.
    category = models.CharField(_("category"), max_length=255, blank=True)
    source = models.CharField(_("source"), max_length=16, choices=ScanSource.choices)
    status = models.CharField(
        _("status"),
        max_length=16,
        choices=ScanStatus.choices,
        default=ScanStatus.COMPLETE,
    )
    # Why a queued import failed, for the people who uploaded it.
    error = models.TextField(_("error"), blank=True)
    # A run failed or reported `results: null`: its tool and category resolved nothing.
    incomplete = models.BooleanField(_("incomplete"), default=False)
    # Error-level tool notifications, at most 20:
    # [{"tool": ..., "category": ..., "message": ...}, ...].
    tool_notifications = models.JSONField(
        _("tool notifications"), default=list, blank=True
    )
    # Results identical to another one of the same file, counted once.
    duplicate_count = models.PositiveIntegerField(_("duplicates"), default=0)
    # A queued upload awaiting its import; deleted once imported.
    sarif_file = models.FileField(_("SARIF file"), upload_to="sarif/", blank=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    new_count = models.PositiveIntegerField(_("new"), default=0)
    seen_again_count = models.PositiveIntegerField(_("seen again"), default=0)
    resolved_count = models.PositiveIntegerField(_("resolved"), default=0)
    reopened_count = models.PositiveIntegerField(_("re-opened"), default=0)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.tool_name} scan #{self.pk} of {self.project}"


class Severity(models.TextChoices):
    CRITICAL = "critical", _("Critical")
    HIGH = "high", _("High")
    MEDIUM = "medium", _("Medium")
    LOW = "low", _("Low")
    INFO = "info", _("Info")


class FindingStatus(models.TextChoices):
    OPEN = "open", _("Open")
    CONFIRMED = "confirmed", _("Confirmed")
    FALSE_POSITIVE = "false_positive", _("False positive")
    ACCEPTED_RISK = "accepted_risk", _("Accepted risk")
    RESOLVED = "resolved", _("Resolved")
    REOPENED = "reopened", _("Re-opened")


class Finding(models.Model):
    """One vulnerability in a project, identified across scans by its fingerprint."""

    # No index of its own: the unique (project, fingerprint) index serves it, and
    # every index costs each import's inserts and updates.
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="findings", db_index=False
    )
    # The SARIF tool.driver.name and category that report it; a scan only resolves
    # the findings of its own tool and category.
    tool_name = models.CharField(_("tool"), max_length=200)
    category = models.CharField(_("category"), max_length=255, blank=True)
    # The SARIF reader's identity of the result (projects/sarif.py): 64 hex digits.
    fingerprint = models.CharField(_("fingerprint"), max_length=64)
    # Empty when the result names no rule ("No rule" on pages and in emails).
    rule_id = models.CharField(_("rule"), max_length=255, blank=True)
    rule_name = models.CharField(_("rule name"), max_length=255, blank=True)
    message = models.TextField(_("message"), blank=True)
    severity = models.CharField(_("severity"), max_length=16, choices=Severity.choices)
    path = models.CharField(_("path"), max_length=1000, blank=True)
    start_line = models.PositiveIntegerField(_("line"), null=True, blank=True)
    start_column = models.PositiveIntegerField(_("column"), null=True, blank=True)
    logical_location = models.CharField(
        _("logical location"), max_length=1000, blank=True
    )
    # How many identical results the last scan reporting it had (counted once).
    occurrences = models.PositiveIntegerField(_("occurrences"), default=1)
    status = models.CharField(
        _("status"),
        max_length=16,
        choices=FindingStatus.choices,
        default=FindingStatus.OPEN,
    )
    first_seen_scan = models.ForeignKey(
        Scan, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    last_seen_scan = models.ForeignKey(
        Scan, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "fingerprint"], name="projects_finding_unique"
            )
        ]
        indexes = [
            models.Index(fields=["project", "status"]),
            models.Index(fields=["project", "severity"]),
        ]
        ordering = ["-id"]

    def __str__(self):
        return f"{self.rule_label} at {self.location}"

    @property
    def rule_label(self) -> str:
        """The rule id, or "No rule" for a result that names none."""
        return self.rule_id or str(_("No rule"))

    @property
    def location(self) -> str:
        """path:line:column as far as known; else the logical location, if any."""
        if not self.path:
            return self.logical_location
        location = self.path
        if self.start_line:
            location += f":{self.start_line}"
            if self.start_column:
                location += f":{self.start_column}"
        return location


class FindingStatusChange(models.Model):
    finding = models.ForeignKey(
        Finding, on_delete=models.CASCADE, related_name="status_changes"
    )
    from_status = models.CharField(max_length=16, choices=FindingStatus.choices)
    to_status = models.CharField(max_length=16, choices=FindingStatus.choices)
    # No actor: the change was made by a scan import (auto-resolve or re-open).
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    scan = models.ForeignKey(
        Scan, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.finding_id}: {self.from_status} -> {self.to_status}"


class ApiToken(models.Model):
    """A per-project API token. Only its SHA-256 is stored; `prefix` identifies it."""

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=32)
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Refused from then on; empty: no expiry. Whether the token may act is decided
    # at each request (projects/access.py api_token_state), from this, revoked_at
    # and its creator's current account and membership.
    expires_at = models.DateTimeField(_("expires"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        """Not revoked. Whether it may act now: projects.access.api_token_state."""
        return self.revoked_at is None
