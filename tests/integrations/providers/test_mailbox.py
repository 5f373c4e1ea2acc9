"""The Email box's readers (issue 13): IMAP (Basic, OAuth 2.0 application and
delegated) and Microsoft Graph, against the sandbox over TLS: signing in and each
refusal in words, reading from `since`, then only what is new, a UIDVALIDITY change
and an expired delta link, TLS trust, and Test Connection's "Mailbox readable"; and
the SMTP tool's Sent Items lookup through it (issue 10)."""

import re
import socket
import uuid
from datetime import timedelta

import certifi
import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from integrations.exceptions import (
    AddressRefused,
    IntegrationError,
    PermissionMissing,
    TlsError,
)
from integrations.forms.smtp import SmtpForm
from integrations.models import Integration
from integrations.providers.base import OutgoingEmail
from integrations.providers.mailbox import (
    GraphReader,
    ImapLogin,
    ImapOAuth,
    ImapReader,
    imap_date,
    uid_set,
)
from integrations.providers.microsoft_azure_mail import MicrosoftAzureMailProvider
from integrations.providers.smtp import SmtpProvider
from integrations.services import provider_for
from tests.integrations.smtp_support import (
    authorized_smtp_tool,
    drawer_data,
    register_redirect_uri,
)
from tests.sandbox.m365 import Control, trusted_session

CALLBACK = "http://testserver/integrations/oauth/callback/"
IMAP_SCOPE = "IMAP.AccessAsUser.All"


@pytest.fixture
def http(sandbox):
    with trusted_session(sandbox.ca_path) as session:
        yield session


@pytest.fixture
def ctl(sandbox, http):
    return Control(sandbox, http)


def since():
    return timezone.now() - timedelta(days=1)


def file_message(ctl, mailbox, subject, *, size=0) -> dict:
    """Put a message into `mailbox`'s inbox (the sandbox's control API)."""
    padding = "x" * size
    raw = (
        f"From: Someone <someone@contoso.onmicrosoft.com>\r\n"
        f"To: {mailbox}\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@test.example>\r\n"
        f"Date: Mon, 01 Sep 2025 10:00:00 +0000\r\n"
        f"\r\n"
        f"{subject}\r\n{padding}"
    )
    return ctl("POST", f"mailboxes/{mailbox}/messages", json={"raw": raw})


def subjects(page) -> list[str]:
    return [
        re.search(rb"^Subject: (.*?)\r?$", m.raw, re.M).group(1).decode()
        for m in page.messages
    ]


def smtp_provider(sb, auth_type="oauth_app", **overrides) -> SmtpProvider:
    """The SMTP tool as the drawer would save it, with the Email box on."""
    data = {**drawer_data(sb, auth_type), "email_box": "on", **overrides}
    if auth_type == "basic":
        data.setdefault("imap_username", sb.seed["user"])
        data.setdefault("imap_password", sb.seed["password"])
    form = SmtpForm(data)
    assert form.is_valid(), form.errors
    secret = SmtpProvider.secret_fields
    return SmtpProvider(
        config={k: v for k, v in form.cleaned_data.items() if k not in secret},
        secrets={k: v for k, v in form.cleaned_data.items() if k in secret and v},
    )


def azure_provider(sb, **config) -> MicrosoftAzureMailProvider:
    seed = sb.seed
    return MicrosoftAzureMailProvider(
        config={
            "tenant_id": seed["tenant_id"],
            "client_id": seed["client_id"],
            "sender": seed["sender"],
            "recipients": [seed["recipient"]],
            "cloud": "global",
            "email_box": True,
            **config,
        },
        secrets={"client_secret": seed["client_secret"]},
    )


def check_fails(reader) -> IntegrationError:
    with pytest.raises(IntegrationError) as failure, reader:
        reader.check()
    return failure.value


def test_the_sandbox_is_read_through_the_operators_imap_host(sandbox, settings):
    assert settings.M365_IMAP_HOST == sandbox.imap_host
    assert settings.M365_IMAP_PORT == sandbox.imap_port
    reader = smtp_provider(sandbox).mailbox_reader()
    assert (reader.host, reader.port) == (sandbox.imap_host, sandbox.imap_port)


# --- Basic: LOGIN ---------------------------------------------------------------------


def test_basic_login_opens_the_inbox_and_says_its_size(sandbox, ctl):
    file_message(ctl, sandbox.seed["user"], "One")
    with smtp_provider(sandbox, "basic").mailbox_reader() as reader:
        assert reader.check() == "Inbox: 1 messages"
    assert sandbox.counters()["imap_logins"] >= 1


def test_a_wrong_password_is_mailbox_login_failed(sandbox):
    reader = smtp_provider(sandbox, "basic", imap_password="wrong-pw").mailbox_reader()
    error = check_fails(reader)
    assert error.code == "mailbox_login_failed"
    assert "basic authentication" in str(error.troubleshooting.text)
    assert "wrong-pw" not in str(error) + error.detail


def test_basic_authentication_disabled_for_the_tenant_is_mailbox_login_failed(
    sandbox, ctl
):
    ctl.patch_tenant(basic_auth_disabled=True)
    error = check_fails(smtp_provider(sandbox, "basic").mailbox_reader())
    assert error.code == "mailbox_login_failed"


def test_imap_disabled_for_the_mailbox_is_imap_disabled(sandbox, ctl):
    ctl.patch_user(sandbox.seed["user"], imap_enabled=False)
    error = check_fails(smtp_provider(sandbox, "basic").mailbox_reader())
    assert error.code == "imap_disabled"
    assert "Set-CASMailbox" in str(error.troubleshooting.text)


# --- OAuth 2.0 application: AUTHENTICATE XOAUTH2 ---------------------------------------


def test_application_reads_the_from_mailbox(sandbox, ctl):
    file_message(ctl, sandbox.seed["sender"], "For the app")
    with smtp_provider(sandbox, "oauth_app").mailbox_reader() as reader:
        assert reader.mailbox == sandbox.seed["sender"]
        assert reader.check() == "Inbox: 1 messages"


def test_application_without_imap_access_as_app_is_imap_permission_missing(
    sandbox, ctl
):
    ctl.patch_app(
        sandbox.seed["client_id"],
        application_permissions=["Mail.Send", "SMTP.SendAsApp"],
    )
    error = check_fails(smtp_provider(sandbox, "oauth_app").mailbox_reader())
    assert isinstance(error, PermissionMissing)
    assert error.code == "imap_permission_missing"
    assert "IMAP.AccessAsApp" in " ".join(map(str, error.troubleshooting.steps))


def test_application_without_the_mailbox_permission_is_mailbox_permission_missing(
    sandbox,
):
    # The seeded app's FullAccess covers notifications@ only.
    reader = smtp_provider(
        sandbox, "oauth_app", imap_username=sandbox.seed["user"]
    ).mailbox_reader()
    error = check_fails(reader)
    assert error.code == "mailbox_permission_missing"
    steps = " ".join(map(str, error.troubleshooting.steps))
    assert "New-ServicePrincipal" in steps and "Add-MailboxPermission" in steps
    assert sandbox.counters()["imap_auth_failures"] >= 1


def test_the_server_itself_refuses_a_token_without_the_role(sandbox, ctl):
    """Without the claim check before signing in, Exchange's own refusal is read as
    the missing mailbox permission (its answer is the same for both)."""
    ctl.patch_app(sandbox.seed["client_id"], application_permissions=["Mail.Send"])
    provider = smtp_provider(sandbox, "oauth_app")
    reader = ImapReader(
        host=sandbox.imap_host,
        port=sandbox.imap_port,
        auth=ImapOAuth(user=provider.sender, token=provider.app_token),
    )
    assert check_fails(reader).code == "mailbox_permission_missing"


# --- OAuth 2.0 delegated ----------------------------------------------------------------


@pytest.fixture
def client_admin(django_user_model, sandbox, ctl, settings):
    settings.SITE_URL = "http://testserver"
    register_redirect_uri(ctl, CALLBACK)
    admin = django_user_model.objects.create_superuser(
        "secadmin", "secadmin@contoso.onmicrosoft.com", "irrelevant-pass-1"
    )
    client = Client()
    client.force_login(admin)
    return client


def authorized(sandbox, client_admin, http, **overrides) -> Integration:
    return authorized_smtp_tool(client_admin, http, sandbox, **overrides)


@pytest.mark.django_db
def test_delegated_signs_in_with_the_users_grant_and_passes_the_test(
    sandbox, client_admin, http, ctl
):
    row = authorized(sandbox, client_admin, http, email_box="on")
    file_message(ctl, sandbox.seed["user"], "Delegated")

    with provider_for(row).mailbox_reader() as reader:
        assert reader.check() == "Inbox: 1 messages"

    result = client_admin.post(
        reverse("integrations:test", args=["smtp"]),
        {
            **drawer_data(sandbox, "oauth_delegated"),
            "email_box": "on",
            "client_secret": "",
            "test_email": sandbox.seed["recipient"],
        },
        headers={"X-Requested-With": "fetch"},
    ).content.decode()
    assert "Connection successful" in result, result
    assert "Mailbox readable" in result


@pytest.mark.django_db
def test_delegated_grant_without_the_imap_scope_is_imap_permission_missing(
    sandbox, client_admin, http
):
    row = authorized(sandbox, client_admin, http)  # Email box off: SMTP.Send only
    provider = SmtpProvider(
        config={**row.config, "email_box": True}, secrets=dict(row.secrets)
    )

    error = check_fails(provider.mailbox_reader())
    assert error.code == "imap_permission_missing"

    # And Exchange (the sandbox) refuses that token too.
    reader = ImapReader(
        host=sandbox.imap_host,
        port=sandbox.imap_port,
        auth=ImapOAuth(user=sandbox.seed["user"], token=provider.delegated_token),
    )
    assert check_fails(reader).code == "mailbox_permission_missing"


@pytest.mark.django_db
def test_delegated_api_type_reads_through_graph_me(sandbox, client_admin, http, ctl):
    row = authorized(
        sandbox, client_admin, http, email_box="on", communication_type="api"
    )
    file_message(ctl, sandbox.seed["user"], "Through me")

    with provider_for(row).mailbox_reader() as reader:
        assert isinstance(reader, GraphReader) and reader.user is None
        assert reader.check() == "Inbox readable"
        page = reader.read({}, limit=10, since=since())
    assert subjects(page) == ["Through me"]


# --- the SMTP tool's Sent Items lookup (issue 10) ------------------------------------


def outgoing(sb, tag: str) -> OutgoingEmail:
    return OutgoingEmail(
        to=(sb.seed["recipient"],),
        subject=f"Lookup {tag}",
        text="Body",
        message_id=f"<{tag}.{uuid.uuid4().hex}@notifications.test>",
    )


@pytest.mark.parametrize("auth_type", ["oauth_app", "basic"])
def test_smtp_finds_a_message_it_sent_in_the_sent_items_of_its_email_box(
    sandbox, auth_type
):
    """Exchange files what a mailbox submits by SMTP AUTH in its Sent Items; the
    lookup reads them over the Email box's IMAP, one session for many lookups."""
    overrides = {"sender": sandbox.seed["user"]} if auth_type == "basic" else {}
    provider = smtp_provider(sandbox, auth_type, **overrides)
    sent, unsent = outgoing(sandbox, "sent"), outgoing(sandbox, "unsent")
    with provider.open() as connection:
        connection.send(sent)
        assert connection.already_sent(sent) is True
        assert connection.already_sent(unsent) is False
        assert connection.already_sent(sent) is True
    assert sandbox.counters()["imap_logins"] == 1


def test_a_lookup_session_the_server_dropped_is_opened_again_once(sandbox):
    provider = smtp_provider(sandbox, "oauth_app")
    sent = outgoing(sandbox, "dropped")
    with provider.open() as connection:
        connection.send(sent)
        assert connection.already_sent(sent) is True
        sandbox.add_fault(target="imap", imap_stage="select", drop=True, count=1)
        assert connection.already_sent(sent) is True
    assert sandbox.counters()["imap_logins"] == 2


def test_without_an_email_box_smtp_cannot_tell(sandbox):
    provider = smtp_provider(sandbox, "oauth_app", email_box="")
    sent = outgoing(sandbox, "no-box")
    with provider.open() as connection:
        connection.send(sent)
        assert connection.already_sent(sent) is None
    assert sandbox.counters()["imap_logins"] == 0


def test_a_failed_lookup_cannot_tell_and_says_why_without_the_secret(
    sandbox, ctl, caplog
):
    """The lookup is a courtesy: when the Email box cannot be read the message is
    sent again (and marked), not held back."""
    provider = smtp_provider(sandbox, "basic", imap_password="Wrong-Passw0rd!")
    sent = outgoing(sandbox, "refused")
    with provider.open() as connection:
        connection.send(sent)
        assert connection.already_sent(sent) is None
    (record,) = [r for r in caplog.records if "Sent Items lookup" in r.getMessage()]
    assert "mailbox_login_failed" in record.getMessage()
    assert "Wrong-Passw0rd!" not in caplog.text
    assert sandbox.seed["password"] not in caplog.text


def test_a_message_id_imap_cannot_quote_is_not_looked_up(sandbox):
    with smtp_provider(sandbox, "oauth_app").mailbox_reader() as reader:
        assert reader.holds_sent('<a"b@notifications.test>') is None
        assert reader.holds_sent("no-brackets@notifications.test") is None
        assert reader.holds_sent("<a@b>\r\nA1 LOGOUT\r\n<c@d>") is None
        assert reader.holds_sent("<a b@notifications.test>") is None
        assert reader.holds_sent("") is None
    assert sandbox.counters()["imap_logins"] == 0


def test_a_server_without_a_sent_items_folder_cannot_tell(sandbox, monkeypatch):
    from integrations.providers import mailbox

    monkeypatch.setattr(mailbox, "SENT_ITEMS", "Sent Messages")
    with smtp_provider(sandbox, "oauth_app").mailbox_reader() as reader:
        assert reader.holds_sent(outgoing(sandbox, "x").message_id) is None


@pytest.mark.django_db
def test_delegated_api_type_looks_in_sent_items_through_graph_me(
    sandbox, client_admin, http, ctl
):
    row = authorized(
        sandbox, client_admin, http, email_box="on", communication_type="api"
    )
    sent, unsent = outgoing(sandbox, "me"), outgoing(sandbox, "me-unsent")
    with provider_for(row).open() as connection:
        connection.send(sent)
        assert connection.already_sent(sent) is True
        assert connection.already_sent(unsent) is False


# --- Microsoft Graph (Microsoft Azure Mail) ----------------------------------------------


def test_graph_with_mail_read_reads_the_inbox(sandbox, ctl):
    ctl.grant("Mail.Read")
    file_message(ctl, sandbox.seed["sender"], "Graph one")
    with azure_provider(sandbox).mailbox_reader() as reader:
        assert reader.check() == "Inbox readable"
    assert sandbox.counters()["graph_get_mime"] >= 1


def test_graph_without_mail_read_is_mail_read_missing(sandbox):
    error = check_fails(azure_provider(sandbox).mailbox_reader())
    assert error.code == "mail_read_missing"
    assert "Mail.Read" in str(error.troubleshooting.text)


def test_graph_with_mail_read_basic_only_is_mail_read_missing(sandbox, ctl):
    ctl.grant("Mail.ReadBasic.All")
    assert check_fails(azure_provider(sandbox).mailbox_reader()).code == (
        "mail_read_missing"
    )


def test_graph_refusing_to_read_is_mail_read_missing_without_the_claim_check(
    sandbox, ctl
):
    """Graph's own 403 ErrorAccessDenied on reading says the same."""
    ctl.grant("Mail.ReadBasic.All")
    file_message(ctl, sandbox.seed["sender"], "Listed, not readable")
    provider = azure_provider(sandbox)
    reader = GraphReader(
        graph_host=provider.endpoints.graph_host,
        mailbox=provider.sender,
        token=provider.access_token,
    )
    assert check_fails(reader).code == "mail_read_missing"


def test_graph_reads_from_since_then_only_new_messages(sandbox, ctl):
    ctl.grant("Mail.Read")
    mailbox = sandbox.seed["sender"]
    for subject in ("A", "B", "C"):
        file_message(ctl, mailbox, subject)

    with azure_provider(sandbox).mailbox_reader() as reader:
        first = reader.read({}, limit=2, since=since())
        assert (subjects(first), first.more, first.reset) == (["A", "B"], True, False)
        rest = reader.read(first.cursor, limit=2, since=since())
        assert subjects(rest) == ["C"] and not rest.more
        assert set(rest.cursor) == {"delta_link"}
        assert all(m.ref.startswith("graph:") for m in first.messages + rest.messages)

        again = reader.read(rest.cursor, limit=10, since=since())
        assert again.messages == () and not again.more

        file_message(ctl, mailbox, "D")
        new = reader.read(again.cursor, limit=10, since=since())
        assert subjects(new) == ["D"]
    assert sandbox.counters()["graph_delta"] >= 4
    # Nothing was deleted.
    assert len(ctl("GET", f"mailboxes/{mailbox}/messages")["messages"]) == 4


def test_graph_expired_delta_link_starts_again_from_since(sandbox, ctl):
    ctl.grant("Mail.Read")
    file_message(ctl, sandbox.seed["sender"], "Kept")
    with azure_provider(sandbox).mailbox_reader() as reader:
        page = reader.read({}, limit=10, since=since())
        link = re.sub(r"(deltatoken=)[^&]+", r"\1garbled", page.cursor["delta_link"])
        assert link != page.cursor["delta_link"]

        again = reader.read({"delta_link": link}, limit=10, since=since())
    assert again.reset
    assert subjects(again) == ["Kept"]
    assert "delta_link" in again.cursor


def test_graph_never_follows_a_link_to_another_host(sandbox, ctl):
    ctl.grant("Mail.Read")
    file_message(ctl, sandbox.seed["sender"], "Here")
    with azure_provider(sandbox).mailbox_reader() as reader:
        page = reader.read(
            {"delta_link": "https://elsewhere.example/v1.0/delta?$deltatoken=x"},
            limit=10,
            since=since(),
        )
    assert page.reset and subjects(page) == ["Here"]


def test_graph_skips_a_message_over_the_size_limit(sandbox, ctl, settings):
    ctl.grant("Mail.Read")
    settings.MAILBOX_MAX_MESSAGE_BYTES = 2000
    file_message(ctl, sandbox.seed["sender"], "Big", size=5000)
    file_message(ctl, sandbox.seed["sender"], "Small")
    with azure_provider(sandbox).mailbox_reader() as reader:
        page = reader.read({}, limit=10, since=since())
    big, small = page.messages
    assert big.raw == b"" and big.ref.startswith("graph:")
    assert b"Subject: Small" in small.raw


# --- reading over IMAP -------------------------------------------------------------------


def test_imap_reads_from_since_then_only_new_messages(sandbox, ctl):
    mailbox = sandbox.seed["sender"]
    for subject in ("One", "Two", "Three"):
        file_message(ctl, mailbox, subject)

    with smtp_provider(sandbox, "oauth_app").mailbox_reader() as reader:
        first = reader.read({}, limit=2, since=since())
        assert (subjects(first), first.more, first.reset) == (
            ["One", "Two"],
            True,
            False,
        )
        assert set(first.cursor) == {"uidvalidity", "last_uid"}
        rest = reader.read(first.cursor, limit=2, since=since())
        assert subjects(rest) == ["Three"] and not rest.more

        # "last+1:*" names the last message again: it is not read twice.
        again = reader.read(rest.cursor, limit=10, since=since())
        assert again.messages == () and again.cursor == rest.cursor

        file_message(ctl, mailbox, "Four")
        new = reader.read(again.cursor, limit=10, since=since())
        assert subjects(new) == ["Four"]
        uidvalidity = first.cursor["uidvalidity"]
        assert new.messages[0].ref == f"imap:{uidvalidity}:{new.cursor['last_uid']}"
    assert sandbox.counters()["imap_fetches"] >= 1
    assert len(ctl("GET", f"mailboxes/{mailbox}/messages")["messages"]) == 4


def test_imap_first_read_of_an_old_inbox_starts_after_it(sandbox, ctl):
    file_message(ctl, sandbox.seed["sender"], "Old")
    with smtp_provider(sandbox, "oauth_app").mailbox_reader() as reader:
        page = reader.read({}, limit=10, since=timezone.now() + timedelta(days=2))
        assert page.messages == ()
        file_message(ctl, sandbox.seed["sender"], "New")
        assert subjects(reader.read(page.cursor, limit=10, since=since())) == ["New"]


def test_imap_uidvalidity_change_starts_again_from_since(sandbox, ctl):
    mailbox = sandbox.seed["sender"]
    file_message(ctl, mailbox, "Before")
    with smtp_provider(sandbox, "oauth_app").mailbox_reader() as reader:
        page = reader.read({}, limit=10, since=since())
    renumbered = ctl("POST", f"mailboxes/{mailbox}/uidvalidity")
    assert renumbered["uidvalidity"] != page.cursor["uidvalidity"]

    with smtp_provider(sandbox, "oauth_app").mailbox_reader() as reader:
        again = reader.read(page.cursor, limit=10, since=since())

    assert again.reset
    assert subjects(again) == ["Before"]
    assert again.cursor["uidvalidity"] == renumbered["uidvalidity"]
    assert again.messages[0].ref.startswith(f"imap:{renumbered['uidvalidity']}:")


def test_imap_skips_a_message_over_the_size_limit(sandbox, ctl, settings):
    settings.MAILBOX_MAX_MESSAGE_BYTES = 2000
    file_message(ctl, sandbox.seed["sender"], "Big", size=5000)
    file_message(ctl, sandbox.seed["sender"], "Small")
    with smtp_provider(sandbox, "oauth_app").mailbox_reader() as reader:
        page = reader.read({}, limit=10, since=since())
    big, small = page.messages
    assert big.raw == b"" and big.ref.startswith("imap:")
    assert b"Subject: Small" in small.raw


def test_imap_reads_an_ndr_with_its_bytes_unchanged(sandbox, ctl):
    """An Exchange-style report the sandbox files (for the bounce parser)."""
    sent = file_message(ctl, sandbox.seed["sender"], "Original")
    ctl(
        "POST",
        f"mailboxes/{sandbox.seed['sender']}/messages",
        json={
            "kind": "ndr",
            "original_message_id": f"<{uuid.uuid4().hex}@test.example>",
            "recipient": "ghost@contoso.onmicrosoft.com",
        },
    )
    with smtp_provider(sandbox, "oauth_app").mailbox_reader() as reader:
        page = reader.read({}, limit=10, since=since())
    assert sent["uid"]
    report = page.messages[-1].raw
    assert b"multipart/report" in report and b"5.1.10" in report


# --- TLS and the network --------------------------------------------------------------------


def test_an_untrusted_certificate_is_a_tls_error(sandbox, settings):
    settings.M365_CA_BUNDLE = certifi.where()  # does not hold the sandbox's CA
    error = check_fails(smtp_provider(sandbox, "basic").mailbox_reader())
    assert isinstance(error, TlsError)
    assert error.code == "tls_error"


def test_the_sandbox_ca_is_trusted_whatever_requests_ca_bundle_says(
    sandbox, ctl, monkeypatch, tmp_path
):
    other = tmp_path / "other-ca.pem"
    other.write_bytes(open(certifi.where(), "rb").read())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))
    monkeypatch.setenv("SSL_CERT_FILE", str(other))
    ctl.grant("Mail.Read")
    file_message(ctl, sandbox.seed["sender"], "Trusted")

    with smtp_provider(sandbox, "oauth_app").mailbox_reader() as reader:
        assert reader.check() == "Inbox: 1 messages"
    with azure_provider(sandbox).mailbox_reader() as reader:
        assert subjects(reader.read({}, limit=5, since=since())) == ["Trusted"]


def test_a_port_outside_the_imap_ports_is_refused_before_connecting(settings):
    settings.IMAP_ALLOWED_PORTS_EXTRA = []
    settings.M365_IMAP_PORT = 0
    reader = ImapReader(host="imap.example.org", port=25, auth=ImapLogin("a", "b"))
    error = check_fails(reader)
    assert isinstance(error, AddressRefused)
    assert error.code == "imap_port_not_allowed"
    assert "imap.example.org:25" in error.troubleshooting.text


def test_a_private_address_is_refused_unless_allowed(settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
    settings.OUTBOUND_ALLOWED_HOSTS = []
    settings.M365_IMAP_HOST = ""
    reader = ImapReader(host="10.9.8.7", port=993, auth=ImapLogin("a", "b"))
    assert check_fails(reader).code == "address_private"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_closed_port_of_a_typed_address_is_no_imap_answer(settings):
    port = closed_port()
    settings.M365_IMAP_HOST = ""
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.IMAP_ALLOWED_PORTS_EXTRA = [port]
    reader = ImapReader(host="127.0.0.1", port=port, auth=ImapLogin("a", "b"))
    error = check_fails(reader)
    assert error.code == "imap_no_answer"
    assert f"127.0.0.1:{port}" in error.troubleshooting.text


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_a_peer_that_is_not_an_imap_server_is_no_imap_answer(
    sandbox, settings, security
):
    # "localhost" is an admin's name here (the sandbox's hosts are 127.0.0.1).
    settings.OUTBOUND_ALLOWED_HOSTS = ["localhost"]
    settings.IMAP_ALLOWED_PORTS_EXTRA = [sandbox.smtp_port]
    reader = ImapReader(
        host="localhost",
        port=sandbox.smtp_port,  # an SMTP server
        auth=ImapLogin("a", "b"),
        security=security,
        timeout=5,
    )
    assert check_fails(reader).code == "imap_no_answer"


def test_the_operators_host_keeps_the_precise_code(settings):
    port = closed_port()
    settings.M365_IMAP_HOST = "127.0.0.1"
    settings.M365_IMAP_PORT = port
    reader = ImapReader(host="127.0.0.1", port=port, auth=ImapLogin("a", "b"))
    assert check_fails(reader).code == "connection_refused"


# --- Test Connection through the view ----------------------------------------------------


@pytest.mark.django_db
def test_test_connection_shows_mailbox_readable_passing(sandbox, admin_client):
    data = {
        **drawer_data(sandbox, "oauth_app", test_email=sandbox.seed["recipient"]),
        "email_box": "on",
    }
    result = admin_client.post(
        reverse("integrations:test", args=["smtp"]),
        data,
        headers={"X-Requested-With": "fetch"},
    ).content.decode()
    assert "Connection successful" in result, result
    assert re.search(r"Mailbox readable — <span class=\"step-status\">passed", result)


@pytest.mark.django_db
def test_test_connection_names_the_mailbox_step_and_its_fix(sandbox, admin_client):
    sentinel = "SENTINEL-imap-pw-never-shown"
    data = {
        **drawer_data(sandbox, "basic", test_email=sandbox.seed["recipient"]),
        "email_box": "on",
        "imap_username": sandbox.seed["user"],
        "imap_password": sentinel,
    }
    result = admin_client.post(
        reverse("integrations:test", args=["smtp"]),
        data,
        headers={"X-Requested-With": "fetch"},
    ).content.decode()
    assert "Connection failed at step Mailbox readable" in result, result
    assert "The Email box could not sign in" in result
    assert sentinel not in result
    assert "login: LOGIN failed" not in result  # the error's detail: the log only


@pytest.mark.django_db
def test_test_connection_of_microsoft_azure_mail_reads_through_graph(
    sandbox, admin_client, graph_values, ctl
):
    data = {**graph_values, "email_box": "on"}
    failing = admin_client.post(
        reverse("integrations:test", args=["microsoft_azure_mail"]),
        data,
        headers={"X-Requested-With": "fetch"},
    ).content.decode()
    assert "Connection failed at step Mailbox readable" in failing, failing
    assert "The app may not read this mailbox" in failing

    ctl.grant("Mail.Read")
    from integrations.providers import identity

    identity.forget_apps()  # a new token, with the role
    passing = admin_client.post(
        reverse("integrations:test", args=["microsoft_azure_mail"]),
        data,
        headers={"X-Requested-With": "fetch"},
    ).content.decode()
    assert "Connection successful" in passing, passing
    assert "Mailbox readable" in passing


# --- small pieces ---------------------------------------------------------------------------


def test_uid_sets_and_dates_are_written_as_imap_wants():
    assert uid_set([7, 1, 2, 3, 9, 10]) == "1:3,7,9:10"
    assert uid_set([5]) == "5"
    from datetime import UTC, datetime

    assert imap_date(datetime(2025, 2, 1, 23, 30, tzinfo=UTC)) == "1-Feb-2025"
