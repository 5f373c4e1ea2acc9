"""Delegated grants kept alive (issue 14): an idle grant is refreshed well before
Entra ID's 90 days of inactivity, and a refresh that fails for a reason a person
must fix makes the tool "Needs re-authorization" with one email. The product's
"now" is passed to the job; the sandbox's clock is moved through its control API."""

import datetime
import time

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from integrations.models import HealthCheck, IntegrationState
from integrations.providers import identity
from integrations.providers.base import OutgoingEmail
from integrations.services import provider_for
from integrations.services.grants import integration_grant_refresh
from notifications.services.grant_keepalive import (
    grant_keepalive_run,
    reauthorization_email_send,
)
from tests.integrations.smtp_support import (
    authorized_smtp_tool,
    register_redirect_uri,
    smtp_row,
)
from tests.notifications.conftest import settle
from tests.sandbox.m365 import Control, trusted_session

pytestmark = pytest.mark.django_db(transaction=True)

DAY = datetime.timedelta(days=1)
CALLBACK = "https://appsec.example.test/integrations/oauth/callback/"


@pytest.fixture
def security_admin(security_admin):
    security_admin.email = "secadmin@contoso.onmicrosoft.com"
    security_admin.save()
    return security_admin


@pytest.fixture
def http(sandbox):
    with trusted_session(sandbox.ca_path) as session:
        yield session


@pytest.fixture
def delegated_tool(sandbox, security_admin, graph_tool, http):
    """SMTP with delegated OAuth, signed in through the sandbox; Microsoft Azure Mail
    (`graph_tool`) is active too, to tell people when this one cannot send."""
    register_redirect_uri(Control(sandbox, http), CALLBACK)
    client = Client()
    client.force_login(security_admin)
    return authorized_smtp_tool(client, http, sandbox)


def advance_sandbox_clock(sandbox, days: float) -> None:
    sandbox.control("POST", "/clock", json={"advance_seconds": days * 86400})
    identity.forget_apps()


def reauthorization_emails(sandbox, security_admin) -> list[dict]:
    settle()
    return [
        m
        for m in sandbox.messages(to=security_admin.email)
        if "needs re-authorization" in m["subject"]
    ]


def test_an_idle_grant_is_refreshed_before_it_lapses(sandbox, delegated_tool):
    start = timezone.now()
    first_refresh_token = delegated_tool.secrets["refresh_token"]

    # Used (signed in) recently: left alone.
    assert grant_keepalive_run(now=start + 13 * DAY).refreshed == 0
    assert smtp_row().secrets["refresh_token"] == first_refresh_token

    # 60 days idle: refreshed, the rotated refresh token stored.
    advance_sandbox_clock(sandbox, 60)
    summary = grant_keepalive_run(now=start + 60 * DAY)
    assert (summary.refreshed, summary.reauthorization, summary.failed) == (1, 0, 0)
    row = smtp_row()
    assert row.secrets["refresh_token"] != first_refresh_token
    assert row.secrets["refreshed_at"] == pytest.approx((start + 60 * DAY).timestamp())
    check = HealthCheck.objects.get(integration=row)
    assert (check.kind, check.ok) == ("refresh", True)

    # 120 days after the sign-in, 60 after the last refresh: still alive, and the
    # tool sends with it.
    advance_sandbox_clock(sandbox, 60)
    assert grant_keepalive_run(now=start + 120 * DAY).refreshed == 1
    row = smtp_row()
    assert row.state == IntegrationState.ACTIVE
    with provider_for(row).open() as connection:
        connection.send(
            OutgoingEmail(to=(sandbox.seed["recipient"],), subject="Alive", text="Hi")
        )
    assert sandbox.messages(subject="Alive")


def break_password(sandbox):
    seed = sandbox.seed
    sandbox.control(
        "PATCH",
        f"/tenants/{seed['tenant_id']}/users/{seed['user']}",
        json={"password": "Another-Passw0rd!"},
    )


def break_consent(sandbox):
    seed = sandbox.seed
    sandbox.control(
        "POST", f"/tenants/{seed['tenant_id']}/apps/{seed['client_id']}/revoke_consent"
    )


def break_account(sandbox):
    seed = sandbox.seed
    sandbox.control(
        "PATCH",
        f"/tenants/{seed['tenant_id']}/users/{seed['user']}",
        json={"account_enabled": False},
    )


def break_mfa(sandbox):
    seed = sandbox.seed
    sandbox.control(
        "PATCH",
        f"/tenants/{seed['tenant_id']}/users/{seed['user']}",
        json={"mfa_required": True},
    )


def break_idle(sandbox):
    advance_sandbox_clock(sandbox, 91)


@pytest.mark.parametrize(
    "breakage, days, code, words",
    [
        (break_password, 15, "reauthorization_required", "changed or reset"),
        (break_consent, 15, "consent_revoked", "grant admin consent"),
        (break_account, 15, "account_disabled", "is disabled"),
        (break_mfa, 15, "mfa_required", "multi-factor"),
        (break_idle, 91, "reauthorization_required", "AADSTS700082"),
    ],
    ids=["password-50173", "consent-65001", "disabled-50057", "mfa-50076", "idle"],
)
def test_a_refresh_a_person_must_fix_needs_reauthorization_with_one_email(
    sandbox, security_admin, delegated_tool, breakage, days, code, words
):
    start = timezone.now()
    breakage(sandbox)

    summary = grant_keepalive_run(now=start + days * DAY)

    assert summary.reauthorization == 1
    row = smtp_row()
    assert row.state == IntegrationState.NEEDS_REAUTHORIZATION
    assert row.attention_code == code
    check = HealthCheck.objects.get(integration=row)
    assert (check.kind, check.ok, check.error_code) == ("refresh", False, code)
    [email] = reauthorization_emails(sandbox, security_admin)
    assert email["subject"].startswith("SMTP needs re-authorization: ")
    assert words in email["html"]
    assert "click Re-authorize" in email["html"]
    drawer = "https://appsec.example.test" + reverse("integrations:tool", args=["smtp"])
    assert drawer in email["html"]
    # Sent through the tool that can still send.
    assert email["transport"] == "graph"

    # Once: the next run leaves the tool alone; the same email is not queued again.
    assert grant_keepalive_run(now=start + (days + 1) * DAY).reauthorization == 0
    assert (
        reauthorization_email_send(
            result=integration_grant_refresh(integration=row, now=start + days * DAY),
            now=start + days * DAY,
        )
        is None
    )
    assert len(reauthorization_emails(sandbox, security_admin)) == 1


def test_a_transient_failure_is_tried_again_without_an_email(
    sandbox, security_admin, delegated_tool
):
    start = timezone.now()
    sandbox.add_fault(target="token", status=503, count=1)

    summary = grant_keepalive_run(now=start + 20 * DAY)

    assert (summary.refreshed, summary.reauthorization, summary.failed) == (0, 0, 1)
    assert smtp_row().state == IntegrationState.ACTIVE
    check = HealthCheck.objects.get(integration=smtp_row())
    assert (check.ok, check.error_code) == (False, "service_unavailable")
    assert reauthorization_emails(sandbox, security_admin) == []
    # The next run refreshes it.
    assert grant_keepalive_run(now=start + 21 * DAY).refreshed == 1


def test_a_fresh_access_token_is_still_redeemed_by_the_keepalive(
    sandbox, delegated_tool
):
    before = sandbox.counters()["refresh_redemptions"]
    assert delegated_tool.secrets["token_expires_at"] > time.time() + 600
    result = integration_grant_refresh(integration=delegated_tool)
    assert result.ok
    assert sandbox.counters()["refresh_redemptions"] == before + 1
