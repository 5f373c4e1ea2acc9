"""Exchange Online SMTP with smtplib: STARTTLS, XOAUTH2, basic auth, refusals."""

import smtplib
import ssl

import pytest

from tests.sandbox.m365 import (
    GRAPH_DEFAULT,
    OUTLOOK_DEFAULT,
    SMTP_SEND,
    app_token,
    delegated_token,
    mime_message,
    smtp_login_xoauth2,
    smtp_reply,
    smtp_session,
)

# msal suggests form_post; the sandbox supports both and the tests use msal's default.
pytestmark = pytest.mark.filterwarnings(
    "ignore:response_mode='form_post' is recommended:UserWarning"
)

AUTH_UNSUCCESSFUL = "5.7.3"


@pytest.fixture
def outlook_token(sb, http):
    return app_token(sb, http, OUTLOOK_DEFAULT)


def send(client, sender, to, **kwargs):
    message = mime_message(sender, to, **kwargs)
    client.send_message(message, from_addr=sender, to_addrs=to)
    return message


# --- TLS and the order of things ------------------------------------------------


def test_ehlo_offers_starttls_and_auth_only_after_it(sb):
    with smtp_session(sb, starttls=False) as client:
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        client.starttls(context=ssl.create_default_context(cafile=str(sb.ca_path)))
        client.ehlo("tests.local")

        mechanisms = client.esmtp_features["auth"].upper().split()
        assert {"XOAUTH2", "PLAIN", "LOGIN"} <= set(mechanisms)


def test_auth_before_starttls_is_refused_with_5_7_57(sb, seed):
    with smtp_session(sb, starttls=False) as client:
        code, text = client.docmd("AUTH", "PLAIN AGFsZXgAcGFzc3dvcmQ=")

    assert code == 530
    assert b"5.7.57" in text


def test_starttls_certificate_is_verified_against_the_sandbox_ca(sb):
    with smtplib.SMTP(sb.smtp_host, sb.smtp_port, timeout=10) as client:
        client.ehlo()
        with pytest.raises(ssl.SSLCertVerificationError):
            client.starttls(context=ssl.create_default_context())


def test_auth_without_ehlo_after_starttls_is_503_5_5_2(sb, seed, outlook_token):
    with smtplib.SMTP(sb.smtp_host, sb.smtp_port, timeout=10) as client:
        client.ehlo()
        client.starttls(context=ssl.create_default_context(cafile=str(sb.ca_path)))
        code, text = client.docmd("AUTH", "PLAIN AGFsZXgAcGFzc3dvcmQ=")

    assert code == 503
    assert b"5.5.2" in text


def test_mail_without_auth_is_refused_with_5_7_57(sb, seed):
    with smtp_session(sb) as client:
        with pytest.raises(smtplib.SMTPException) as refused:
            send(client, seed["sender"], [seed["recipient"]])

    code, text = smtp_reply(refused.value)
    assert code == 530
    assert "5.7.57" in text
    assert sb.messages() == []


# --- XOAUTH2 --------------------------------------------------------------------


def test_app_token_with_mailbox_permission_sends_as_that_mailbox(
    sb, seed, outlook_token
):
    with smtp_session(sb) as client:
        code, _ = smtp_login_xoauth2(client, seed["sender"], outlook_token)
        assert code == 235
        sent = send(
            client,
            seed["sender"],
            [seed["recipient"]],
            subject="SMTP app",
            text="Plain part.",
            html="<p>HTML part.</p>",
            headers={"X-Project": "apollo"},
        )

    (message,) = sb.messages(subject="SMTP app")
    assert message["recipient"] == seed["recipient"]
    assert seed["sender"] in message["from"]
    assert message["to"] == [seed["recipient"]]
    assert message["text"].strip() == "Plain part."
    assert message["html"].strip() == "<p>HTML part.</p>"
    assert message["headers"]["X-Project"] == "apollo"
    assert message["message_id"].strip("<>") == sent["Message-ID"].strip("<>")
    assert message["transport"] == "smtp"
    assert message["authenticated_as"]["kind"] == "app"
    assert message["authenticated_as"]["client_id"] == seed["client_id"]


def test_accepted_data_answers_250_with_the_message_id(sb, seed, outlook_token):
    message = mime_message(seed["sender"], [seed["recipient"]])

    with smtp_session(sb) as client:
        smtp_login_xoauth2(client, seed["sender"], outlook_token)
        client.mail(seed["sender"])
        client.rcpt(seed["recipient"])
        code, text = client.data(message.as_bytes())

    assert code == 250
    assert text.startswith(b"2.0.0 OK")
    assert message["Message-ID"].encode() in text
    assert b"Hostname=" in text


def test_non_ascii_subject_and_bodies_are_stored_decoded(sb, seed, outlook_token):
    with smtp_session(sb) as client:
        smtp_login_xoauth2(client, seed["sender"], outlook_token)
        send(
            client,
            seed["sender"],
            [seed["recipient"]],
            subject="Überprüfung ✓ réussie",
            text="Grüße ✓",
            html="<p>Grüße ✓</p>",
        )

    (message,) = sb.messages()
    assert message["subject"] == "Überprüfung ✓ réussie"
    assert message["text"].strip() == "Grüße ✓"
    assert message["html"].strip() == "<p>Grüße ✓</p>"


def test_smtp_message_is_stored_once_per_envelope_recipient(sb, seed, outlook_token):
    with smtp_session(sb) as client:
        smtp_login_xoauth2(client, seed["sender"], outlook_token)
        client.send_message(
            mime_message(seed["sender"], [seed["recipient"]], subject="fan out"),
            from_addr=seed["sender"],
            to_addrs=[seed["recipient"], seed["user"], "hidden@example.com"],
        )

    assert sorted(m["recipient"] for m in sb.messages(subject="fan out")) == sorted(
        [seed["recipient"], seed["user"], "hidden@example.com"]
    )


def test_app_token_for_mailbox_without_permission_is_535_5_7_3(sb, seed, outlook_token):
    with smtp_session(sb) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp_login_xoauth2(client, seed["recipient"], outlook_token)

    assert refused.value.smtp_code == 535
    assert AUTH_UNSUCCESSFUL.encode() in refused.value.smtp_error


def test_app_token_without_smtp_send_as_app_is_535(sb, http, ctl, seed):
    client_id, secret = ctl.add_app(
        application_permissions=["IMAP.AccessAsApp"],
        mailbox_permissions=[seed["sender"]],
    )
    token = app_token(sb, http, OUTLOOK_DEFAULT, client_id=client_id, credential=secret)

    with smtp_session(sb) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp_login_xoauth2(client, seed["sender"], token)

    assert refused.value.smtp_code == 535
    assert AUTH_UNSUCCESSFUL.encode() in refused.value.smtp_error


def test_graph_audience_token_is_535_5_7_3(sb, http, seed):
    token = app_token(sb, http, GRAPH_DEFAULT)

    with smtp_session(sb) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp_login_xoauth2(client, seed["sender"], token)

    assert refused.value.smtp_code == 535
    assert AUTH_UNSUCCESSFUL.encode() in refused.value.smtp_error


def test_garbage_token_is_535_5_7_3(sb, seed):
    with smtp_session(sb) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp_login_xoauth2(client, seed["sender"], "eyJnot.a.token")

    assert refused.value.smtp_code == 535
    assert AUTH_UNSUCCESSFUL.encode() in refused.value.smtp_error


def test_expired_token_is_535_5_7_3(sb, ctl, seed, outlook_token):
    ctl.advance_clock(24 * 3600)

    with smtp_session(sb) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp_login_xoauth2(client, seed["sender"], outlook_token)

    assert refused.value.smtp_code == 535


def test_app_token_of_another_tenant_is_535(sb, http, ctl, seed):
    other = ctl.add_tenant(domains=["fabrikam.onmicrosoft.com"])
    client_id, secret = ctl.add_app(
        tenant=other,
        application_permissions=["SMTP.SendAsApp"],
        mailbox_permissions=[seed["sender"]],
    )
    token = app_token(
        sb, http, OUTLOOK_DEFAULT, client_id=client_id, credential=secret, tenant=other
    )

    with smtp_session(sb) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp_login_xoauth2(client, seed["sender"], token)

    assert refused.value.smtp_code == 535


def test_shared_mailbox_has_no_password_to_log_in_with(sb, seed):
    with smtp_session(sb) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login(seed["recipient"], seed["password"])

    assert refused.value.smtp_code == 535


def test_delegated_smtp_send_token_sends_as_the_signed_in_user(sb, http, seed):
    token = delegated_token(sb, http, [SMTP_SEND])

    with smtp_session(sb) as client:
        code, _ = smtp_login_xoauth2(client, seed["user"], token)
        assert code == 235
        send(client, seed["user"], [seed["recipient"]], subject="SMTP delegated")

    (message,) = sb.messages(subject="SMTP delegated")
    assert message["authenticated_as"]["kind"] == "user"
    assert message["authenticated_as"]["user"] == seed["user"]


def test_delegated_token_for_another_user_is_535(sb, http, seed):
    token = delegated_token(sb, http, [SMTP_SEND])

    with smtp_session(sb) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp_login_xoauth2(client, seed["sender"], token)

    assert refused.value.smtp_code == 535


def test_delegated_user_may_submit_as_a_mailbox_granted_to_it(sb, http, ctl, seed):
    ctl.patch_user(seed["user"], send_as=[seed["recipient"]])
    token = delegated_token(sb, http, [SMTP_SEND])

    with smtp_session(sb) as client:
        smtp_login_xoauth2(client, seed["user"], token)
        send(client, seed["recipient"], [seed["sender"]], subject="shared mailbox")
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            send(client, seed["sender"], [seed["recipient"]])

    (message,) = sb.messages(subject="shared mailbox")
    assert seed["recipient"] in message["from"]
    assert refused.value.smtp_code == 550


def test_mail_from_an_address_not_allowed_is_550_5_7_60(sb, seed, outlook_token):
    with smtp_session(sb) as client:
        smtp_login_xoauth2(client, seed["sender"], outlook_token)
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            send(client, seed["recipient"], [seed["user"]])

    assert refused.value.smtp_code == 550
    assert b"5.7.60" in refused.value.smtp_error
    assert sb.messages() == []


def test_send_as_denied_at_data_is_554_5_2_252(sb, ctl, seed, outlook_token):
    ctl.patch_tenant(send_as_denied_at_data=True)

    with smtp_session(sb) as client:
        smtp_login_xoauth2(client, seed["sender"], outlook_token)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(client, seed["recipient"], [seed["user"]])

    assert refused.value.smtp_code == 554
    assert b"5.2.252" in refused.value.smtp_error
    assert sb.messages() == []


def test_smtp_auth_disabled_for_the_tenant_is_535_5_7_139(sb, ctl, seed, outlook_token):
    ctl.patch_tenant(smtp_auth_disabled=True)

    with smtp_session(sb) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp_login_xoauth2(client, seed["sender"], outlook_token)

    assert refused.value.smtp_code == 535
    assert b"5.7.139" in refused.value.smtp_error
    assert b"SmtpClientAuthentication is disabled" in refused.value.smtp_error


# --- basic authentication -------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_basic_auth_with_the_users_password_sends(sb, seed, mechanism):
    with smtp_session(sb) as client:
        client.user, client.password = seed["user"], seed["password"]
        authobject = client.auth_plain if mechanism == "PLAIN" else client.auth_login
        code, _ = client.auth(mechanism, authobject)
        assert code == 235
        send(client, seed["user"], [seed["recipient"]], subject=f"basic {mechanism}")

    (message,) = sb.messages(subject=f"basic {mechanism}")
    assert message["authenticated_as"]["kind"] == "basic"
    assert message["authenticated_as"]["user"] == seed["user"]


def test_smtplib_login_picks_a_basic_mechanism(sb, seed):
    with smtp_session(sb) as client:
        code, _ = client.login(seed["user"], seed["password"])

    assert code == 235


def test_wrong_password_is_535_5_7_3(sb, seed):
    with smtp_session(sb) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login(seed["user"], "wrong-password")

    assert refused.value.smtp_code == 535
    assert AUTH_UNSUCCESSFUL.encode() in refused.value.smtp_error


def test_basic_auth_disabled_for_the_tenant_is_535_5_7_139(sb, ctl, seed):
    ctl.patch_tenant(basic_auth_disabled=True)

    with smtp_session(sb) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login(seed["user"], seed["password"])

    assert refused.value.smtp_code == 535
    assert b"5.7.139" in refused.value.smtp_error
    assert b"basic authentication is disabled" in refused.value.smtp_error


# --- faults and throttling ------------------------------------------------------


def test_fault_at_mail_from_answers_451_4_3_2_once(sb, ctl, seed, outlook_token):
    ctl.add_fault(
        target="smtp",
        smtp_stage="mail",
        smtp_reply="451 4.3.2 Temporary server error. Please try again later",
    )

    with smtp_session(sb) as client:
        smtp_login_xoauth2(client, seed["sender"], outlook_token)
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            send(client, seed["sender"], [seed["recipient"]], subject="first try")
        client.rset()
        send(client, seed["sender"], [seed["recipient"]], subject="second try")

    assert refused.value.smtp_code == 451
    assert b"4.3.2" in refused.value.smtp_error
    assert [m["subject"] for m in sb.messages()] == ["second try"]


def test_fault_at_data_answers_its_reply(sb, ctl, seed, outlook_token):
    ctl.add_fault(
        target="smtp",
        smtp_stage="data",
        smtp_reply="451 4.3.2 Temporary server error. Please try again later",
    )

    with smtp_session(sb) as client:
        smtp_login_xoauth2(client, seed["sender"], outlook_token)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(client, seed["sender"], [seed["recipient"]])

    assert refused.value.smtp_code == 451
    assert sb.messages() == []


def test_fault_at_rcpt_refuses_the_recipient(sb, ctl, seed, outlook_token):
    ctl.add_fault(
        target="smtp",
        smtp_stage="rcpt",
        smtp_reply="451 4.3.2 Temporary server error. Please try again later",
    )

    with smtp_session(sb) as client:
        smtp_login_xoauth2(client, seed["sender"], outlook_token)
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            send(client, seed["sender"], [seed["recipient"]])

    assert smtp_reply(refused.value)[0] == 451
    assert sb.messages() == []


def test_fault_at_connect_answers_421(sb, ctl):
    ctl.add_fault(
        target="smtp",
        smtp_stage="connect",
        smtp_reply="421 4.3.2 Service not available, closing transmission channel",
    )

    with pytest.raises(smtplib.SMTPConnectError) as refused:
        smtplib.SMTP(sb.smtp_host, sb.smtp_port, timeout=10)

    assert refused.value.smtp_code == 421
    with smtp_session(sb) as client:  # applied once
        assert client.has_extn("auth")


def test_fault_at_auth_answers_its_reply(sb, ctl, seed, outlook_token):
    ctl.add_fault(
        target="smtp",
        smtp_stage="auth",
        smtp_reply="454 4.7.0 Temporary authentication failure",
    )

    with smtp_session(sb) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp_login_xoauth2(client, seed["sender"], outlook_token)

    assert refused.value.smtp_code == 454


def test_fault_without_reply_answers_451_4_3_0(sb, ctl, seed, outlook_token):
    ctl.add_fault(target="smtp", smtp_stage="mail")

    with smtp_session(sb) as client:
        smtp_login_xoauth2(client, seed["sender"], outlook_token)
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            send(client, seed["sender"], [seed["recipient"]])

    assert refused.value.smtp_code == 451
    assert b"4.3.0" in refused.value.smtp_error


def test_connect_fault_without_reply_answers_421_4_3_2(sb, ctl):
    ctl.add_fault(target="smtp", smtp_stage="connect")

    with pytest.raises(smtplib.SMTPConnectError) as refused:
        smtplib.SMTP(sb.smtp_host, sb.smtp_port, timeout=10)

    assert refused.value.smtp_code == 421
    assert b"4.3.2" in refused.value.smtp_error


def test_drop_fault_closes_the_connection(sb, ctl, seed, outlook_token):
    ctl.add_fault(target="smtp", smtp_stage="data", drop=True)

    with smtp_session(sb) as client:
        smtp_login_xoauth2(client, seed["sender"], outlook_token)
        with pytest.raises(smtplib.SMTPServerDisconnected):
            send(client, seed["sender"], [seed["recipient"]])

    assert sb.messages() == []


def test_throttled_submission_is_451_4_3_2(sb, ctl, seed, outlook_token):
    ctl.throttle(smtp_messages_per_minute=2)

    with smtp_session(sb) as client:
        smtp_login_xoauth2(client, seed["sender"], outlook_token)
        send(client, seed["sender"], [seed["recipient"]], subject="one")
        send(client, seed["sender"], [seed["recipient"]], subject="two")
        with pytest.raises(smtplib.SMTPException) as refused:
            send(client, seed["sender"], [seed["recipient"]], subject="three")

    code, text = smtp_reply(refused.value)
    assert code == 451
    assert "4.3.2" in text
    assert "rate" in text
    assert sorted(m["subject"] for m in sb.messages()) == ["one", "two"]


def test_smtp_counters_count_sessions_messages_and_connections(
    sb, ctl, seed, outlook_token
):
    ctl("DELETE", "counters")

    with smtp_session(sb) as client:
        smtp_login_xoauth2(client, seed["sender"], outlook_token)
        send(client, seed["sender"], [seed["recipient"]])
        send(client, seed["sender"], [seed["recipient"]])

    counters = ctl.counters()
    assert counters["smtp_sessions"] == 1
    assert counters["smtp_messages"] == 2
    assert counters["tcp_connections"]["smtp"] == 1


def test_throttled_submissions_are_counted(sb, ctl, seed, outlook_token):
    ctl.throttle(smtp_messages_per_minute=1)

    with smtp_session(sb) as client:
        smtp_login_xoauth2(client, seed["sender"], outlook_token)
        send(client, seed["sender"], [seed["recipient"]])
        for _ in range(2):
            with pytest.raises(smtplib.SMTPDataError):
                send(client, seed["sender"], [seed["recipient"]])
            client.rset()

    counters = ctl.counters()
    assert (counters["smtp_messages"], counters["smtp_throttled"]) == (1, 2)


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
def test_421_fault_replies_then_closes_the_connection(
    sb, ctl, seed, outlook_token, stage
):
    ctl.add_fault(
        target="smtp",
        smtp_stage=stage,
        smtp_reply="421 4.3.2 Service not available, closing transmission channel",
    )

    with smtp_session(sb) as client:
        smtp_login_xoauth2(client, seed["sender"], outlook_token)
        # One command at a time: smtplib's sendmail() would close on 421 itself.
        reply = client.mail(seed["sender"])
        if stage != "mail":
            reply = client.rcpt(seed["recipient"])
        if stage == "data":
            message = mime_message(seed["sender"], [seed["recipient"]])
            reply = client.data(message.as_bytes())
        with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionResetError)):
            client.noop()

    assert reply[0] == 421
    assert sb.messages() == []
    assert ctl.counters()["faults_fired"]["smtp"] == 1


@pytest.mark.parametrize("stage", ["mail", "data"])
def test_reset_fault_resets_the_connection(sb, ctl, seed, outlook_token, stage):
    ctl.add_fault(target="smtp", smtp_stage=stage, reset=True)

    with smtp_session(sb) as client:
        smtp_login_xoauth2(client, seed["sender"], outlook_token)
        # smtplib reports a reset as OSError (ConnectionResetError), or as a
        # disconnection when it reads the end of the stream first.
        with pytest.raises((OSError, smtplib.SMTPServerDisconnected)):
            send(client, seed["sender"], [seed["recipient"]])

    assert sb.messages() == []


def test_a_drill_can_mix_throttling_replies_and_resets_by_probability(
    sb, ctl, seed, outlook_token
):
    ctl.add_fault(
        target="smtp",
        smtp_stage="data",
        probability=0.3,
        smtp_reply="451 4.3.2 Message submission rate for this client has exceeded "
        "the configured limit",
    )
    ctl.add_fault(target="smtp", smtp_stage="mail", probability=0.2, count=3, drop=True)

    outcomes = []
    for _ in range(40):
        with smtp_session(sb) as client:
            smtp_login_xoauth2(client, seed["sender"], outlook_token)
            try:
                send(client, seed["sender"], [seed["recipient"]])
                outcomes.append(250)
            except smtplib.SMTPDataError as error:
                outcomes.append(error.smtp_code)
            except smtplib.SMTPServerDisconnected:
                outcomes.append("dropped")

    counters = ctl.counters()
    assert set(outcomes) <= {250, 451, "dropped"}
    assert 451 in outcomes
    assert outcomes.count("dropped") <= 3
    assert counters["faults_fired"]["smtp"] == outcomes.count(451) + outcomes.count(
        "dropped"
    )
    assert counters["smtp_messages"] == outcomes.count(250) == len(sb.messages())
