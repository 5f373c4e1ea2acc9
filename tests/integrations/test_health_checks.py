"""Silent health checks (issue 14, item 3): each tool's token and permission are
checked without sending mail, against the sandbox over TLS, and each failure is
recorded with its step and the reason in words."""

import pytest
from django.test import Client

from integrations.forms.smtp import SmtpForm
from integrations.models import HealthCheck, HealthCheckKind, IntegrationState
from integrations.providers import identity
from integrations.providers.base import StepStatus
from integrations.services import integration_save, provider_for
from notifications.services.health_checks import (
    KEEP_PER_TOOL,
    health_checks_run,
    integration_health_check,
)
from tests.integrations.smtp_support import (
    authorize,
    drawer_data,
    register_redirect_uri,
    smtp_row,
)
from tests.integrations.test_oauth_delegated import CALLBACK
from tests.sandbox.m365 import Control, trusted_session
from tests.tools import activate_azure_mail, grant_application_permissions

pytestmark = pytest.mark.django_db


@pytest.fixture
def graph_tool(sandbox):
    return activate_azure_mail(sandbox.seed)


@pytest.fixture
def smtp_tool(sandbox):
    form = SmtpForm(drawer_data(sandbox, "oauth_app"))
    assert form.is_valid(), form.errors
    return integration_save(
        provider_key="smtp", cleaned_data=form.cleaned_data, actor=None
    )


def app_path(seed):
    return f"/tenants/{seed['tenant_id']}/apps/{seed['client_id']}"


def fresh_tokens(*integrations):
    """Forget cached tokens (msal's and the rows'), as after an hour."""
    identity.forget_apps()
    for integration in integrations:
        integration.token_cache = ""
        integration.save(update_fields=["token_cache"])


def mail_sent(counters) -> tuple:
    return counters["graph_send_mail"], counters["smtp_messages"]


def test_checks_record_history_without_sending_mail(sandbox, graph_tool, smtp_tool):
    before = sandbox.counters()

    assert health_checks_run() == 2

    after = sandbox.counters()
    assert sandbox.messages() == []
    assert mail_sent(after) == mail_sent(before)
    assert sum(after["token_requests"].values()) > sum(
        before["token_requests"].values()
    )
    assert after["smtp_sessions"] >= before["smtp_sessions"]
    for tool in (graph_tool, smtp_tool):
        [check] = HealthCheck.objects.filter(integration=tool)
        assert (check.kind, check.ok, check.step) == (HealthCheckKind.CHECK, True, "")
        tool.refresh_from_db()
        assert tool.state == IntegrationState.ACTIVE


def test_smtp_check_stops_after_auth(sandbox, smtp_tool):
    report = provider_for(smtp_tool).health_check()

    assert [s.key for s in report.steps] == ["connect", "starttls", "authenticate"]
    assert report.healthy, [(s.key, s.status, s.error) for s in report.steps]
    assert sandbox.counters()["smtp_messages"] == 0


def test_sender_mailbox_is_skipped_when_the_app_may_not_read_users(sandbox, graph_tool):
    report = provider_for(graph_tool).health_check()

    step = report.steps[-1]
    assert (step.key, step.status) == ("sender_mailbox", StepStatus.SKIPPED)
    assert "not permitted" in step.detail
    assert report.healthy and not report.ok


def test_sender_mailbox_found_with_user_read_all(sandbox, graph_tool):
    grant_application_permissions(sandbox, "User.Read.All")

    report = provider_for(graph_tool).health_check()

    assert report.ok
    assert report.steps[-1].detail == sandbox.seed["sender"]


def test_unknown_sender_mailbox_fails_with_words(sandbox):
    grant_application_permissions(sandbox, "User.Read.All")
    tool = activate_azure_mail(sandbox.seed, sender="nobody@contoso.onmicrosoft.com")

    check = integration_health_check(integration=tool)

    assert (check.ok, check.step, check.error_code) == (
        False,
        "sender_mailbox",
        "sender_not_found",
    )
    assert check.step_label == "Sender mailbox exists"
    assert check.detail == "Sender address not found"
    tool.refresh_from_db()
    assert tool.state == IntegrationState.NEEDS_ATTENTION
    assert tool.attention_detail == "Sender address not found"


@pytest.mark.parametrize(
    "breakage, step, code, words",
    [
        (
            "revoke_consent",
            "permission",
            "permission_missing",
            "Application permission not granted",
        ),
        (
            "remove_mail_send",
            "permission",
            "permission_missing",
            "Application permission not granted",
        ),
        ("expire_secret", "token", "secret_expired", "Client secret expired"),
    ],
)
def test_each_failure_maps_to_its_step_and_words(
    sandbox, graph_tool, breakage, step, code, words
):
    seed = sandbox.seed
    if breakage == "revoke_consent":
        sandbox.control("POST", app_path(seed) + "/revoke_consent")
    elif breakage == "remove_mail_send":
        sandbox.control(
            "PATCH",
            app_path(seed),
            json={"application_permissions": ["SMTP.SendAsApp"]},
        )
    else:
        sandbox.control(
            "PATCH",
            app_path(seed) + f"/secrets/{seed['client_secret_id']}",
            json={"expires_at": "2001-01-01T00:00:00Z"},
        )
    fresh_tokens(graph_tool)

    check = integration_health_check(integration=graph_tool)

    assert (check.ok, check.step, check.error_code, check.detail) == (
        False,
        step,
        code,
        words,
    )
    assert sandbox.messages() == []


def test_smtp_removed_mailbox_permission_fails_at_authenticate(sandbox, smtp_tool):
    sandbox.control("PATCH", app_path(sandbox.seed), json={"mailbox_permissions": []})

    check = integration_health_check(integration=smtp_tool)

    assert (check.ok, check.step, check.step_label) == (
        False,
        "authenticate",
        "Authenticate",
    )
    assert check.detail  # the reason in words
    assert sandbox.counters()["smtp_messages"] == 0


def test_a_retryable_failure_is_recorded_but_does_not_mark_the_tool(
    sandbox, smtp_tool, settings
):
    settings.M365_SMTP_PORT = 1  # nothing listens there

    check = integration_health_check(integration=smtp_tool)

    assert (check.ok, check.step) == (False, "connect")
    smtp_tool.refresh_from_db()
    assert smtp_tool.state == IntegrationState.ACTIVE


def test_history_keeps_the_newest_results_only(sandbox, graph_tool, monkeypatch):
    monkeypatch.setattr(
        "notifications.services.health_checks.KEEP_PER_TOOL", 3, raising=True
    )
    for _ in range(5):
        integration_health_check(integration=graph_tool)
    assert HealthCheck.objects.filter(integration=graph_tool).count() == 3
    assert KEEP_PER_TOOL == 200


def test_delegated_api_check_uses_the_token_and_asks_for_me(
    sandbox, settings, django_user_model
):
    settings.SITE_URL = "http://testserver"
    admin = django_user_model.objects.create_superuser(
        "secadmin", "secadmin@contoso.onmicrosoft.com", "irrelevant-pass-1"
    )
    client = Client()
    client.force_login(admin)
    with trusted_session(sandbox.ca_path) as http:
        register_redirect_uri(Control(sandbox, http), CALLBACK)
        data = drawer_data(sandbox, "oauth_delegated", communication_type="api")
        response, _ = authorize(client, http, sandbox, data)
        assert response.status_code == 200, response.content.decode()

    tool = smtp_row()
    before = sandbox.counters()
    check = integration_health_check(integration=tool)

    assert check.ok, (check.step, check.error_code)
    report = provider_for(tool).health_check()
    assert [s.key for s in report.steps] == ["token", "me"]
    assert report.steps[-1].detail == sandbox.seed["user"]
    assert mail_sent(sandbox.counters()) == mail_sent(before)
