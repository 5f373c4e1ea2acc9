"""The SMTP provider against the sandbox's Exchange Online SMTP, over TLS: Basic,
OAuth 2.0 application and every SMTP failure mapped to one error code."""

import smtplib
import socket
from email import message_from_bytes
from email import policy as email_policy

import pytest

from integrations.exceptions import (
    AuthenticationFailed,
    ConfigurationError,
    ConnectionFailed,
    SenderRejected,
    Throttled,
    TlsError,
)
from integrations.providers.base import OutgoingEmail
from integrations.providers.smtp import SmtpProvider
from integrations.providers.smtp_client import build_message, error_from_reply
from tests.sandbox.m365 import Control, trusted_session

pytestmark = pytest.mark.django_db

ALL_STEPS = ["connect", "starttls", "authenticate", "sender", "message"]


@pytest.fixture
def ctl(sandbox):
    with trusted_session(sandbox.ca_path) as http:
        yield Control(sandbox, http)


def app_config(sb, **overrides):
    seed = sb.seed
    config = {
        "cloud": "global",
        "smtp_host": "smtp.office365.com",
        "smtp_port": 587,
        "security": "starttls",
        "minimum_tls": "1.2",
        "sender": seed["sender"],
        "sender_name": "AppSec Alerts",
        "recipients": [seed["recipient"]],
        "auth_type": "oauth_app",
        "tenant_id": seed["tenant_id"],
        "client_id": seed["client_id"],
    }
    config.update(overrides)
    return config


def app_provider(sb, secrets=None, **overrides):
    return SmtpProvider(
        config=app_config(sb, **overrides),
        secrets=secrets
        if secrets is not None
        else {"client_secret": sb.seed["client_secret"]},
    )


def basic_provider(sb, username=None, password=None, **overrides):
    seed = sb.seed
    overrides.setdefault("sender", seed["user"])
    return SmtpProvider(
        config=app_config(
            sb, auth_type="basic", username=username or seed["user"], **overrides
        ),
        secrets={"password": password or seed["password"]},
    )


def email(to, subject="Hello", **kwargs):
    return OutgoingEmail(
        to=tuple(to), subject=subject, text="Plain text body", **kwargs
    )


def failed(report):
    step = report.failed_step
    assert step is not None, [(s.key, s.status) for s in report.steps]
    return step.key, report.error


# --- what works ------------------------------------------------------------------


def test_application_oauth_test_passes_every_step_and_delivers(sandbox):
    report = app_provider(sandbox).test_connection()

    assert report.ok, [(s.key, s.status, s.error) for s in report.steps]
    assert [s.key for s in report.steps] == ALL_STEPS
    assert report.steps[1].detail.startswith("TLSv1.")
    (message,) = sandbox.messages(to=sandbox.seed["recipient"])
    assert message["transport"] == "smtp"
    assert message["authenticated_as"]["kind"] == "app"
    assert message["from"] == sandbox.seed["sender"]


def test_basic_authentication_sends_as_the_user(sandbox):
    report = basic_provider(sandbox).test_connection()

    assert report.ok, report.error
    (message,) = sandbox.messages(to=sandbox.seed["recipient"])
    assert message["authenticated_as"]["kind"] == "basic"


def test_test_email_address_receives_the_test_message(sandbox):
    provider = app_provider(sandbox, test_email="security-team@contoso.onmicrosoft.com")
    provider.config["recipients"] = ["someone@contoso.onmicrosoft.com"]

    assert provider.test_connection().ok
    assert sandbox.messages(to="security-team@contoso.onmicrosoft.com")
    assert not sandbox.messages(to="someone@contoso.onmicrosoft.com")


def test_a_batch_reuses_one_session_and_one_token(sandbox):
    provider = app_provider(sandbox)
    before = sandbox.counters()
    recipient = sandbox.seed["recipient"]

    with provider.open() as connection:
        for n in range(3):
            connection.send(email([recipient], subject=f"Batch {n}"))

    after = sandbox.counters()
    assert after["smtp_sessions"] - before["smtp_sessions"] == 1
    assert after["smtp_messages"] - before["smtp_messages"] == 3
    assert (
        after["token_requests"]["client_credentials"]
        - before["token_requests"]["client_credentials"]
        <= 1
    )
    assert len(sandbox.messages(to=recipient)) == 3


def test_messages_are_proper_mime_with_sender_name_message_id_and_headers(sandbox):
    provider = app_provider(sandbox)
    recipient = sandbox.seed["recipient"]
    outgoing = email(
        [recipient],
        subject="Vulnérabilité critique",
        html="<p>An <b>HTML</b> part</p>",
        message_id="<finding-42@appsec.example>",
        headers={"X-AppSec-Event": "new_vulnerability"},
    )

    with provider.open() as connection:
        connection.send(outgoing)

    (message,) = sandbox.messages(to=recipient)
    assert message["subject"] == "Vulnérabilité critique"
    assert message["message_id"] == "<finding-42@appsec.example>"
    assert "Plain text body" in message["text"]
    assert "<b>HTML</b>" in message["html"]
    headers = {k.lower(): v for k, v in message["headers"].items()}
    assert headers["x-appsec-event"] == "new_vulnerability"
    assert "AppSec Alerts" in headers["from"]


def test_build_message_has_a_text_part_and_an_html_alternative():
    outgoing = email(["a@example.com"], html="<p>hi</p>", message_id="<id@x>")
    message = build_message(outgoing, sender="n@example.com", sender_name="Alerts")

    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.get_payload()] == [
        "text/plain",
        "text/html",
    ]
    assert message["From"] == "Alerts <n@example.com>"
    assert message["Message-ID"] == "<id@x>"


HOSTILE_SENDER_NAMES = [
    "Evil\r\nBcc: victim@example.com",
    "Evil\nBcc: victim@example.com",
    'Security" <ceo@contoso.com>, "x',
    "Evil\x00\x1b[31m\u2028Bcc: victim@example.com",
]


@pytest.mark.parametrize("name", HOSTILE_SENDER_NAMES)
def test_a_hostile_saved_sender_name_cannot_inject_headers_or_addresses(name):
    # The form refuses these names; a row saved before it did must still be safe.
    message = build_message(
        email(["a@example.com"]), sender="n@example.com", sender_name=name
    )

    raw = message.as_bytes()
    parsed = message_from_bytes(raw, policy=email_policy.default)
    assert parsed["Bcc"] is None and b"\nBcc:" not in raw
    assert len(parsed.get_all("From")) == 1
    assert [a.addr_spec for a in parsed["From"].addresses] == ["n@example.com"]
    assert [a.addr_spec for a in parsed["To"].addresses] == ["a@example.com"]


def test_a_hostile_saved_sender_name_reaches_only_the_recipient(sandbox):
    provider = app_provider(sandbox, sender_name=HOSTILE_SENDER_NAMES[0])
    recipient = sandbox.seed["recipient"]

    with provider.open() as connection:
        connection.send(email([recipient], subject="Injected?"))

    (message,) = sandbox.messages(subject="Injected?")
    headers = {k.lower(): v for k, v in message["headers"].items()}
    assert "bcc" not in headers
    assert message["to"] == [recipient]
    assert not sandbox.messages(to="victim@example.com")


def test_minimum_tls_version_1_3_is_enforced(sandbox):
    report = app_provider(sandbox, minimum_tls="1.3").test_connection()

    assert report.ok, report.error
    assert report.steps[1].detail == "TLSv1.3"


# --- every SMTP failure, one code each ---------------------------------------------


def test_wrong_password_is_535_5_7_3(sandbox):
    key, error = failed(basic_provider(sandbox, password="wrong").test_connection())

    assert key == "authenticate"
    assert isinstance(error, AuthenticationFailed)
    assert error.code == "smtp_auth_failed"
    assert "535" in error.request_id


def test_smtp_auth_disabled_for_the_tenant_is_535_5_7_139(sandbox, ctl):
    ctl.patch_tenant(smtp_auth_disabled=True)

    key, error = failed(app_provider(sandbox).test_connection())

    assert (key, error.code) == ("authenticate", "smtp_auth_disabled")
    assert "SMTP AUTH" in str(error.troubleshooting.title)


def test_basic_auth_disabled_is_reported_as_5_7_139(sandbox, ctl):
    ctl.patch_tenant(basic_auth_disabled=True)

    key, error = failed(basic_provider(sandbox).test_connection())

    assert (key, error.code) == ("authenticate", "smtp_auth_disabled")


def test_basic_auth_unsupported_550_5_7_30(sandbox, ctl):
    ctl.add_fault(
        target="smtp",
        smtp_stage="auth",
        smtp_reply="550 5.7.30 Basic authentication is not supported for Client Submission.",
    )

    key, error = failed(basic_provider(sandbox).test_connection())

    assert (key, error.code) == ("authenticate", "basic_auth_unsupported")
    assert "OAuth 2.0" in str(error.troubleshooting.text)


def test_app_without_smtp_permission_is_refused_at_auth(sandbox, ctl):
    client_id, secret = ctl.add_app(
        application_permissions=["Mail.Send"],
        mailbox_permissions=[sandbox.seed["sender"]],
    )

    key, error = failed(
        app_provider(
            sandbox, {"client_secret": secret}, client_id=client_id
        ).test_connection()
    )

    assert (key, error.code) == ("authenticate", "permission_missing")
    assert "SMTP.SendAsApp" in str(error.troubleshooting.text)


def test_app_without_mailbox_permission_is_refused(sandbox, ctl):
    client_id, secret = ctl.add_app(
        application_permissions=["SMTP.SendAsApp"], mailbox_permissions=[]
    )

    key, error = failed(
        app_provider(
            sandbox, {"client_secret": secret}, client_id=client_id
        ).test_connection()
    )

    assert key == "authenticate"
    assert error.code in ("smtp_auth_failed", "send_as_denied")


def test_sending_as_another_mailbox_is_550_5_7_60(sandbox):
    provider = basic_provider(sandbox, sender=sandbox.seed["sender"])

    key, error = failed(provider.test_connection())

    assert key == "sender"
    assert isinstance(error, SenderRejected)
    assert error.code == "send_as_denied"


def test_send_as_denied_at_end_of_data_is_554_5_2_252(sandbox, ctl):
    ctl.patch_tenant(send_as_denied_at_data=True)
    provider = basic_provider(sandbox, sender=sandbox.seed["sender"])

    key, error = failed(provider.test_connection())

    assert error.code == "send_as_denied"
    assert key in ("sender", "message")


def test_submission_rate_limit_4_3_2_is_throttled_and_retryable(sandbox, ctl):
    ctl.add_fault(
        target="smtp",
        smtp_stage="data",
        smtp_reply="451 4.3.2 Message submission rate for this client has exceeded the configured limit",
    )

    key, error = failed(app_provider(sandbox).test_connection())

    assert key == "message"
    assert isinstance(error, Throttled)
    assert error.retryable
    assert error.code == "throttled"


def test_421_at_connect_is_throttled_and_retryable(sandbox, ctl):
    ctl.add_fault(
        target="smtp",
        smtp_stage="connect",
        smtp_reply="421 4.3.2 Service not available",
    )

    key, error = failed(app_provider(sandbox).test_connection())

    assert key == "connect"
    assert isinstance(error, Throttled) and error.retryable


@pytest.mark.parametrize(
    "code, text, expected",
    [
        (535, "5.7.3 Authentication unsuccessful", "smtp_auth_failed"),
        (
            535,
            "5.7.139 Authentication unsuccessful, basic authentication is disabled.",
            "smtp_auth_disabled",
        ),
        (550, "5.7.30 Basic authentication is not supported", "basic_auth_unsupported"),
        (
            550,
            "5.7.60 SMTP; Client does not have permissions to send as this sender",
            "send_as_denied",
        ),
        (
            554,
            "5.2.252 SendAsDenied; alex not allowed to send as notifications",
            "send_as_denied",
        ),
        (451, "4.3.2 Message submission rate exceeded", "throttled"),
        (421, "Service not available, closing transmission channel", "throttled"),
        (530, "5.7.57 Client not authenticated to send mail", "relay_denied"),
    ],
)
def test_exchange_replies_map_to_one_code(code, text, expected):
    error = error_from_reply(code, text.encode(), stage="data")

    assert error.code == expected
    assert error.troubleshooting.title != "Unexpected answer"


def test_refused_connection(sandbox, settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    settings.M365_SMTP_PORT = free_port

    key, error = failed(app_provider(sandbox).test_connection())

    assert (key, error.code) == ("connect", "connection_refused")
    assert error.retryable


def test_server_that_does_not_answer_times_out(sandbox, settings):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the TCP connection, never says 220
    settings.M365_SMTP_PORT = listener.getsockname()[1]
    settings.SMTP_TIMEOUT = 0.5
    try:
        key, error = failed(app_provider(sandbox).test_connection())
    finally:
        listener.close()

    assert (key, error.code) == ("connect", "timeout")


def test_untrusted_certificate_is_a_tls_error(sandbox, settings):
    settings.M365_CA_BUNDLE = ""

    key, error = failed(app_provider(sandbox).test_connection())

    assert key == "starttls"
    assert isinstance(error, TlsError)
    assert error.code == "tls_error"


def test_tls_handshake_failure_is_a_tls_error(sandbox):
    # Implicit TLS to a port that speaks plain SMTP first: the handshake fails.
    key, error = failed(app_provider(sandbox, security="ssl").test_connection())

    assert (key, error.code) == ("connect", "tls_error")


def test_plain_text_smtp_needs_the_setting(sandbox, settings):
    settings.SMTP_ALLOW_INSECURE = False

    key, error = failed(app_provider(sandbox, security="none").test_connection())

    assert isinstance(error, ConfigurationError)
    assert error.code == "smtp_insecure_not_allowed"


def test_plain_text_smtp_cannot_authenticate_at_exchange(sandbox, settings):
    settings.SMTP_ALLOW_INSECURE = True

    key, error = failed(app_provider(sandbox, security="none").test_connection())

    assert key == "authenticate"
    assert error.code in ("relay_denied", "smtp_auth_unavailable")


def test_server_hanging_up_between_messages_reconnects_once(sandbox):
    provider = app_provider(sandbox)
    recipient = sandbox.seed["recipient"]

    with provider.open() as connection:
        connection.send(email([recipient], subject="one"))
        connection.session.client.sock.close()  # the server hung up
        connection.send(email([recipient], subject="two"))

    assert len(sandbox.messages(to=recipient)) == 2


def test_no_step_raises_anything_but_integration_errors(sandbox, monkeypatch):
    def boom(*args, **kwargs):
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")

    monkeypatch.setattr(smtplib.SMTP, "ehlo", boom)

    key, error = failed(app_provider(sandbox).test_connection())

    assert key == "connect"
    assert isinstance(error, ConnectionFailed)
