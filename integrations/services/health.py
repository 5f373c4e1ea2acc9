"""Writes for the tools' health settings: who is told when a tool breaks."""

from django.db import transaction

from integrations.models import AuditAction, ToolHealthSettings
from integrations.services.audit import audit_record

#: The audit entry's subject, and the name of what changed.
RECIPIENTS_SUBJECT = "tool-health:recipients"


@transaction.atomic
def tool_health_recipients_save(*, recipients: list[str], actor) -> ToolHealthSettings:
    """Store the addresses tool-health emails go to (empty: every active security
    admin's address), audited with the list (addresses, never secrets)."""
    row, _ = ToolHealthSettings.objects.select_for_update().get_or_create(pk=1)
    before = list(row.recipients or [])
    row.recipients = list(recipients)
    row.updated_by = actor if actor and actor.is_authenticated else None
    row.save()
    if before != row.recipients:
        audit_record(
            provider_key="",
            action=AuditAction.CHANGED,
            actor=actor,
            changed_fields=["Tool health emails go to"],
            subject=RECIPIENTS_SUBJECT,
            detail=", ".join(row.recipients) or "all security admins",
        )
    return row
