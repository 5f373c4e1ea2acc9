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
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"authorization of {self.integration.provider} by {self.user_id}"
