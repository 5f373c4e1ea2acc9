"""Microsoft Azure Mail against the sandbox: every step, every error, real msal and
requests over TLS."""

import socket
import time

import pytest
import requests
import urllib3

from integrations.models import Integration, IntegrationState
from integrations.providers.base import OutgoingEmail, StepStatus
from integrations.providers.microsoft_azure_mail import MicrosoftAzureMailProvider
from integrations.services import integration_test_connection, provider_for

pytestmark = pytest.mark.django_db


def run_test(values, actor=None):
    from integrations.forms.microsoft_azure_mail import MicrosoftAzureMailForm

    form = MicrosoftAzureMailForm(values)
    assert form.is_valid(), form.errors
    return integration_test_connection(
        provider_key=MicrosoftAzureMailProvider.key,
        cleaned_data=form.cleaned_data,
        actor=actor,
    )


def statuses(report):
    return [step.status for step in report.steps]


def test_valid_values_pass_every_step_and_deliver_the_test_email(sandbox, graph_values):
    report = run_test(graph_values)

    assert report.ok, report.error
    assert statuses(report) == [StepStatus.PASSED] * 4
    [message] = sandbox.messages(to=graph_values["recipients"])
    assert message["from"] == graph_values["sender"]
    assert message["transport"] == "graph"
    assert message["subject"] == "Test email from M365 AppSec Mail"


def test_unknown_tenant_fails_the_first_step(sandbox, graph_values):
    graph_values["tenant_id"] = "00000000-0000-4000-8000-000000000000"
    report = run_test(graph_values)

    assert report.failed_step.key == "tenant"
    assert report.error.code == "tenant_not_found"
    assert statuses(report)[1:] == [StepStatus.SKIPPED] * 3
    assert "Directory (tenant) ID" in str(report.error.troubleshooting.text)


def test_tenant_can_be_given_by_domain(sandbox, graph_values):
    graph_values["tenant_id"] = sandbox.seed["domain"]
    assert run_test(graph_values).ok


@pytest.mark.parametrize(
    "change, code",
    [
        ({"client_id": "11111111-2222-4333-8444-555555555555"}, "client_not_found"),
        ({"client_secret": "not-the-secret"}, "secret_invalid"),
    ],
)
def test_wrong_credentials_fail_at_the_token_step(sandbox, graph_values, change, code):
    graph_values.update(change)
    report = run_test(graph_values)

    assert report.failed_step.key == "token"
    assert report.error.code == code


def test_pasting_the_secret_id_is_explained(sandbox, graph_values):
    graph_values["client_secret"] = sandbox.seed["client_secret_id"]
    report = run_test(graph_values)

    assert report.error.code == "secret_id_pasted"
    assert "looks like the Secret ID" in str(report.error.troubleshooting.title)


def test_expired_secret_is_reported_with_renewal_steps(sandbox, graph_values, ctl):
    tenant, client = sandbox.seed["tenant_id"], sandbox.seed["client_id"]
    expired = ctl(
        "POST",
        f"tenants/{tenant}/apps/{client}/secrets",
        {"expires_at": "2020-01-01T00:00:00Z"},
    )
    graph_values["client_secret"] = expired["value"]
    report = run_test(graph_values)

    assert report.error.code == "secret_expired"
    assert "Certificates & secrets" in str(report.error.troubleshooting.text)


def test_missing_admin_consent_is_reported(sandbox, graph_values, add_app):
    graph_values["client_id"], graph_values["client_secret"] = add_app(
        admin_consent=False
    )
    report = run_test(graph_values)

    assert report.failed_step.key in ("token", "permission")
    assert report.error.code in ("consent_required", "permission_missing")
    assert report.error.troubleshooting.steps


def test_token_without_mail_send_fails_the_permission_step(
    sandbox, graph_values, add_app
):
    graph_values["client_id"], graph_values["client_secret"] = add_app(
        application_permissions=["SMTP.SendAsApp"]
    )
    report = run_test(graph_values)

    assert report.failed_step.key == "permission"
    assert report.error.code == "permission_missing"


def test_application_access_policy_denies_the_sender(sandbox, graph_values, add_app):
    graph_values["client_id"], graph_values["client_secret"] = add_app(
        access_policy=[sandbox.seed["recipient"]]
    )
    report = run_test(graph_values)

    assert report.failed_step.key == "send"
    assert report.error.code == "mailbox_access_denied"
    assert report.error.request_id


def test_unknown_sender_is_reported(sandbox, graph_values):
    graph_values["sender"] = f"nobody@{sandbox.seed['domain']}"
    report = run_test(graph_values)

    assert report.failed_step.key == "send"
    assert report.error.code == "sender_not_found"


def test_sender_without_mailbox_is_reported(sandbox, graph_values, ctl):
    address = f"nomailbox@{sandbox.seed['domain']}"
    ctl(
        "POST",
        f"tenants/{sandbox.seed['tenant_id']}/users",
        {"user_principal_name": address, "has_mailbox": False},
    )
    graph_values["sender"] = address
    report = run_test(graph_values)

    assert report.error.code == "sender_no_mailbox"


def test_throttling_is_reported_with_retry_after(sandbox, graph_values, ctl):
    ctl("POST", "faults", {"target": "graph", "status": 429, "retry_after": "2.5"})
    report = run_test(graph_values)

    assert report.error.code == "throttled"
    assert report.error.retryable
    assert report.error.retry_after == 2.5


@pytest.mark.parametrize(
    "status, error_code, code, retryable",
    [
        (401, "InvalidAuthenticationToken", "unauthorized", False),
        (403, "ErrorSendAsDenied", "send_as_denied", False),
        (503, "ServiceUnavailable", "service_unavailable", True),
    ],
)
def test_graph_errors_map_to_one_code(
    sandbox, graph_values, ctl, status, error_code, code, retryable
):
    ctl(
        "POST",
        "faults",
        {"target": "graph", "status": status, "error_code": error_code},
    )
    report = run_test(graph_values)

    assert report.failed_step.key == "send"
    assert (report.error.code, report.error.retryable) == (code, retryable)
    assert report.error.status == status
    assert report.error.request_id  # Graph's request-id, for support
    assert report.error.troubleshooting.title != "Unexpected answer"


def test_slow_graph_times_out_within_the_limit(sandbox, graph_values, ctl, settings):
    settings.TEST_CONNECTION_TIMEOUT = 1.5
    ctl("POST", "faults", {"target": "graph", "delay": 5})
    started = time.monotonic()
    report = run_test(graph_values)

    assert time.monotonic() - started < 3.5
    assert report.error.code == "timeout"
    assert statuses(report)[:3] == [StepStatus.PASSED] * 3


def test_unresolvable_host_is_a_dns_failure(sandbox, graph_values, settings):
    settings.M365_AUTHORITY_HOST = "https://login.does-not-exist.invalid"
    report = run_test(graph_values)

    assert report.failed_step.key == "tenant"
    assert report.error.code == "dns_failure"


def test_closed_port_is_a_refused_connection(sandbox, graph_values, settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.M365_AUTHORITY_HOST = f"https://127.0.0.1:{port}"
    report = run_test(graph_values)

    assert report.error.code == "connection_refused"


def test_untrusted_certificate_is_a_tls_error(sandbox, graph_values, settings):
    # REQUESTS_CA_BUNDLE is set (tests/conftest.py) and does not hold the sandbox CA.
    settings.M365_CA_BUNDLE = ""
    report = run_test(graph_values)

    assert report.error.code == "tls_error"


def test_extra_ca_is_trusted_although_requests_ca_bundle_is_set(sandbox, graph_values):
    import os

    assert os.environ.get("REQUESTS_CA_BUNDLE")
    assert run_test(graph_values).ok


def saved_integration(values):
    return Integration.objects.create(
        provider=MicrosoftAzureMailProvider.key,
        state=IntegrationState.ACTIVE,
        config={k: v for k, v in values.items() if k != "client_secret"}
        | {"recipients": [values["recipients"]]},
        secrets={"client_secret": values["client_secret"]},
    )


def test_one_token_request_serves_many_messages(sandbox, graph_values):
    provider = provider_for(saved_integration(graph_values))
    before = sandbox.counters()["token_requests"]["client_credentials"]
    with provider.open() as connection:
        for n in range(20):
            connection.send(
                OutgoingEmail(
                    to=(sandbox.seed["recipient"],), subject=f"n{n}", text="x"
                )
            )

    assert sandbox.counters()["token_requests"]["client_credentials"] - before == 1
    assert len(sandbox.messages(to=sandbox.seed["recipient"])) == 20


def test_a_connection_looks_its_token_up_once_a_minute(
    sandbox, graph_values, monkeypatch
):
    from integrations.providers import microsoft_azure_mail

    provider = provider_for(saved_integration(graph_values))
    lookups = []
    original = type(provider).access_token

    def counted(self):
        lookups.append(1)
        return original(self)

    monkeypatch.setattr(type(provider), "access_token", counted)
    email = OutgoingEmail(to=(sandbox.seed["recipient"],), subject="s", text="x")
    with provider.open() as connection:
        for _ in range(5):
            connection.send(email)
        assert len(lookups) == 1
        # A minute later the connection asks msal's cache again (which renews a
        # token nearing expiry).
        monkeypatch.setattr(
            microsoft_azure_mail.time,
            "monotonic",
            lambda: connection._token_at + microsoft_azure_mail.TOKEN_REUSE_SECONDS + 1,
        )
        connection.send(email)
        assert len(lookups) == 2

    assert len(sandbox.messages(to=sandbox.seed["recipient"])) == 6


def test_token_cache_is_persisted_encrypted_and_shared(sandbox, graph_values):
    from integrations.providers import identity

    integration = saved_integration(graph_values)
    provider_for(integration).access_token()
    before = sandbox.counters()["token_requests"]["client_credentials"]
    identity.forget_apps()  # as if another process started

    provider_for(Integration.objects.get(pk=integration.pk)).access_token()

    assert sandbox.counters()["token_requests"]["client_credentials"] == before
    raw = Integration.objects.filter(pk=integration.pk).values_list("token_cache")
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT token_cache FROM integrations_integration WHERE id = %s",
            [integration.pk],
        )
        stored = cursor.fetchone()[0]
    assert stored and "access_token" not in stored and "AccessToken" not in stored
    assert raw


def test_message_id_and_headers_reach_graph(sandbox, graph_values):
    provider = provider_for(saved_integration(graph_values))
    with provider.open() as connection:
        connection.send(
            OutgoingEmail(
                to=(sandbox.seed["recipient"],),
                subject="ids",
                text="plain",
                html="<p>html</p>",
                message_id="<delivery-1@example.com>",
                headers={"X-AppSec-Event": "scan_completed"},
            )
        )
    [message] = sandbox.messages(to=sandbox.seed["recipient"])
    assert message["message_id"] == "<delivery-1@example.com>"
    assert message["html"] == "<p>html</p>"


def test_connection_reset_mid_request_is_a_retryable_dropped_connection(
    sandbox, graph_values
):
    # A reset is a dropped connection, not a TLS failure, and is retried. (Twice:
    # libcurl sends a request once more by itself when its reused connection
    # drops without an answer; tests/integrations/providers/test_curl.py.)
    sandbox.add_fault(target="graph", reset=True, count=2)
    report = run_test(graph_values)

    assert report.error.code in ("connection_failed", "connection_reset")
    assert report.error.retryable


def test_tls_eof_is_a_dropped_connection_but_a_bad_certificate_is_not():
    import ssl

    from integrations.providers.http import error_from_exception

    eof = error_from_exception(ssl.SSLEOFError(8, "EOF occurred in violation"))
    assert (eof.code, eof.retryable) == ("connection_failed", True)
    # As requests raises it: SSLError(MaxRetryError(reason=urllib3 SSLError(eof))).
    wrapped = requests.exceptions.SSLError(
        urllib3.exceptions.MaxRetryError(
            None, "/sendMail", reason=urllib3.exceptions.SSLError(ssl.SSLEOFError(8))
        )
    )
    assert error_from_exception(wrapped).code == "connection_failed"
    bad = error_from_exception(ssl.SSLCertVerificationError(1, "unable to get issuer"))
    assert (bad.code, bad.retryable) == ("tls_error", False)


@pytest.mark.parametrize(
    "limits, code",
    [
        # Over the per app and mailbox request budget: ApplicationThrottled.
        ({"graph_requests_per_window": 0, "window_seconds": 5.0}, "throttled"),
        # Over the 4 requests at a time: MailboxConcurrency.
        ({"graph_concurrency_per_mailbox": 0}, "mailbox_concurrency"),
    ],
)
def test_outlooks_throttling_answers_are_throttles_with_retry_after(
    sandbox, graph_values, ctl, limits, code
):
    ctl("PUT", "throttling", {"enabled": True, **limits})
    report = run_test(graph_values)

    assert report.failed_step.key == "send"
    assert report.error.code == code
    assert report.error.retryable
    assert report.error.retry_after is not None and report.error.retry_after > 0
    assert report.error.troubleshooting.title
