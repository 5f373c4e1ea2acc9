"""Exchange Online IMAP with imaplib over TLS: sign-in rules, the inbox, NDRs."""

import contextlib
import email
import email.policy
import imaplib
import re
import ssl
import threading
import time

import pytest

from sandbox import Sandbox
from tests.sandbox.m365 import (
    GRAPH_MAIL_SEND,
    OUTLOOK_DEFAULT,
    SMTP_SEND,
    app_token,
    delegated_token,
    jwt_claims,
    mail,
    mime_message,
    send_mail,
    smtp_login_xoauth2,
    smtp_session,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:response_mode='form_post' is recommended:UserWarning"
)

IMAP_ACCESS = "https://outlook.office.com/IMAP.AccessAsUser.All"
GHOST = "ghost@contoso.onmicrosoft.com"


@contextlib.contextmanager
def imap(sb):
    """An imaplib session over implicit TLS, trusting only the sandbox CA."""
    context = ssl.create_default_context(cafile=str(sb.ca_path))
    client = imaplib.IMAP4_SSL(sb.imap_host, sb.imap_port, ssl_context=context)
    try:
        yield client
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()


def xoauth2(user, token):
    blob = f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
    return lambda _challenge: blob


def refused(call) -> str:
    with pytest.raises(imaplib.IMAP4.error) as error:
        call()
    text = error.value.args[0]
    return text.decode() if isinstance(text, bytes) else str(text).strip("b'")


def smtp_send(sb, http, seed, to, subject, **kwargs):
    token = app_token(sb, http, OUTLOOK_DEFAULT)
    with smtp_session(sb) as client:
        smtp_login_xoauth2(client, seed["sender"], token)
        message = mime_message(seed["sender"], to, subject=subject, **kwargs)
        client.send_message(message, from_addr=seed["sender"], to_addrs=to)
    return message


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def fetch_all(client):
    """{uid: raw bytes} of every message of the selected mailbox."""
    typ, data = client.uid("SEARCH", None, "ALL")
    assert typ == "OK"
    uids = data[0].split()
    if not uids:
        return {}
    typ, data = client.uid("FETCH", b",".join(uids).decode(), "(UID BODY.PEEK[])")
    assert typ == "OK", data
    found = {}
    for entry in data:
        if isinstance(entry, tuple):
            uid = int(re.search(rb"UID (\d+)", entry[0]).group(1))
            found[uid] = entry[1]
    return found


# --- sign-in ----------------------------------------------------------------------


def test_greeting_advertises_imap4rev1_and_both_mechanisms(sb):
    with imap(sb) as client:
        assert b"Microsoft Exchange IMAP4" in client.welcome
        assert {"IMAP4REV1", "AUTH=XOAUTH2", "AUTH=PLAIN"} <= set(client.capabilities)


def test_certificate_is_checked_against_the_sandbox_ca(sb):
    with pytest.raises(ssl.SSLCertVerificationError):
        imaplib.IMAP4_SSL(
            sb.imap_host, sb.imap_port, ssl_context=ssl.create_default_context()
        )


def test_login_with_the_users_password_opens_the_inbox(sb, seed):
    with imap(sb) as client:
        typ, data = client.login(seed["user"], seed["password"])
        assert (typ, data) == ("OK", [b"LOGIN completed."])
        typ, data = client.select("INBOX")
        assert (typ, data) == ("OK", [b"0"])
        assert client.untagged_responses.get("UIDVALIDITY")
    assert sb.counters()["imap_logins"] == 1


def test_wrong_password_is_login_failed(sb, seed):
    with imap(sb) as client:
        message = refused(lambda: client.login(seed["user"], "wrong"))
    assert message == "LOGIN failed."
    assert sb.counters()["imap_auth_failures"] == 1


def test_unknown_user_is_login_failed(sb, seed):
    with imap(sb) as client:
        message = refused(lambda: client.login(GHOST, seed["password"]))
    assert message == "LOGIN failed."


def test_basic_auth_disabled_refuses_login_too(sb, ctl, seed):
    ctl.patch_tenant(basic_auth_disabled=True)
    with imap(sb) as client:
        message = refused(lambda: client.login(seed["user"], seed["password"]))
    assert message == "LOGIN failed."


def test_app_token_with_imap_access_as_app_and_mailbox_permission(sb, http, seed):
    token = app_token(sb, http, OUTLOOK_DEFAULT)
    assert "IMAP.AccessAsApp" in jwt_claims(token)["roles"]
    with imap(sb) as client:
        typ, data = client.authenticate("XOAUTH2", xoauth2(seed["sender"], token))
        assert (typ, data) == ("OK", [b"AUTHENTICATE completed."])
        assert client.select("INBOX", readonly=True)[0] == "OK"


def test_app_token_without_imap_access_as_app_is_refused(sb, http, ctl, seed):
    ctl.patch_app(
        seed["client_id"], application_permissions=["Mail.Send", "SMTP.SendAsApp"]
    )
    token = app_token(sb, http, OUTLOOK_DEFAULT)
    with imap(sb) as client:
        message = refused(
            lambda: client.authenticate("XOAUTH2", xoauth2(seed["sender"], token))
        )
    assert message == "AUTHENTICATE failed."


def test_app_token_without_mailbox_permission_is_refused(sb, http, seed):
    token = app_token(sb, http, OUTLOOK_DEFAULT)  # FullAccess on notifications@ only
    with imap(sb) as client:
        message = refused(
            lambda: client.authenticate("XOAUTH2", xoauth2(seed["user"], token))
        )
    assert message == "AUTHENTICATE failed."


def test_graph_audience_or_garbage_token_is_refused(sb, http, seed):
    graph = app_token(sb, http)
    for token in (graph, "not-a-token"):
        with imap(sb) as client:
            message = refused(
                lambda t=token, c=client: c.authenticate(
                    "XOAUTH2", xoauth2(seed["sender"], t)
                )
            )
        assert message == "AUTHENTICATE failed."


def test_delegated_token_with_imap_access_as_user_opens_own_mailbox(sb, http, seed):
    token = delegated_token(sb, http, [IMAP_ACCESS])
    with imap(sb) as client:
        typ, _ = client.authenticate("XOAUTH2", xoauth2(seed["user"], token))
        assert typ == "OK"
    with imap(sb) as client:
        message = refused(
            lambda: client.authenticate("XOAUTH2", xoauth2(seed["sender"], token))
        )
    assert message == "AUTHENTICATE failed."


def test_imap_and_smtp_scopes_in_one_request_are_both_in_scp(sb, http, seed):
    token = delegated_token(sb, http, [IMAP_ACCESS, SMTP_SEND])
    claims = jwt_claims(token)
    assert claims["aud"] == "https://outlook.office365.com"
    assert set(claims["scp"].split()) >= {"IMAP.AccessAsUser.All", "SMTP.Send"}


def test_delegated_token_without_imap_scope_is_refused(sb, http, seed):
    token = delegated_token(sb, http, [SMTP_SEND])
    with imap(sb) as client:
        message = refused(
            lambda: client.authenticate("XOAUTH2", xoauth2(seed["user"], token))
        )
    assert message == "AUTHENTICATE failed."


def test_xoauth2_as_an_initial_response_is_accepted(sb, http, seed):
    import base64

    token = app_token(sb, http, OUTLOOK_DEFAULT)
    blob = base64.b64encode(
        f"user={seed['sender']}\x01auth=Bearer {token}\x01\x01".encode()
    ).decode()
    with imap(sb) as client:
        typ, data = client._simple_command("AUTHENTICATE", "XOAUTH2", blob)
        assert typ == "OK", data


def test_imap_disabled_for_the_mailbox_is_not_connected(sb, ctl, seed):
    ctl.patch_user(seed["user"], imap_enabled=False)
    with imap(sb) as client:
        message = refused(lambda: client.login(seed["user"], seed["password"]))
    assert message == "User is authenticated but not connected."


def test_injected_auth_fault_answers_its_reply(sb, ctl, seed):
    ctl.add_fault(target="imap", imap_stage="auth", imap_reply="NO [UNAVAILABLE] Busy")
    with imap(sb) as client:
        message = refused(lambda: client.login(seed["user"], seed["password"]))
        assert message == "[UNAVAILABLE] Busy"
        assert client.login(seed["user"], seed["password"])[0] == "OK"


# --- the inbox --------------------------------------------------------------------


def test_smtp_message_to_a_mailbox_user_is_fetched_byte_for_byte(sb, http, seed):
    sent = smtp_send(sb, http, seed, [seed["user"]], "To Alex over SMTP")
    (item,) = wait_for(lambda: sb.inbox(seed["user"]))
    assert item["uid"] == 1
    assert item["internet_message_id"].strip("<>") == sent["Message-ID"].strip("<>")

    with imap(sb) as client:
        client.login(seed["user"], seed["password"])
        typ, data = client.select("INBOX")
        assert data == [b"1"]
        fetched = fetch_all(client)
    assert fetched == {1: item["raw"]}
    parsed = email.message_from_bytes(item["raw"], policy=email.policy.default)
    assert parsed["Subject"] == "To Alex over SMTP"
    assert sb.counters()["imap_fetches"] == 1


def test_graph_message_is_filed_as_mime_with_its_headers(sb, http, seed):
    token = app_token(sb, http)
    body = mail(
        "Graph to Alex",
        to=[seed["user"]],
        content="<p>Hello <b>Alex</b></p>",
        content_type="HTML",
        internetMessageId="<graph-1@tests.local>",
        internetMessageHeaders=[{"name": "X-Project", "value": "apollo"}],
    )
    assert send_mail(sb, http, token, seed["sender"], body).status_code == 202

    with imap(sb) as client:
        client.login(seed["user"], seed["password"])
        client.select("INBOX", readonly=True)
        (raw,) = fetch_all(client).values()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Message-ID"] == "<graph-1@tests.local>"
    assert parsed["From"] == seed["sender"]
    assert parsed["To"] == seed["user"]
    assert parsed["Subject"] == "Graph to Alex"
    assert parsed["X-Project"] == "apollo"
    assert parsed["Date"]
    assert parsed.get_content_type() == "text/html"
    assert "<b>Alex</b>" in parsed.get_content()


def test_messages_listing_is_unchanged_by_inboxes(sb, http, seed):
    smtp_send(sb, http, seed, [seed["user"], GHOST, "x@example.com"], "Three")

    recipients = sorted(m["recipient"] for m in sb.messages(subject="Three"))
    assert recipients == sorted([seed["user"], GHOST, "x@example.com"])
    assert len(sb.inbox(seed["user"])) == 1
    assert sb.inbox("x@example.com") == []


def test_uid_search_by_uid_range_and_since(sb, ctl, seed):
    for n in range(3):
        ctl(
            "POST",
            f"mailboxes/{seed['user']}/messages",
            json={"raw": f"Subject: m{n}\r\nMessage-ID: <m{n}@t>\r\n\r\nBody {n}\r\n"},
        )
    with imap(sb) as client:
        client.login(seed["user"], seed["password"])
        client.select("INBOX")
        assert client.uid("SEARCH", None, "UID", "2:*") == ("OK", [b"2 3"])
        assert client.uid("SEARCH", None, "SINCE", "01-Jan-2020") == (
            "OK",
            [b"1 2 3"],
        )
        assert client.uid("SEARCH", None, "SINCE", "01-Jan-2999") == ("OK", [b""])
        typ, data = client.uid("FETCH", "2", "(UID FLAGS INTERNALDATE RFC822.SIZE)")
        assert typ == "OK"
        assert b"UID 2" in data[0] and b"RFC822.SIZE" in data[0]
        typ, data = client.uid("FETCH", "3", "(RFC822)")
        assert data[0][1].startswith(b"Subject: m2")


def test_status_reports_messages_uidnext_and_uidvalidity(sb, ctl, seed):
    ctl("POST", f"mailboxes/{seed['user']}/messages", json={"raw": "Subject: s\n\nx"})
    with imap(sb) as client:
        client.login(seed["user"], seed["password"])
        typ, data = client.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY)")
    assert typ == "OK"
    assert b"MESSAGES 1" in data[0] and b"UIDNEXT 2" in data[0]


def test_noop_shows_a_message_that_arrived_meanwhile(sb, ctl, seed):
    with imap(sb) as client:
        client.login(seed["user"], seed["password"])
        client.select("INBOX")
        ctl(
            "POST", f"mailboxes/{seed['user']}/messages", json={"raw": "Subject: n\n\n"}
        )
        client.noop()
        assert client.untagged_responses.get("EXISTS")[-1] == b"1"


def test_uidvalidity_change_renumbers_the_uids(sb, ctl, seed):
    for n in range(2):
        ctl(
            "POST",
            f"mailboxes/{seed['user']}/messages",
            json={"raw": f"Subject: {n}\n\n"},
        )
    with imap(sb) as client:
        client.login(seed["user"], seed["password"])
        client.select("INBOX")
        before = int(client.untagged_responses["UIDVALIDITY"][0])

    changed = ctl("POST", f"mailboxes/{seed['user']}/uidvalidity")

    assert changed["uidvalidity"] != before
    assert changed["uidnext"] == 3
    with imap(sb) as client:
        client.login(seed["user"], seed["password"])
        client.select("INBOX")
        assert (
            int(client.untagged_responses["UIDVALIDITY"][0]) == changed["uidvalidity"]
        )
        assert sorted(fetch_all(client)) == [1, 2]


# --- Sent Items ---------------------------------------------------------------------


def sign_in_as_sender(sb, http, client, seed):
    """The seeded app signs in to the sender's mailbox (IMAP.AccessAsApp)."""
    token = app_token(sb, http, OUTLOOK_DEFAULT)
    client.authenticate("XOAUTH2", xoauth2(seed["sender"], token))


def test_smtp_submission_is_filed_in_the_senders_sent_items(sb, http, ctl, seed):
    """Exchange Online keeps a copy of what a mailbox submits by SMTP AUTH in its
    Sent Items, found over IMAP by the Message-ID header and fetched whole."""
    sent = smtp_send(sb, http, seed, ["x@example.com"], "Filed copy")
    other = smtp_send(sb, http, seed, ["x@example.com"], "Another")
    with imap(sb) as client:
        sign_in_as_sender(sb, http, client, seed)
        typ, data = client.select('"Sent Items"', readonly=True)
        assert (typ, data) == ("OK", [b"2"])
        found = client.uid("SEARCH", None, "HEADER", "Message-ID", sent["Message-ID"])
        assert found == ("OK", [b"1"])
        assert client.uid(
            "SEARCH", None, "HEADER", "Message-ID", "<nowhere@example.com>"
        ) == ("OK", [b""])
        fetched = fetch_all(client)
        typ, listing = client.list()
    copies = {
        uid: email.message_from_bytes(raw, policy=email.policy.default)
        for uid, raw in fetched.items()
    }
    assert copies[1]["Message-ID"] == sent["Message-ID"]
    assert copies[1]["Subject"] == "Filed copy"
    assert copies[2]["Message-ID"] == other["Message-ID"]
    assert any(b'"Sent Items"' in line for line in listing)
    # The inbox holds none of them, and the control API lists the copies.
    assert sb.inbox(seed["sender"]) == []
    assert [i["message_id"] for i in sb.sent_items(seed["sender"])] == [
        sent["Message-ID"],
        other["Message-ID"],
    ]


def test_graph_send_mail_copy_is_in_sent_items_over_imap(sb, http, seed):
    token = app_token(sb, http)
    body = mail(
        "Over Graph",
        to=["x@example.com"],
        internetMessageId="<g-7@t>",
        saveToSentItems=True,
    )
    assert send_mail(sb, http, token, seed["sender"], body).status_code == 202
    with imap(sb) as client:
        sign_in_as_sender(sb, http, client, seed)
        client.select('"sent items"', readonly=True)
        assert client.uid("SEARCH", None, "HEADER", "MESSAGE-ID", "<g-7@t>") == (
            "OK",
            [b"1"],
        )
        (raw,) = fetch_all(client).values()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Message-ID"] == "<g-7@t>"
    assert parsed["Subject"] == "Over Graph"


def test_a_sent_items_copy_shows_over_imap_once_filed(sb, http, ctl, seed):
    """Exchange files the copy a moment after accepting the message."""
    ctl.patch_tenant(sent_items_delay=60)
    sent = smtp_send(sb, http, seed, ["x@example.com"], "Later")
    with imap(sb) as client:
        sign_in_as_sender(sb, http, client, seed)
        assert client.select('"Sent Items"', readonly=True)[1] == [b"0"]
        ctl("POST", "clock", json={"advance_seconds": 61})
        assert client.select('"Sent Items"', readonly=True)[1] == [b"1"]
        assert client.uid(
            "SEARCH", None, "HEADER", "Message-ID", sent["Message-ID"]
        ) == ("OK", [b"1"])


def test_only_the_inbox_and_sent_items_can_be_selected(sb, http, seed):
    with imap(sb) as client:
        sign_in_as_sender(sb, http, client, seed)
        typ, data = client.select('"Deleted Items"', readonly=True)
        assert typ == "NO"
        (listed,) = client.list('""', "Sent*")[1]
        assert listed.endswith(b' "/" "Sent Items"')


# --- non-delivery reports ----------------------------------------------------------


def report_parts(raw):
    report = email.message_from_bytes(raw, policy=email.policy.default)
    return report, [part.get_content_type() for part in report.iter_parts()]


def test_unknown_recipient_of_a_sandbox_domain_bounces_to_the_sender(sb, http, seed):
    sent = smtp_send(sb, http, seed, [GHOST], "Alert for a ghost")

    (ndr,) = wait_for(lambda: sb.inbox(seed["sender"]))
    assert ndr["subject"] == "Undeliverable: Alert for a ghost"
    report, parts = report_parts(ndr["raw"])
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert parts == [
        "multipart/alternative",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    assert report["From"].startswith("Microsoft Outlook <MicrosoftExchange329e71ec")
    assert report["From"].endswith("@contoso.onmicrosoft.com>")
    assert report["To"].addresses[0].addr_spec == seed["sender"]
    assert report["In-Reply-To"] == sent["Message-ID"]
    assert report["References"] == sent["Message-ID"]
    assert report["Message-ID"].endswith("@SANDBOX.prod.outlook.com>")
    assert "X-MS-Exchange-Message-Is-Ndr" in report
    assert report["Auto-Submitted"] == "auto-replied"
    assert report["Content-Language"] == "en-US"

    human, status, headers = report.iter_parts()
    text = human.get_body(preferencelist=("plain",)).get_content()
    assert f"Your message to {GHOST} couldn't be delivered." in text
    assert "550 5.1.10 RESOLVER.ADR.RecipientNotFound" in text
    per_message, per_recipient = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns;SANDBOX.prod.outlook.com"
    assert per_message["Arrival-Date"]
    assert per_recipient["Final-Recipient"] == f"rfc822;{GHOST}"
    assert per_recipient["Original-Recipient"] == f"rfc822;{GHOST}"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.10"
    assert per_recipient["Diagnostic-Code"].startswith("smtp;550 5.1.10")
    assert sent["Message-ID"] in headers.get_content()
    # The message itself is still stored for the ghost, as before.
    assert [m["recipient"] for m in sb.messages(subject="Alert for a ghost")] == [GHOST]


def test_graph_message_to_unknown_recipient_bounces_too(sb, http, seed):
    token = app_token(sb, http)
    body = mail("Graph ghost", to=[GHOST], internetMessageId="<gg@tests.local>")
    assert send_mail(sb, http, token, seed["sender"], body).status_code == 202

    (ndr,) = sb.inbox(seed["sender"])
    report, _ = report_parts(ndr["raw"])
    assert report["In-Reply-To"] == "<gg@tests.local>"


def test_mailbox_less_user_bounces_and_outside_domains_do_not(sb, http, ctl, seed):
    ctl.add_user("nobox@contoso.onmicrosoft.com", has_mailbox=False)
    smtp_send(sb, http, seed, ["nobox@contoso.onmicrosoft.com", "a@example.com"], "x")

    (ndr,) = sb.inbox(seed["sender"])
    assert "nobox@contoso.onmicrosoft.com" in ndr["raw"].decode()


def test_ndr_can_be_switched_off_per_tenant(sb, http, ctl, seed):
    ctl.patch_tenant(ndr_for_unknown_recipients=False)
    smtp_send(sb, http, seed, [GHOST], "No NDR")
    assert sb.inbox(seed["sender"]) == []


def test_delegated_graph_send_bounces_to_the_signed_in_user(sb, http, seed):
    token = delegated_token(sb, http, [GRAPH_MAIL_SEND])
    assert send_mail(sb, http, token, None, mail("Me", to=[GHOST])).status_code == 202
    (ndr,) = sb.inbox(seed["user"])
    assert ndr["subject"] == "Undeliverable: Me"


# --- injected reports --------------------------------------------------------------


def inject(ctl, mailbox, **body):
    return ctl("POST", f"mailboxes/{mailbox}/messages", json=body)


def test_injected_ndr_with_another_status(sb, ctl, seed):
    created = inject(
        ctl,
        seed["sender"],
        kind="ndr",
        original_message_id="<orig@tests.local>",
        recipient="full@contoso.onmicrosoft.com",
        status="5.2.2",
        diagnostic="smtp;552 5.2.2 Mailbox full",
    )
    (item,) = sb.inbox(seed["sender"])
    assert (item["id"], item["uid"]) == (created["id"], created["uid"])
    report, _ = report_parts(item["raw"])
    status = list(report.iter_parts())[1]
    assert status.get_payload()[1]["Status"] == "5.2.2"
    assert status.get_payload()[1]["Diagnostic-Code"] == "smtp;552 5.2.2 Mailbox full"
    assert report["In-Reply-To"] == "<orig@tests.local>"


def test_injected_delay_notice(sb, ctl, seed):
    inject(
        ctl,
        seed["sender"],
        kind="delay",
        original_message_id="<slow@tests.local>",
        recipient="someone@example.com",
        subject="Delivery delayed: Weekly report",
    )
    (item,) = sb.inbox(seed["sender"])
    report, _ = report_parts(item["raw"])
    assert report["Subject"] == "Delivery delayed: Weekly report"
    assert "X-MS-Exchange-Message-Is-Ndr" in report
    recipient = list(report.iter_parts())[1].get_payload()[1]
    assert recipient["Action"] == "delayed"
    assert recipient["Status"] == "4.4.7"
    assert recipient["Will-Retry-Until"]


def test_injected_automatic_replies(sb, http, ctl, seed):
    smtp_send(sb, http, seed, ["someone@example.com"], "Original subject")
    original = sb.messages(subject="Original subject")[0]["message_id"]
    for kind in ("auto_reply", "oof"):
        inject(
            ctl,
            seed["sender"],
            kind=kind,
            original_message_id=original,
            recipient="someone@example.com",
        )
    auto, oof = (
        email.message_from_bytes(i["raw"], policy=email.policy.default)
        for i in sb.inbox(seed["sender"])
    )
    assert auto["Subject"] == "Automatic reply: Original subject"
    assert auto["Auto-Submitted"] == "auto-replied"
    assert auto["X-Auto-Response-Suppress"] == "All"
    assert auto["In-Reply-To"] == auto["References"] == original
    assert auto.get_content_type() == "text/plain"
    assert oof["Auto-Submitted"] == "auto-generated"
    assert oof["X-Auto-Response-Suppress"] == "All"
    assert oof["X-MS-Exchange-Inbox-Rules-Loop"] == "someone@example.com"
    assert oof.get_content_type() == "text/html"
    assert oof["Subject"] == "Automatic reply: Original subject"


def test_mailbox_control_api_answers_bad_bodies_and_unknown_mailboxes(sb, ctl, seed):
    path = f"mailboxes/{seed['user']}/messages"
    for body in (
        {},
        {"kind": "bounce", "original_message_id": "<a@b>", "recipient": "a@b"},
        {"kind": "ndr", "recipient": "a@b"},
        {"kind": "ndr", "original_message_id": "<a@b>", "recipient": "nobody"},
        {
            "kind": "ndr",
            "original_message_id": "<a@b>",
            "recipient": "a@b.c",
            "status": "bad",
        },
        {"raw": ""},
        {"raw": "no header here"},
    ):
        answer = ctl("POST", path, json=body, expect=(400,))
        assert answer["error"]["message"], body
    ctl("GET", "mailboxes/ghost@contoso.onmicrosoft.com/messages", expect=(404,))
    ctl("POST", "mailboxes/ghost@contoso.onmicrosoft.com/uidvalidity", expect=(404,))


def test_mailbox_listing_over_the_control_api(sb, ctl, seed):
    inject(ctl, seed["user"], raw="Subject: Hi\r\nFrom: a@example.com\r\n\r\nx")
    (item,) = ctl("GET", f"mailboxes/{seed['user']}/messages")["messages"]
    assert set(item) == {
        "id",
        "uid",
        "internet_message_id",
        "subject",
        "from",
        "received_at",
    }
    assert (item["subject"], item["from"], item["uid"]) == ("Hi", "a@example.com", 1)


def test_reset_empties_the_inboxes(sb, ctl, seed):
    inject(ctl, seed["user"], raw="Subject: Hi\r\n\r\nx")
    sb.reset()
    assert sb.inbox(seed["user"]) == []


# --- lifecycle -----------------------------------------------------------------------


def test_three_sandboxes_start_and_stop_leaving_no_thread(tmp_path):
    before = set(threading.enumerate())
    for n in range(3):
        with Sandbox(state_dir=tmp_path / str(n)) as box:
            assert box.seed["imap_port"] == box.imap_port
            with imap(box) as client:
                assert client.login(box.seed["user"], box.seed["password"])[0] == "OK"
    assert set(threading.enumerate()) <= before
