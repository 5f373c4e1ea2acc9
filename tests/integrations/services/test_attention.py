"""A saved tool that cannot send any more is marked on its card: "Needs attention"
after a permanent failure, "Needs re-authorization" when its delegated grant is gone."""

import pytest

from integrations.exceptions import AuthorizationRequired, SenderRejected
from integrations.models import AuditAction, AuditEntry, Integration, IntegrationState
from integrations.services import (
    IntegrationGrantStore,
    integration_mark_needs_attention,
    integration_mark_needs_reauthorization,
)

pytestmark = pytest.mark.django_db


def saved(state=IntegrationState.ACTIVE, provider="smtp") -> Integration:
    return Integration.objects.create(
        provider=provider,
        state=state,
        config={"sender": "notifications@contoso.onmicrosoft.com"},
        secrets={"refresh_token": "a-refresh-token"},
    )


def send_as_denied() -> SenderRejected:
    return SenderRejected("HTTP 403 ErrorSendAsDenied", code="send_as_denied")


def grant_gone() -> AuthorizationRequired:
    return AuthorizationRequired("invalid_grant: AADSTS70008 expired")


@pytest.mark.parametrize(
    "state", [IntegrationState.ACTIVE, IntegrationState.NEEDS_ATTENTION]
)
def test_a_permanent_failure_needs_attention_with_its_title(state):
    integration = saved(state)
    error = send_as_denied()

    integration_mark_needs_attention(integration=integration, error=error)

    row = Integration.objects.get()
    assert row.state == IntegrationState.NEEDS_ATTENTION
    assert row.attention_code == "send_as_denied"
    assert row.attention_detail == str(error.troubleshooting.title)
    entry = AuditEntry.objects.get()
    assert (entry.provider, entry.action) == ("smtp", AuditAction.NEEDS_ATTENTION)
    assert (entry.actor, entry.actor_name) == (None, "")
    assert (entry.succeeded, entry.error_code) == (False, "send_as_denied")


@pytest.mark.parametrize(
    "state",
    [
        IntegrationState.INACTIVE,
        IntegrationState.AUTHORIZATION_PENDING,
        IntegrationState.NEEDS_REAUTHORIZATION,
    ],
)
def test_a_tool_that_is_not_sending_is_not_marked(state):
    integration = saved(state)

    integration_mark_needs_attention(integration=integration, error=send_as_denied())

    row = Integration.objects.get()
    assert (row.state, row.attention_code) == (state, "")
    assert not AuditEntry.objects.exists()


def test_a_grant_that_is_gone_needs_reauthorization_instead():
    integration = saved()

    integration_mark_needs_attention(integration=integration, error=grant_gone())

    row = Integration.objects.get()
    assert row.state == IntegrationState.NEEDS_REAUTHORIZATION
    assert row.attention_code == "reauthorization_required"
    entry = AuditEntry.objects.get()
    assert entry.action == AuditAction.NEEDS_ATTENTION
    assert entry.error_code == "reauthorization_required"


@pytest.mark.parametrize(
    "state",
    [
        IntegrationState.ACTIVE,
        IntegrationState.NEEDS_ATTENTION,
        IntegrationState.AUTHORIZATION_PENDING,
    ],
)
def test_reauthorization_is_asked_of_any_tool_that_is_switched_on(state):
    integration = saved(state)

    integration_mark_needs_reauthorization(
        integration_id=integration.pk, error=grant_gone()
    )

    assert Integration.objects.get().state == IntegrationState.NEEDS_REAUTHORIZATION
    assert AuditEntry.objects.get().error_code == "reauthorization_required"


def test_a_deactivated_tool_stays_deactivated():
    integration = saved(IntegrationState.INACTIVE)

    integration_mark_needs_reauthorization(
        integration_id=integration.pk, error=grant_gone()
    )

    assert Integration.objects.get().state == IntegrationState.INACTIVE
    assert not AuditEntry.objects.exists()


def test_a_deleted_tool_is_ignored():
    integration_mark_needs_reauthorization(integration_id=12345, error=grant_gone())

    assert not AuditEntry.objects.exists()


def test_the_grant_store_marks_the_tool_when_the_grant_is_gone():
    integration = saved()
    store = IntegrationGrantStore(integration.pk)

    def update(secrets):
        raise grant_gone()

    with pytest.raises(AuthorizationRequired):
        store.refresh(update)

    row = Integration.objects.get()
    assert row.state == IntegrationState.NEEDS_REAUTHORIZATION
    assert row.secrets == {"refresh_token": "a-refresh-token"}
