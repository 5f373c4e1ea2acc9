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


class Scan(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="scans")
    # From the SARIF runs' tool.driver; several runs give a comma-separated list.
    tool_name = models.CharField(_("tool"), max_length=200)
    tool_version = models.CharField(_("tool version"), max_length=100, blank=True)
    source = models.CharField(_("source"), max_length=16, choices=ScanSource.choices)
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

    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, related_name="findings"
    )
    # The SARIF tool.driver.name that reports it; a scan only resolves its own tool's
    # findings.
    tool_name = models.CharField(_("tool"), max_length=200)
    fingerprint = models.CharField(_("fingerprint"), max_length=64)
    rule_id = models.CharField(_("rule"), max_length=255)
    rule_name = models.CharField(_("rule name"), max_length=255, blank=True)
    message = models.TextField(_("message"), blank=True)
    severity = models.CharField(_("severity"), max_length=16, choices=Severity.choices)
    path = models.CharField(_("path"), max_length=1000, blank=True)
    start_line = models.PositiveIntegerField(_("line"), null=True, blank=True)
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
        return f"{self.rule_id} at {self.path}:{self.start_line or ''}"


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

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
