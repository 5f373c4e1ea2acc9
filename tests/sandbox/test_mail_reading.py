"""Graph reading of the Inbox: listing, $filter on receivedDateTime, MIME ($value)
and the delta query, with requests over TLS."""

import email
import email.policy

import pytest

from tests.sandbox.m365 import (
    GRAPH_DEFAULT,
    app_token,
    assert_graph_error,
    delegated_token,
    mail,
    send_mail,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore:response_mode='form_post' is recommended:UserWarning"
)

GRAPH_MAIL_READ = "https://graph.microsoft.com/Mail.Read"


@pytest.fixture
def reader(sb, http, ctl):
    """An app token with the Mail.Read application permission."""
    ctl.grant("Mail.Read")
    return app_token(sb, http, GRAPH_DEFAULT)


def deliver(sb, http, seed, n, to=None, token=None):
    # Tokens are checked on the sandbox clock: one issued after the clock moved
    # works; a test may also pass one obtained before.
    token = token or app_token(sb, http)
    for i in range(n):
        body = mail(f"Message {i}", to=[to or seed["user"]])
        body["message"]["internetMessageId"] = f"<inbox-{i}@tests.local>"
        assert send_mail(sb, http, token, seed["sender"], body).status_code == 202


def get(http, sb, path, token, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kwargs.pop("headers", {}))
    return http.get(f"{sb.graph_host}/v1.0/{path}", headers=headers, **kwargs)


def inbox_path(mailbox):
    return f"users/{mailbox}/mailFolders/inbox/messages"


def test_inbox_lists_newest_first_with_top_skip_and_select(sb, http, seed, reader):
    deliver(sb, http, seed, 3)

    first = get(
        http,
        sb,
        inbox_path(seed["user"]),
        reader,
        params={"$top": "2", "$select": "subject,internetMessageId"},
    ).json()

    assert [m["subject"] for m in first["value"]] == ["Message 2", "Message 1"]
    assert set(first["value"][0]) == {
        "@odata.etag",
        "id",
        "subject",
        "internetMessageId",
    }
    rest = http.get(
        first["@odata.nextLink"], headers={"Authorization": f"Bearer {reader}"}
    ).json()
    assert [m["subject"] for m in rest["value"]] == ["Message 0"]
    assert sb.counters()["graph_list_inbox"] == 2


def test_inbox_filter_on_received_date_time(sb, http, ctl, seed, reader):
    sender = app_token(sb, http)
    deliver(sb, http, seed, 1, token=sender)
    ctl.advance_clock(600)
    (old,) = sb.inbox(seed["user"])
    deliver(sb, http, seed, 1, token=sender)
    since = old["received_at"][:19] + "Z"

    for operator, expected in (("ge", 2), ("gt", 1)):
        response = get(
            http,
            sb,
            inbox_path(seed["user"]),
            reader,
            params={"$filter": f"receivedDateTime {operator} {since}"},
        )
        assert response.status_code == 200, response.text
        assert len(response.json()["value"]) == expected

    bad = get(
        http,
        sb,
        inbox_path(seed["user"]),
        reader,
        params={"$filter": "receivedDateTime ge yesterday"},
    )
    assert_graph_error(bad, 400, "BadRequest")


def test_mail_read_basic_lists_without_bodies_and_gets_no_mime(sb, http, ctl, seed):
    ctl.grant("Mail.ReadBasic.All")
    token = app_token(sb, http)
    deliver(sb, http, seed, 1)

    (message,) = get(http, sb, inbox_path(seed["user"]), token).json()["value"]
    assert "body" not in message and "subject" in message
    mime = get(http, sb, f"users/{seed['user']}/messages/{message['id']}/$value", token)
    assert_graph_error(mime, 403, "ErrorAccessDenied")


def test_inbox_without_a_read_permission_is_403(sb, http, seed):
    token = app_token(sb, http)  # Mail.Send only
    response = get(http, sb, inbox_path(seed["user"]), token)
    assert_graph_error(response, 403, "ErrorAccessDenied")


def test_value_answers_the_mime_of_a_message(sb, http, seed, reader):
    deliver(sb, http, seed, 1)
    (message,) = get(http, sb, inbox_path(seed["user"]), reader).json()["value"]

    response = get(
        http, sb, f"users/{seed['user']}/messages/{message['id']}/$value", reader
    )

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.content == sb.inbox(seed["user"])[0]["raw"]
    parsed = email.message_from_bytes(response.content, policy=email.policy.default)
    assert parsed["Message-ID"] == "<inbox-0@tests.local>"
    assert sb.counters()["graph_get_mime"] == 1


def test_value_of_an_unknown_message_is_404(sb, http, seed, reader):
    response = get(http, sb, f"users/{seed['user']}/messages/AAMkAnope=/$value", reader)
    assert_graph_error(response, 404, "ErrorItemNotFound")


def test_delegated_mail_read_reads_its_own_inbox(sb, http, seed):
    deliver(sb, http, seed, 1)
    token = delegated_token(sb, http, [GRAPH_MAIL_READ])

    mine = get(http, sb, "me/mailFolders/inbox/messages", token).json()["value"]
    assert [m["subject"] for m in mine] == ["Message 0"]
    mime = get(http, sb, f"me/messages/{mine[0]['id']}/$value", token)
    assert mime.status_code == 200
    other = get(http, sb, inbox_path(seed["sender"]), token)
    assert_graph_error(other, 403, "ErrorAccessDenied")


def delta(http, sb, url, token, page_size=None):
    headers = {"Authorization": f"Bearer {token}"}
    if page_size:
        headers["Prefer"] = f"odata.maxpagesize={page_size}"
    response = http.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def delta_round(http, sb, url, token, page_size=None):
    """Every page of one round: (messages, deltaLink, pages)."""
    messages, pages = [], 0
    while True:
        page = delta(http, sb, url, token, page_size)
        pages += 1
        messages += page["value"]
        if "@odata.deltaLink" in page:
            return messages, page["@odata.deltaLink"], pages
        url = page["@odata.nextLink"]
        assert "$skiptoken=" in url


def test_delta_pages_then_only_new_messages(sb, http, seed, reader):
    deliver(sb, http, seed, 3)
    start = f"{sb.graph_host}/v1.0/{inbox_path(seed['user'])}/delta?$select=subject"

    messages, link, pages = delta_round(http, sb, start, reader, page_size=2)
    assert [m["subject"] for m in messages] == ["Message 0", "Message 1", "Message 2"]
    assert pages == 2
    assert "$deltatoken=" in link

    again, link, _ = delta_round(http, sb, link, reader)
    assert again == []

    deliver(sb, http, seed, 1)
    new, _, _ = delta_round(http, sb, link, reader)
    assert [m["subject"] for m in new] == ["Message 0"]
    assert set(new[0]) == {"@odata.etag", "id", "subject"}
    assert sb.counters()["graph_delta"] == 4


def test_delta_filter_on_received_date_time_applies_to_the_first_round(
    sb, http, ctl, seed, reader
):
    sender = app_token(sb, http)
    deliver(sb, http, seed, 1, token=sender)
    ctl.advance_clock(600)
    deliver(sb, http, seed, 1, token=sender)
    since = sb.inbox(seed["user"])[1]["received_at"][:19] + "Z"
    start = (
        f"{sb.graph_host}/v1.0/{inbox_path(seed['user'])}/delta"
        f"?$filter=receivedDateTime ge {since}"
    )
    messages, _, _ = delta_round(http, sb, start, reader)
    assert len(messages) == 1


@pytest.mark.parametrize("token_text", ["garbled", "eyJ9.AAAA", ""])
def test_unknown_delta_token_is_410_sync_state_not_found(
    sb, http, seed, reader, token_text
):
    url = f"{sb.graph_host}/v1.0/{inbox_path(seed['user'])}/delta"
    response = http.get(
        url,
        params={"$deltatoken": token_text or "x"},
        headers={"Authorization": f"Bearer {reader}"},
    )
    assert_graph_error(response, 410, "SyncStateNotFound")


def test_delta_token_of_another_mailbox_or_before_reset_is_410(sb, http, seed, ctl):
    ctl.grant("Mail.Read")
    token = app_token(sb, http)
    url = f"{sb.graph_host}/v1.0/{inbox_path(seed['user'])}/delta"
    _, link, _ = delta_round(http, sb, url, token)
    other = link.replace(seed["user"], seed["sender"])
    response = http.get(other, headers={"Authorization": f"Bearer {token}"})
    assert_graph_error(response, 410, "SyncStateNotFound")

    sb.reset()
    ctl.grant("Mail.Read")
    token = app_token(sb, http)
    response = http.get(link, headers={"Authorization": f"Bearer {token}"})
    assert_graph_error(response, 410, "SyncStateNotFound")


def test_non_ascii_message_id_and_subject_are_filed_and_served(sb, http, seed, reader):
    token = app_token(sb, http)
    body = mail("Überprüfung", to=[seed["user"], "ghost@contoso.onmicrosoft.com"])
    body["message"]["internetMessageId"] = "<über@tests.local>"
    assert send_mail(sb, http, token, seed["sender"], body).status_code == 202

    (message,) = get(http, sb, inbox_path(seed["user"]), reader).json()["value"]
    raw = get(
        http, sb, f"users/{seed['user']}/messages/{message['id']}/$value", reader
    ).content
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Überprüfung"
    (ndr,) = sb.inbox(seed["sender"])
    assert ndr["subject"] == "Undeliverable: Überprüfung"
