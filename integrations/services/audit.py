"""The audit trail of notification tools: who did what to which tool."""

from integrations.exceptions import IntegrationError
from integrations.models import AuditAction, AuditEntry


def audit_record(
    *,
    provider_key: str,
    action: AuditAction,
    actor=None,
    changed_fields=(),
    error: IntegrationError | None = None,
    subject: str = "",
    detail: str = "",
    succeeded: bool | None = None,
    error_code: str = "",
) -> AuditEntry:
    """Append to the audit log. Field names only, never values.

    `provider_key` may be empty for entries that are not about a tool (sign-in
    lockouts, API tokens, memberships); `subject` then says what they are about.
    `detail` must already be cut and sanitised (see `integrations.text`).
    """
    return AuditEntry.objects.create(
        provider=provider_key,
        action=action,
        actor=actor if actor and actor.is_authenticated else None,
        actor_name=actor.get_username() if actor and actor.is_authenticated else "",
        changed_fields=list(changed_fields),
        succeeded=(error is None) if succeeded is None else succeeded,
        error_code=error.code if error else error_code,
        subject=subject[:200],
        detail=detail,
    )
