"""Rows for notification tools and their audit trail."""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from integrations.fields import EncryptedJSONField, EncryptedTextField


class IntegrationState(models.TextChoices):
    INACTIVE = "inactive", _("Not activated")
    ACTIVE = "active", _("Active")
    NEEDS_ATTENTION = "needs_attention", _("Needs attention")
    AUTHORIZATION_PENDING = "authorization_pending", _("Authorization pending")
    NEEDS_REAUTHORIZATION = "needs_reauthorization", _("Needs re-authorization")


class Integration(models.Model):
    """One notification tool, activated once, globally, by a security admin."""

    provider = models.CharField(max_length=64, unique=True)
    state = models.CharField(
        max_length=32,
        choices=IntegrationState.choices,
        default=IntegrationState.INACTIVE,
    )
    #: Non-secret settings, as the provider's form cleaned them.
    config = models.JSONField(default=dict, blank=True)
    #: Secret values by field name (client secret, password, private key, tokens).
    secrets = EncryptedJSONField()
    #: msal's serialized token cache, shared by every process that sends.
    token_cache = EncryptedTextField()
    #: When the credential in use (client secret or certificate) expires, and where
    #: that came from: "certificate" (the certificate itself), "app_registration"
    #: (read from Entra ID with Application.Read.All) or "typed" (the admin's date).
    credential_expires_on = models.DateField(null=True, blank=True)
    credential_expiry_source = models.CharField(max_length=32, blank=True)
    #: The error code that put the tool in "Needs attention", for the card.
    attention_code = models.CharField(max_length=64, blank=True)
    attention_detail = models.CharField(max_length=500, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["provider"]

    def __str__(self):
        return f"{self.provider} ({self.get_state_display()})"

    @property
    def is_active(self) -> bool:
        """Activated and not switched off (it may still need attention)."""
        return self.state not in (IntegrationState.INACTIVE,)


class AuditAction(models.TextChoices):
    ACTIVATED = "activated", _("Activated")
    CHANGED = "changed", _("Changed")
    DEACTIVATED = "deactivated", _("Deactivated")
    TESTED = "tested", _("Tested")
    AUTHORIZATION_STARTED = "authorization_started", _("Authorization started")
    AUTHORIZED = "authorized", _("Authorized")
    AUTHORIZATION_FAILED = "authorization_failed", _("Authorization failed")
    NEEDS_ATTENTION = "needs_attention", _("Needs attention")
    # Outbound policy and recipient policy (docs/SECURITY.md).
    ADDRESS_REFUSED = "address_refused", _("Address refused")
    RECIPIENT_REFUSED = "recipient_refused", _("Recipient refused")
    # Accounts: sign-in lockout.
    SIGN_IN_LOCKED_OUT = "sign_in_locked_out", _("Sign-in locked out")
    SIGN_IN_UNLOCKED = "sign_in_unlocked", _("Sign-in unlocked")
    # Projects: API tokens and memberships.
    TOKEN_CREATED = "token_created", _("API token created")
    TOKEN_REVOKED = "token_revoked", _("API token revoked")
    MEMBER_ADDED = "member_added", _("Member added")
    MEMBER_REMOVED = "member_removed", _("Member removed")
    MEMBER_ROLE_CHANGED = "member_role_changed", _("Member role changed")
    # Accounts: the People page.
    USER_CREATED = "user_created", _("User created")
    USER_DEACTIVATED = "user_deactivated", _("User deactivated")
    USER_REACTIVATED = "user_reactivated", _("User reactivated")
    PASSWORD_LINK_CREATED = "password_link_created", _("Set-password link created")
    PASSWORD_SET = "password_set", _("Password set")
    ROLE_GRANTED = "role_granted", _("Security admin role granted")
    ROLE_REMOVED = "role_removed", _("Security admin role removed")


class AuditEntry(models.Model):
    """Who did what to which tool, and which fields changed (never their values)."""

    provider = models.CharField(max_length=64, db_index=True)
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    #: Kept when the user is deleted.
    actor_name = models.CharField(max_length=150, blank=True)
    changed_fields = models.JSONField(default=list, blank=True)
    succeeded = models.BooleanField(default=True)
    error_code = models.CharField(max_length=64, blank=True)
    #: What the entry is about besides a tool: "project:<slug>", "user:<name>",
    #: "token:<prefix>", "address:<host>:<port>"... Empty for a tool's own entries.
    subject = models.CharField(max_length=200, blank=True)
    #: Extra words for the auditor, already cut and sanitised (a peer's reply text,
    #: a refused recipient, a role change). Never a secret.
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self):
        return f"{self.actor_name or 'system'} {self.action} {self.provider}"


class OAuthAuthorization(models.Model):
    """A started "Save & Authorize": the auth code flow, kept until its callback.

    Bound to the admin's session and to the integration; the flow (state, PKCE
    verifier, nonce) is encrypted. The state is stored hashed, for lookup only.
    A row is used once: `completed_at` is set by the first callback that names it.
    """

    integration = models.ForeignKey(
        Integration, on_delete=models.CASCADE, related_name="authorizations"
    )
    state_hash = models.CharField(max_length=64, unique=True)
    session_hash = models.CharField(max_length=64)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    flow = EncryptedJSONField()
    #: The drawer's settings this sign-in is for, `{"config": ..., "secrets": ...}`
    #: (the secrets typed, not those kept): applied with the new grant by the
    #: callback, so that an authorized tool keeps its settings and grant until then.
    #: Emptied when the row is used or superseded.
    pending_settings = EncryptedJSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"authorization of {self.integration.provider} by {self.user_id}"


# --- Integration health (issue 14) ------------------------------------------------


class HealthCheckKind(models.TextChoices):
    CHECK = "check", _("Health check")
    SEND = "send", _("Send")
    REFRESH = "refresh", _("Grant refresh")


class HealthCheck(models.Model):
    """One result of watching a tool: a scheduled silent check (no mail sent), a
    send that failed or succeeded after a failure, or a delegated grant refresh. The
    card shows the latest 30 as marks; the drawer lists them with the failed step."""

    integration = models.ForeignKey(
        Integration, on_delete=models.CASCADE, related_name="health_checks"
    )
    kind = models.CharField(max_length=16, choices=HealthCheckKind.choices)
    ok = models.BooleanField()
    #: The step that failed (a Test Connection step key) and its label.
    step = models.CharField(max_length=64, blank=True)
    step_label = models.CharField(max_length=200, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    #: Sanitised, one line; never a secret.
    detail = models.CharField(max_length=500, blank=True)
    checked_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-checked_at", "-id"]

    def __str__(self):
        return (
            f"{self.integration_id} {self.kind} {'ok' if self.ok else self.error_code}"
        )


class HealthIncident(models.Model):
    """A tool that broke (a failure a person must fix), from the first failure to
    the next success. One email when it opens, one when it closes."""

    integration = models.ForeignKey(
        Integration, on_delete=models.CASCADE, related_name="incidents"
    )
    error_code = models.CharField(max_length=64)
    detail = models.CharField(max_length=500, blank=True)
    opened_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            # At most one open incident per tool.
            models.UniqueConstraint(
                fields=["integration"],
                condition=models.Q(closed_at__isnull=True),
                name="integrations_one_open_incident",
            )
        ]

    def __str__(self):
        return f"{self.integration_id} {self.error_code} since {self.opened_at}"


class ExpiryReminder(models.Model):
    """A reminder sent about a credential's expiry, so each is sent once."""

    integration = models.ForeignKey(
        Integration, on_delete=models.CASCADE, related_name="expiry_reminders"
    )
    #: "client_secret" or "certificate".
    credential = models.CharField(max_length=32)
    expires_on = models.DateField()
    #: 30, 14, 7 or 1.
    days_before = models.PositiveSmallIntegerField()
    sent_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["integration", "credential", "expires_on", "days_before"],
                name="integrations_expiryreminder_unique",
            )
        ]

    def __str__(self):
        return f"{self.integration_id} {self.credential} {self.expires_on} -{self.days_before}d"


class ToolHealthSettings(models.Model):
    """Who is told about tools' health (one row): the addresses security admins
    chose on the Notification Tools page; empty means every active security admin
    with an email address."""

    recipients = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        verbose_name_plural = "tool health settings"

    def __str__(self):
        return "Tool health recipients"
