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
) -> AuditEntry:
    """Append to the audit log. Field names only, never values."""
    return AuditEntry.objects.create(
        provider=provider_key,
        action=action,
        actor=actor if actor and actor.is_authenticated else None,
        actor_name=actor.get_username() if actor and actor.is_authenticated else "",
        changed_fields=list(changed_fields),
        succeeded=error is None,
        error_code=error.code if error else "",
    )
