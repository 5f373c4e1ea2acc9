"""The tool services called directly, as views, tasks and other apps call them:
save, deactivate, Test Connection, Validate and Save, with their audit entries."""

import pytest

from integrations.exceptions import ConfigurationError
from integrations.forms.microsoft_azure_mail import MicrosoftAzureMailForm
from integrations.models import AuditAction, AuditEntry, Integration, IntegrationState
from integrations.providers.base import StepStatus
from integrations.providers.microsoft_azure_mail import MicrosoftAzureMailProvider
from integrations.services import (
    integration_deactivate,
    integration_save,
    integration_test_connection,
    integration_validate_and_save,
)

KEY = MicrosoftAzureMailProvider.key
pytestmark = pytest.mark.django_db


def cleaned(**overrides) -> dict:
    """Microsoft Azure Mail's drawer values, cleaned by its form."""
    data = {
        "tenant_id": "b5a0c1e2-3f47-4d8a-9c6b-2e1f0a9d8c7b",
        "client_id": "4e9d2a71-8c3b-4f05-a6d2-91b7e0c3f58a",
        "client_secret": "first-secret-value",
        "sender": "notifications@contoso.onmicrosoft.com",
        "recipients": "security-team@contoso.onmicrosoft.com",
        "cloud": "global",
        "secret_expires_on": "",
        **overrides,
    }
    form = MicrosoftAzureMailForm(data, saved_secrets=saved_secrets())
    assert form.is_valid(), form.errors
    return form.cleaned_data


def saved_secrets() -> set:
    row = Integration.objects.filter(provider=KEY).first()
    return set(row.secrets) if row else set()


def sandbox_values(sandbox, **overrides) -> dict:
    seed = sandbox.seed
    values = {
        "tenant_id": seed["tenant_id"],
        "client_id": seed["client_id"],
        "client_secret": seed["client_secret"],
        "sender": seed["sender"],
        "recipients": seed["recipient"],
    }
    return cleaned(**{**values, **overrides})


# --- integration_save ----------------------------------------------------------------


def test_first_save_activates_the_tool_and_audits_the_actor(admin_user):
    integration = integration_save(
        provider_key=KEY, cleaned_data=cleaned(), actor=admin_user
    )

    assert integration.state == IntegrationState.ACTIVE
    assert integration.activated_at is not None
    assert integration.updated_by == admin_user
    assert integration.secrets == {"client_secret": "first-secret-value"}
    assert "client_secret" not in integration.config
    entry = AuditEntry.objects.get()
    assert (entry.provider, entry.action) == (KEY, AuditAction.ACTIVATED)
    assert (entry.actor, entry.actor_name) == (admin_user, admin_user.username)
    assert entry.succeeded
    assert {"Tenant ID", "Client ID", "Client Secret", "From"} <= set(
        entry.changed_fields
    )


def test_saving_again_names_only_the_changed_fields(admin_user):
    integration_save(provider_key=KEY, cleaned_data=cleaned(), actor=admin_user)
    activated_at = Integration.objects.get().activated_at

    integration_save(
        provider_key=KEY,
        cleaned_data=cleaned(sender="alerts@contoso.onmicrosoft.com"),
        actor=admin_user,
    )

    entry = AuditEntry.objects.first()
    assert entry.action == AuditAction.CHANGED
    assert entry.changed_fields == ["From"]
    assert Integration.objects.get().activated_at == activated_at


def test_a_blank_secret_keeps_the_saved_one(admin_user):
    integration_save(provider_key=KEY, cleaned_data=cleaned(), actor=admin_user)

    integration = integration_save(
        provider_key=KEY, cleaned_data=cleaned(client_secret=""), actor=admin_user
    )

    assert integration.secrets == {"client_secret": "first-secret-value"}
    assert AuditEntry.objects.first().changed_fields == []


def test_changed_credentials_drop_the_token_cache_and_other_changes_keep_it(
    admin_user,
):
    integration_save(provider_key=KEY, cleaned_data=cleaned(), actor=admin_user)
    Integration.objects.update(token_cache="cached tokens")

    integration_save(
        provider_key=KEY,
        cleaned_data=cleaned(recipients="soc@contoso.onmicrosoft.com"),
        actor=admin_user,
    )
    assert Integration.objects.get().token_cache == "cached tokens"

    integration_save(
        provider_key=KEY,
        cleaned_data=cleaned(client_secret="second-secret-value"),
        actor=admin_user,
    )
    assert Integration.objects.get().token_cache == ""


def test_saving_clears_what_needed_attention(admin_user):
    integration_save(provider_key=KEY, cleaned_data=cleaned(), actor=admin_user)
    Integration.objects.update(
        state=IntegrationState.NEEDS_ATTENTION,
        attention_code="send_as_denied",
        attention_detail="The app may not send as this mailbox",
    )

    integration = integration_save(
        provider_key=KEY, cleaned_data=cleaned(), actor=admin_user
    )

    assert integration.state == IntegrationState.ACTIVE
    assert (integration.attention_code, integration.attention_detail) == ("", "")
    assert AuditEntry.objects.first().action == AuditAction.CHANGED


def test_a_save_without_an_actor_is_audited_as_the_system():
    integration_save(provider_key=KEY, cleaned_data=cleaned(), actor=None)

    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.actor_name) == (None, "")
    assert str(entry) == f"system activated {KEY}"


# --- integration_deactivate ------------------------------------------------------------


def test_deactivate_keeps_the_settings_and_audits_the_actor(admin_user, plain_user):
    integration_save(provider_key=KEY, cleaned_data=cleaned(), actor=plain_user)

    integration = integration_deactivate(provider_key=KEY, actor=admin_user)

    row = Integration.objects.get()
    assert integration.state == row.state == IntegrationState.INACTIVE
    assert row.updated_by == admin_user
    assert row.secrets == {"client_secret": "first-secret-value"}
    assert row.config["sender"] == "notifications@contoso.onmicrosoft.com"
    entry = AuditEntry.objects.first()
    assert (entry.action, entry.actor) == (AuditAction.DEACTIVATED, admin_user)


def test_saving_a_deactivated_tool_activates_it_again(admin_user):
    integration_save(provider_key=KEY, cleaned_data=cleaned(), actor=admin_user)
    integration_deactivate(provider_key=KEY, actor=admin_user)

    integration = integration_save(
        provider_key=KEY, cleaned_data=cleaned(client_secret=""), actor=admin_user
    )

    assert integration.state == IntegrationState.ACTIVE
    assert AuditEntry.objects.first().action == AuditAction.ACTIVATED


def test_deactivating_a_tool_that_was_never_saved_is_an_error(admin_user):
    with pytest.raises(Integration.DoesNotExist):
        integration_deactivate(provider_key=KEY, actor=admin_user)
    assert not AuditEntry.objects.exists()


# --- integration_test_connection -------------------------------------------------------


def test_test_connection_sends_saves_nothing_and_audits_the_actor(sandbox, admin_user):
    report = integration_test_connection(
        provider_key=KEY, cleaned_data=sandbox_values(sandbox), actor=admin_user
    )

    assert report.ok, report.error
    assert [step.status for step in report.steps] == [StepStatus.PASSED] * 4
    assert sandbox.messages(to=sandbox.seed["recipient"])
    assert not Integration.objects.exists()
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor) == (AuditAction.TESTED, admin_user)
    assert (entry.succeeded, entry.error_code) == (True, "")


def test_a_failed_test_is_audited_with_its_code_and_changes_nothing(
    sandbox, admin_user
):
    integration_save(
        provider_key=KEY, cleaned_data=sandbox_values(sandbox), actor=admin_user
    )

    report = integration_test_connection(
        provider_key=KEY,
        cleaned_data=sandbox_values(sandbox, client_secret="not-the-secret"),
        actor=admin_user,
    )

    assert (report.failed_step.key, report.error.code) == ("token", "secret_invalid")
    row = Integration.objects.get()
    assert row.state == IntegrationState.ACTIVE
    assert row.secrets["client_secret"] == sandbox.seed["client_secret"]
    entry = AuditEntry.objects.first()
    assert entry.action == AuditAction.TESTED and entry.actor == admin_user
    assert (entry.succeeded, entry.error_code) == (False, "secret_invalid")


def test_a_blank_secret_is_tested_with_the_saved_one(sandbox, admin_user):
    integration_save(
        provider_key=KEY, cleaned_data=sandbox_values(sandbox), actor=admin_user
    )

    report = integration_test_connection(
        provider_key=KEY,
        cleaned_data=sandbox_values(sandbox, client_secret=""),
        actor=admin_user,
    )

    assert report.ok, report.error


def test_test_connection_sends_to_the_recipients_it_is_given(sandbox, admin_user):
    other = sandbox.seed["sender"]

    report = integration_test_connection(
        provider_key=KEY,
        cleaned_data=sandbox_values(sandbox),
        actor=admin_user,
        recipients=[other],
    )

    assert report.ok, report.error
    assert sandbox.messages(to=other)
    assert not sandbox.messages(to=sandbox.seed["recipient"])


# --- integration_validate_and_save -----------------------------------------------------


def test_validate_and_save_mails_the_actor_then_saves(sandbox, admin_user):
    admin_user.email = sandbox.seed["recipient"]

    report, integration = integration_validate_and_save(
        provider_key=KEY, cleaned_data=sandbox_values(sandbox), actor=admin_user
    )

    assert report.ok, report.error
    assert integration.state == IntegrationState.ACTIVE
    assert sandbox.messages(to=sandbox.seed["recipient"])
    actions = list(AuditEntry.objects.values_list("action", "actor"))
    assert actions == [
        (AuditAction.ACTIVATED, admin_user.pk),
        (AuditAction.TESTED, admin_user.pk),
    ]


def test_validate_and_save_saves_nothing_when_the_test_fails(sandbox, admin_user):
    admin_user.email = sandbox.seed["recipient"]

    report, integration = integration_validate_and_save(
        provider_key=KEY,
        cleaned_data=sandbox_values(sandbox, client_secret="not-the-secret"),
        actor=admin_user,
    )

    assert integration is None
    assert report.error.code == "secret_invalid"
    assert not Integration.objects.exists()
    assert AuditEntry.objects.get().action == AuditAction.TESTED


def test_validate_and_save_needs_the_actor_s_email_address(admin_user):
    admin_user.email = ""

    with pytest.raises(ConfigurationError) as raised:
        integration_validate_and_save(
            provider_key=KEY, cleaned_data=cleaned(), actor=admin_user
        )

    assert raised.value.code == "admin_email_missing"
    assert not Integration.objects.exists()
    assert not AuditEntry.objects.exists()
