"""A saved tool that cannot send any more: "Needs attention" or "Needs
re-authorization" on its card until someone saves or signs in again.

Delivery marks a tool after a permanent failure; the grant store marks it when a
delegated grant is gone."""

import logging

from django.db import transaction

from integrations.exceptions import AuthorizationRequired, IntegrationError
from integrations.models import AuditAction, Integration, IntegrationState
from integrations.services.audit import audit_record

logger = logging.getLogger(__name__)


@transaction.atomic
def integration_mark_needs_attention(
    *, integration: Integration, error: IntegrationError
) -> None:
    """A permanent sending failure: show it on the card until someone saves again.

    A delegated grant that is gone asks for re-authorization instead."""
    if isinstance(error, AuthorizationRequired):
        integration_mark_needs_reauthorization(
            integration_id=integration.pk, error=error
        )
        return
    updated = Integration.objects.filter(
        pk=integration.pk,
        state__in=[IntegrationState.ACTIVE, IntegrationState.NEEDS_ATTENTION],
    ).update(
        state=IntegrationState.NEEDS_ATTENTION,
        attention_code=error.code,
        attention_detail=str(error.troubleshooting.title)[:500],
    )
    if updated:
        audit_record(
            provider_key=integration.provider,
            action=AuditAction.NEEDS_ATTENTION,
            error=error,
        )


def integration_mark_needs_reauthorization(
    *, integration_id: int, error: IntegrationError
) -> None:
    """A delegated grant is gone (expired, revoked): a person must sign in again."""
    integration = Integration.objects.filter(pk=integration_id).first()
    if integration is None:
        return
    updated = (
        Integration.objects.filter(pk=integration_id)
        .exclude(state__in=[IntegrationState.INACTIVE])
        .update(
            state=IntegrationState.NEEDS_REAUTHORIZATION,
            attention_code=error.code,
            attention_detail=str(error.troubleshooting.title)[:500],
        )
    )
    if updated:
        logger.warning(
            "%s needs re-authorization: %s", integration.provider, error.detail
        )
        audit_record(
            provider_key=integration.provider,
            action=AuditAction.NEEDS_ATTENTION,
            error=error,
        )
