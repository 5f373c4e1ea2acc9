"""The provider contract: every notification tool's Test Connection, against the same
failure set, maps each failure to the same error `code` (and `retryable`).

Modelled on django-allauth's `OAuth2TestsMixin`: each tool below (Microsoft Azure Mail,
SMTP with OAuth 2.0 application, SMTP with a saved delegated grant) says how to build
its drawer values and how to break its own transport; the tests are written once. Faults
are injected into the real sandbox (identity platform, Graph, SMTP) over TLS. Where a
tool's transport signals a failure its own way (Exchange SMTP throttles with a 4.3.2
reply, not HTTP 429), the tool injects that fault, and the code must still match.
"""

import time
import uuid

import pytest

from integrations.forms.microsoft_azure_mail import MicrosoftAzureMailForm
from integrations.forms.smtp import SmtpForm
from integrations.models import Integration, IntegrationState
from integrations.providers import delegated
from integrations.providers.base import StepStatus
from integrations.providers.smtp import SmtpProvider
from integrations.services import integration_test_connection
from tests.integrations.smtp_support import SMTP_SCOPE, drawer_data
from tests.sandbox.m365 import sign_in, trusted_session

pytestmark = pytest.mark.django_db

UNKNOWN_GUID = "00000000-0000-4000-8000-000000000000"


class Tool:
    """How the contract drives one tool (subclasses fill in the transport)."""

    id: str
    key: str
    form_class: type
    #: The application permission the tool's app needs ("" when it has none).
    application_permission = ""

    def __init__(self, sandbox, ctl):
        self.sb = sandbox
        self.ctl = ctl
        self.values = self.drawer_values()

    def drawer_values(self) -> dict:
        raise NotImplementedError

    def prepare(self) -> None:
        """Anything the tool needs saved before its Test runs."""

    def use_app(self, client_id: str, secret: str) -> None:
        self.values.update(client_id=client_id, client_secret=secret)

    def app_fields(self) -> dict:
        """Registration for an app with every permission the tool needs."""
        raise NotImplementedError

    def test(self):
        """Test Connection, as the drawer runs it."""
        form = self.form_class(self.values, saved_secrets=self.saved_secrets())
        assert form.is_valid(), form.errors
        return integration_test_connection(
            provider_key=self.key, cleaned_data=form.cleaned_data, actor=None
        )

    def saved_secrets(self):
        row = Integration.objects.filter(provider=self.key).first()
        return set(row.secrets) if row else set()

    # Faults on the tool's own transport (the token endpoint is the same for all).
    def throttle_transport(self) -> float | None:
        """Make the send throttled; returns the Retry-After the server will give."""
        raise NotImplementedError

    def fail_transport(self) -> None:
        """Make the send fail with a transient server error."""
        raise NotImplementedError

    def slow_transport(self, seconds: float) -> None:
        """Make the send hang for `seconds`."""
        raise NotImplementedError


class AzureMail(Tool):
    id = "microsoft_azure_mail"
    key = "microsoft_azure_mail"
    form_class = MicrosoftAzureMailForm
    application_permission = "Mail.Send"

    def drawer_values(self):
        seed = self.sb.seed
        return {
            "tenant_id": seed["tenant_id"],
            "client_id": seed["client_id"],
            "client_secret": seed["client_secret"],
            "sender": seed["sender"],
            "recipients": seed["recipient"],
            "cloud": "global",
            "secret_expires_on": "",
        }

    def app_fields(self):
        return {"application_permissions": ["Mail.Send"]}

    def throttle_transport(self):
        self.ctl(
            "POST", "faults", {"target": "graph", "status": 429, "retry_after": "2.5"}
        )
        return 2.5

    def fail_transport(self):
        self.ctl("POST", "faults", {"target": "graph", "status": 503})

    def slow_transport(self, seconds):
        self.ctl("POST", "faults", {"target": "graph", "delay": seconds})


class SmtpTool(Tool):
    key = "smtp"
    form_class = SmtpForm

    def throttle_transport(self):
        self.ctl(
            "POST",
            "faults",
            {
                "target": "smtp",
                "smtp_stage": "data",
                "smtp_reply": "451 4.3.2 Message submission rate for this client has "
                "exceeded the configured limit",
            },
        )
        return None  # SMTP has no Retry-After

    def fail_transport(self):
        # The sandbox's default: 451 4.3.0 Temporary server error.
        self.ctl("POST", "faults", {"target": "smtp", "smtp_stage": "data"})

    def slow_transport(self, seconds):
        self.ctl(
            "POST", "faults", {"target": "smtp", "smtp_stage": "mail", "delay": seconds}
        )


class SmtpApplication(SmtpTool):
    id = "smtp_oauth_app"
    application_permission = "SMTP.SendAsApp"

    def drawer_values(self):
        return drawer_data(self.sb, "oauth_app")

    def app_fields(self):
        return {
            "application_permissions": ["SMTP.SendAsApp"],
            "mailbox_permissions": [self.sb.seed["sender"]],
        }


class SmtpDelegated(SmtpTool):
    """Delegated: a person signed in before (the grant is saved); Test refreshes it."""

    id = "smtp_oauth_delegated"

    def drawer_values(self):
        return drawer_data(self.sb, "oauth_delegated", client_secret="")

    def prepare(self):
        seed = self.sb.seed
        client = delegated.DelegatedClient(
            client_id=seed["client_id"],
            client_secret=seed["client_secret"],
            authority_host=self.sb.authority_host,
            tenant=seed["tenant_id"],
        )
        flow = delegated.start_flow(
            client,
            scopes=[SMTP_SCOPE],
            redirect_uri=seed["redirect_uris"][0],
            login_hint=seed["user"],
        )
        with trusted_session(self.sb.ca_path) as http:
            response = sign_in(http, flow["auth_uri"], seed["user"], seed["password"])
        grant = delegated.complete_flow(client, flow=flow, auth_response=response)
        Integration.objects.create(
            provider=self.key,
            state=IntegrationState.ACTIVE,
            secrets={
                "client_secret": seed["client_secret"],
                **grant.as_secrets(),
                # Expired, so Test redeems the refresh token at the token endpoint.
                "token_expires_at": 0,
            },
        )

    def test(self):
        # A grant is only used for the settings it was saved with (another tenant or
        # client would drop it): these are the saved settings, whose tenant or app
        # may since have gone.
        form = self.form_class(self.values, saved_secrets=self.saved_secrets())
        assert form.is_valid(), form.errors
        secret = SmtpProvider.secret_fields
        config = {k: v for k, v in form.cleaned_data.items() if k not in secret}
        Integration.objects.filter(provider=self.key).update(config=config)
        return super().test()


TOOLS = [
    pytest.param(AzureMail, id=AzureMail.id),
    pytest.param(SmtpApplication, id=SmtpApplication.id),
    # Test refreshes the saved grant under a row lock, from its own thread: the
    # test's transaction must not hold the row.
    pytest.param(
        SmtpDelegated,
        id=SmtpDelegated.id,
        marks=pytest.mark.django_db(transaction=True),
    ),
]


# The tools that authenticate as an application (a delegated grant has no
# application permission to miss).
APP_TOOLS = [t for t in TOOLS if t.values[0].application_permission]


def _tool(request, sandbox, ctl):
    tool = request.param(sandbox, ctl)
    tool.prepare()  # before the test injects its faults
    return tool


@pytest.fixture(params=TOOLS)
def tool(request, sandbox, ctl):
    return _tool(request, sandbox, ctl)


@pytest.fixture(params=APP_TOOLS)
def app_tool(request, sandbox, ctl):
    return _tool(request, sandbox, ctl)


def failure(report, code, *, retryable):
    """The report failed with `code`; the steps after the failed one were skipped."""
    error = report.error
    assert error is not None, [(s.key, s.status) for s in report.steps]
    assert (error.code, error.retryable) == (code, retryable), (
        report.failed_step.key,
        error.detail,
    )
    after = report.steps[report.steps.index(report.failed_step) + 1 :]
    assert all(step.status == StepStatus.SKIPPED for step in after)
    assert error.troubleshooting.title != "Unexpected answer"
    return error


# --- the tool works ---------------------------------------------------------------------


def test_valid_values_pass_every_step(tool, sandbox):
    report = tool.test()

    assert report.ok, (report.failed_step and report.failed_step.key, report.error)
    assert sandbox.messages(to=sandbox.seed["recipient"])


# --- credentials --------------------------------------------------------------------------


def test_bad_secret_is_secret_invalid(tool):
    tool.values["client_secret"] = "Sbx8Q~not.the.secret.value_0000000000"

    failure(tool.test(), "secret_invalid", retryable=False)


def test_expired_secret_is_secret_expired(tool, sandbox, ctl):
    seed = sandbox.seed
    expired = ctl(
        "POST",
        f"tenants/{seed['tenant_id']}/apps/{seed['client_id']}/secrets",
        {"expires_at": "2020-01-01T00:00:00Z"},
    )
    tool.values["client_secret"] = expired["value"]

    error = failure(tool.test(), "secret_expired", retryable=False)
    assert "Certificates & secrets" in str(error.troubleshooting.text)


def test_secret_id_pasted_as_value_is_said_so(tool, sandbox):
    """Entra ID refuses the Secret ID as a secret (AADSTS7000215); the GUID shape of
    what was typed tells the admin which column they copied."""
    tool.values["client_secret"] = sandbox.seed["client_secret_id"]

    error = failure(tool.test(), "secret_id_pasted", retryable=False)
    assert "looks like the Secret ID" in str(error.troubleshooting.title)
    assert "Value" in str(error.troubleshooting.text)


def test_unknown_tenant_is_tenant_not_found(tool):
    tool.values["tenant_id"] = UNKNOWN_GUID

    failure(tool.test(), "tenant_not_found", retryable=False)


def test_unknown_client_is_client_not_found(tool):
    tool.values["client_id"] = str(uuid.uuid4())

    failure(tool.test(), "client_not_found", retryable=False)


def test_app_without_the_application_permission_is_permission_missing(
    app_tool, add_app
):
    tool = app_tool
    fields = tool.app_fields()
    fields["application_permissions"] = [
        p
        for p in ("Mail.Send", "SMTP.SendAsApp", "IMAP.AccessAsApp")
        if p != tool.application_permission
    ]
    tool.use_app(*add_app(**fields))

    error = failure(tool.test(), "permission_missing", retryable=False)
    assert error.troubleshooting.steps


# --- the identity platform's own failures -------------------------------------------------


def test_token_endpoint_429_is_throttled_with_retry_after(tool, ctl):
    ctl("POST", "faults", {"target": "token", "status": 429, "retry_after": "3"})

    error = failure(tool.test(), "throttled", retryable=True)
    assert error.retry_after == 3
    assert error.status == 429


def test_token_endpoint_5xx_is_service_unavailable(tool, ctl):
    ctl("POST", "faults", {"target": "token", "status": 503})

    error = failure(tool.test(), "service_unavailable", retryable=True)
    assert error.status == 503
    assert error.request_id  # the AADSTS correlation id, for support


def test_token_endpoint_timeout_is_timeout(tool, ctl, settings):
    settings.M365_HTTP_TIMEOUT = 0.5
    ctl("POST", "faults", {"target": "token", "delay": 3})
    started = time.monotonic()

    failure(tool.test(), "timeout", retryable=True)
    assert time.monotonic() - started < 2.5


def test_token_endpoint_dropping_the_connection_is_connection_failed(tool, ctl):
    ctl("POST", "faults", {"target": "token", "drop": True})

    failure(tool.test(), "connection_failed", retryable=True)


# --- the send transport's failures (each tool injects its own) ----------------------------


def test_throttled_send_is_throttled(tool):
    retry_after = tool.throttle_transport()

    error = failure(tool.test(), "throttled", retryable=True)
    assert error.retry_after == retry_after


def test_transient_send_failure_is_service_unavailable(tool):
    tool.fail_transport()

    failure(tool.test(), "service_unavailable", retryable=True)


def test_slow_send_times_out_within_the_test_limit(tool, settings):
    settings.TEST_CONNECTION_TIMEOUT = 1.5
    tool.slow_transport(5)
    started = time.monotonic()

    failure(tool.test(), "timeout", retryable=True)
    assert time.monotonic() - started < 3.5


# --- TLS ------------------------------------------------------------------------------


def test_untrusted_certificate_is_a_tls_error(tool, settings):
    # REQUESTS_CA_BUNDLE (tests/conftest.py) and the system store lack the sandbox CA.
    settings.M365_CA_BUNDLE = ""

    failure(tool.test(), "tls_error", retryable=False)
