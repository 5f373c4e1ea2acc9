"""Sent Items: sendMail's saved copy and the Graph messages listing that finds it by
its Internet Message-ID, with requests and msal over TLS."""

import pytest

from sandbox import Sandbox
from tests.sandbox.m365 import (
    GRAPH_DEFAULT,
    GUID,
    addresses,
    app_token,
    assert_graph_error,
    by_message_id,
    delegated_token,
    jwt_claims,
    mail,
    send_mail,
    sent_items,
    trusted_session,
)

# msal suggests form_post; the sandbox supports both and the tests use msal's default.
pytestmark = pytest.mark.filterwarnings(
    "ignore:response_mode='form_post' is recommended:UserWarning"
)

MESSAGE_ID = "<delivery-42.attempt-1@notifications.contoso.onmicrosoft.com>"
READ_BASIC = "Mail.ReadBasic.All"
GRAPH_MAIL_READ = "https://graph.microsoft.com/Mail.Read"
GRAPH_MAIL_SEND = "https://graph.microsoft.com/Mail.Send"


@pytest.fixture
def reader(sb, http, ctl):
    """An app-only Graph token of the seeded app, granted Mail.ReadBasic.All."""
    ctl.grant(READ_BASIC)
    return app_token(sb, http, GRAPH_DEFAULT)


def sent(sb, http, token, seed, message_id=MESSAGE_ID, **fields):
    fields.setdefault("saveToSentItems", True)
    body = mail(
        subject=fields.pop("subject", "Finding: SQL injection"),
        to=[seed["recipient"]],
        internetMessageId=message_id,
        **fields,
    )
    response = send_mail(sb, http, token, seed["sender"], body)
    assert response.status_code == 202, response.text
    return response


def lookup(sb, http, token, mailbox, message_id=MESSAGE_ID):
    response = sent_items(sb, http, token, mailbox, by_message_id(message_id))
    assert response.status_code == 200, response.text
    return response.json()["value"]


# --- saving -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "save, saved",
    [(True, True), ("true", True), (False, False), ("false", False)],
    ids=["true", "string-true", "false", "string-false"],
)
def test_save_to_sent_items_decides_whether_a_copy_is_kept(
    sb, http, seed, reader, save, saved
):
    sent(sb, http, reader, seed, saveToSentItems=save)

    assert bool(lookup(sb, http, reader, seed["sender"])) is saved
    assert len(sb.messages(to=seed["recipient"])) == 1


def test_without_save_to_sent_items_a_copy_is_kept_as_graph_defaults_to_true(
    sb, http, seed, reader
):
    body = mail(to=[seed["recipient"]], internetMessageId=MESSAGE_ID)
    del body["saveToSentItems"]

    assert send_mail(sb, http, reader, seed["sender"], body).status_code == 202

    [found] = lookup(sb, http, reader, seed["sender"])
    assert found["internetMessageId"] == MESSAGE_ID
    assert sb.counters()["sent_items_saved"] == 1


def test_copy_is_kept_in_the_mailbox_of_the_url_even_when_sent_as_another(
    sb, http, ctl, seed, reader
):
    body = mail(
        to=[seed["user"]],
        internetMessageId=MESSAGE_ID,
        saveToSentItems=True,
        **{"from": addresses(seed["recipient"])[0]},
    )

    assert send_mail(sb, http, reader, seed["sender"], body).status_code == 202

    assert lookup(sb, http, reader, seed["sender"])
    assert lookup(sb, http, reader, seed["recipient"]) == []


def test_message_without_an_internet_message_id_gets_one_in_sent_items(
    sb, http, seed, reader
):
    body = mail(subject="no id", to=[seed["recipient"]], saveToSentItems=True)
    assert send_mail(sb, http, reader, seed["sender"], body).status_code == 202
    (delivered,) = sb.messages(subject="no id")

    [found] = lookup(sb, http, reader, seed["sender"], delivered["message_id"])

    assert found["internetMessageId"] == delivered["message_id"]
    assert delivered["message_id"].startswith("<")


def test_accepted_then_504_is_in_sent_items(sb, http, ctl, seed, reader):
    """The case the lookup is for: Microsoft kept the message, the client saw 504."""
    ctl.add_fault(target="graph", accept_then_status=504)
    body = mail(to=[seed["recipient"]], internetMessageId=MESSAGE_ID)
    body["saveToSentItems"] = True

    response = send_mail(sb, http, reader, seed["sender"], body)

    assert response.status_code == 504
    assert lookup(sb, http, reader, seed["sender"])
    counters = sb.counters()
    assert (counters["graph_accepted"], counters["graph_send_mail"]) == (1, 0)


def test_refused_send_keeps_no_copy(sb, http, ctl, seed, reader):
    ctl.add_fault(target="graph", status=503)

    body = mail(to=[seed["recipient"]], internetMessageId=MESSAGE_ID)
    body["saveToSentItems"] = True
    assert send_mail(sb, http, reader, seed["sender"], body).status_code == 503

    assert lookup(sb, http, reader, seed["sender"]) == []


def test_copy_shows_after_the_tenants_sent_items_delay(sb, http, ctl, seed, reader):
    ctl.patch_tenant(sent_items_delay=30)
    sent(sb, http, reader, seed)

    before = lookup(sb, http, reader, seed["sender"])
    ctl.advance_clock(31)
    after = lookup(sb, http, reader, seed["sender"])

    assert before == []
    assert [m["internetMessageId"] for m in after] == [MESSAGE_ID]


# --- the listing's answer -----------------------------------------------------------


def test_filter_answers_graphs_odata_shape_with_only_the_selected_properties(
    sb, http, seed, reader
):
    sent(sb, http, reader, seed)
    sent(sb, http, reader, seed, message_id="<other@contoso.onmicrosoft.com>")

    response = sent_items(sb, http, reader, seed["sender"], by_message_id(MESSAGE_ID))

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert GUID.match(response.headers["request-id"])
    body = response.json()
    assert body["@odata.context"] == (
        "https://graph.microsoft.com/v1.0/$metadata#users("
        "'notifications%40contoso.onmicrosoft.com')/mailFolders('sentitems')/"
        "messages(id,internetMessageId)"
    )
    [message] = body["value"]
    assert set(message) == {"@odata.etag", "id", "internetMessageId"}
    assert message["internetMessageId"] == MESSAGE_ID
    assert message["id"].startswith("AAMkA") and message["id"].endswith("=")
    assert message["@odata.etag"].startswith('W/"')
    assert "@odata.nextLink" not in body


def test_unknown_message_id_answers_an_empty_value(sb, http, seed, reader):
    sent(sb, http, reader, seed)

    assert lookup(sb, http, reader, seed["sender"], "<unknown@contoso>") == []


def test_message_id_is_compared_exactly(sb, http, seed, reader):
    sent(sb, http, reader, seed)

    assert lookup(sb, http, reader, seed["sender"], MESSAGE_ID.strip("<>")) == []
    assert lookup(sb, http, reader, seed["sender"], MESSAGE_ID + " ") == []


@pytest.mark.parametrize(
    "message_id",
    [
        "<o'brien.1@contoso.onmicrosoft.com>",
        "<''quoted''@contoso>",
        "<a+b&c=d#e%20f?g/h@contoso>",
        "<über.ünïcode@contoso>",
    ],
    ids=["quote", "two-quotes", "url-specials", "non-ascii"],
)
def test_message_ids_with_quotes_and_url_characters_are_found(
    sb, http, seed, reader, message_id
):
    sent(sb, http, reader, seed, message_id=message_id)

    [found] = lookup(sb, http, reader, seed["sender"], message_id)

    assert found["internetMessageId"] == message_id


@pytest.mark.parametrize("folder", ["sentitems", "SentItems", "SENTITEMS"])
def test_well_known_folder_name_is_case_insensitive(sb, http, seed, reader, folder):
    sent(sb, http, reader, seed)

    response = sent_items(
        sb, http, reader, seed["sender"], by_message_id(MESSAGE_ID), folder=folder
    )

    assert response.status_code == 200, response.text
    assert len(response.json()["value"]) == 1


def test_path_segments_are_case_insensitive(sb, http, seed, reader):
    sent(sb, http, reader, seed)
    url = f"{sb.graph_host}/v1.0/users/{seed['sender']}/mailfolders/SentItems/Messages"

    response = http.get(
        url,
        params=by_message_id(MESSAGE_ID),
        headers={"Authorization": f"Bearer {reader}"},
    )

    assert response.status_code == 200, response.text
    assert len(response.json()["value"]) == 1


def test_filter_in_parentheses_with_spaces_and_without_the_dollar_is_understood(
    sb, http, seed, reader
):
    sent(sb, http, reader, seed)

    response = sent_items(
        sb,
        http,
        reader,
        seed["sender"],
        {"filter": f"  ( InternetMessageId   eq  '{MESSAGE_ID}' )  "},
    )

    assert response.status_code == 200, response.text
    assert len(response.json()["value"]) == 1


def test_without_select_the_message_has_graphs_properties(sb, http, seed, reader):
    sent(sb, http, reader, seed, subject="Full message", content="Body text")

    response = sent_items(
        sb,
        http,
        reader,
        seed["sender"],
        {"$filter": by_message_id(MESSAGE_ID)["$filter"]},
    )

    [message] = response.json()["value"]
    assert message["subject"] == "Full message"
    assert message["from"]["emailAddress"]["address"] == seed["sender"]
    assert message["toRecipients"] == [
        {"emailAddress": {"name": "Security team", "address": seed["recipient"]}}
    ]
    assert message["isDraft"] is False
    assert message["sentDateTime"].endswith("Z")
    # Mail.ReadBasic.All reads everything but the body.
    assert "body" not in message and "bodyPreview" not in message


def test_mail_read_also_returns_the_body(sb, http, ctl, seed):
    ctl.grant("Mail.Read")
    token = app_token(sb, http, GRAPH_DEFAULT)
    sent(sb, http, token, seed, content="Body text")

    response = sent_items(
        sb,
        http,
        token,
        seed["sender"],
        {"$filter": by_message_id(MESSAGE_ID)["$filter"]},
    )

    [message] = response.json()["value"]
    assert message["body"] == {"contentType": "text", "content": "Body text"}
    assert message["bodyPreview"] == "Body text"


def test_listing_pages_with_top_and_a_next_link(sb, http, seed, reader):
    for n in range(5):
        sent(sb, http, reader, seed, message_id=f"<m{n}@contoso>")

    first = sent_items(
        sb, http, reader, seed["sender"], {"$top": "2", "$select": "internetMessageId"}
    ).json()
    ids = [m["internetMessageId"] for m in first["value"]]
    link = first["@odata.nextLink"]
    while link:
        page = http.get(link, headers={"Authorization": f"Bearer {reader}"}).json()
        ids += [m["internetMessageId"] for m in page["value"]]
        link = page.get("@odata.nextLink")

    assert ids == [f"<m{n}@contoso>" for n in reversed(range(5))]


def test_delegated_user_lists_its_own_sent_items(sb, http, ctl, seed):
    from sandbox.seed import DELEGATED_PERMISSIONS

    ctl.patch_app(
        seed["client_id"], delegated_permissions=DELEGATED_PERMISSIONS + ["Mail.Read"]
    )
    send_token = delegated_token(sb, http, [GRAPH_MAIL_SEND])
    body = mail(to=[seed["recipient"]], internetMessageId=MESSAGE_ID)
    body["saveToSentItems"] = True
    assert send_mail(sb, http, send_token, None, body).status_code == 202
    read_token = delegated_token(sb, http, [GRAPH_MAIL_READ])

    mine = sent_items(sb, http, read_token, None, by_message_id(MESSAGE_ID))
    others = sent_items(sb, http, read_token, seed["sender"], by_message_id(MESSAGE_ID))

    assert [m["internetMessageId"] for m in mine.json()["value"]] == [MESSAGE_ID]
    assert mine.json()["@odata.context"].startswith(
        "https://graph.microsoft.com/v1.0/$metadata#users('"
        + jwt_claims(read_token)["oid"]
    )
    assert_graph_error(others, 403, "ErrorAccessDenied")


# --- refusals, in the order Graph checks them ---------------------------------------


def test_without_a_token_is_401(sb, http, seed):
    response = sent_items(sb, http, None, seed["sender"], by_message_id(MESSAGE_ID))

    assert_graph_error(response, 401, "InvalidAuthenticationToken")


def test_app_without_a_read_permission_is_403_access_denied(sb, http, seed):
    token = app_token(sb, http, GRAPH_DEFAULT)  # the seed: Mail.Send only
    assert READ_BASIC not in jwt_claims(token)["roles"]

    response = sent_items(sb, http, token, seed["sender"], by_message_id(MESSAGE_ID))

    assert_graph_error(
        response,
        403,
        "ErrorAccessDenied",
        "Access is denied. Check credentials and try again.",
    )


def test_unknown_mailbox_is_404_invalid_user(sb, http, reader):
    response = sent_items(
        sb, http, reader, "ghost@contoso.onmicrosoft.com", by_message_id(MESSAGE_ID)
    )

    assert_graph_error(response, 404, "ErrorInvalidUser")


def test_user_without_a_mailbox_is_404_mailbox_not_enabled(sb, http, ctl, reader):
    ctl.add_user("nomail@contoso.onmicrosoft.com", has_mailbox=False)

    response = sent_items(
        sb, http, reader, "nomail@contoso.onmicrosoft.com", by_message_id(MESSAGE_ID)
    )

    assert_graph_error(response, 404, "MailboxNotEnabledForRESTAPI")


def test_access_policy_excluding_the_mailbox_is_403_odata_disabled(sb, http, ctl, seed):
    client_id, secret = ctl.add_app(
        application_permissions=["Mail.Send", READ_BASIC],
        access_policy=[seed["recipient"]],
    )
    token = app_token(sb, http, GRAPH_DEFAULT, client_id=client_id, credential=secret)

    allowed = sent_items(sb, http, token, seed["recipient"], by_message_id(MESSAGE_ID))
    refused = sent_items(sb, http, token, seed["sender"], by_message_id(MESSAGE_ID))

    assert allowed.status_code == 200, allowed.text
    assert_graph_error(
        refused, 403, "ErrorAccessDenied", "Access to OData is disabled."
    )


def test_another_folder_is_400_malformed_id(sb, http, seed, reader):
    # Sent Items and the Inbox are kept (tests/sandbox/test_mail_reading.py).
    response = sent_items(
        sb, http, reader, seed["sender"], by_message_id(MESSAGE_ID), folder="drafts"
    )

    assert_graph_error(response, 400, "ErrorInvalidIdMalformed")


@pytest.mark.parametrize(
    "filter_",
    [
        "internetMessageId eq '<a@b>",  # unterminated
        "internetMessageId eq '<o'brien@b>'",  # quote not doubled
        'internetMessageId eq "<a@b>"',
        "internetMessageId eq <a@b>",
        "internetMessageId ne '<a@b>'",
        "internetMessageId  '<a@b>'",
        "subject eq 'hello'",
        "internetMessageId eq '<a@b>' and isDraft eq false",
        "internetMessageId eq '<a@b>' or internetMessageId eq '<c@d>'",
        "(internetMessageId eq '<a@b>'",
        "internetMessageId eq '<a@b>')",
        "internetMessageIdeq'<a@b>'",
        "internetMessageId eq",
        "",
        "startswith(internetMessageId, '<a')",
    ],
)
def test_any_other_filter_is_400_invalid_filter_clause(sb, http, seed, reader, filter_):
    response = sent_items(sb, http, reader, seed["sender"], {"$filter": filter_})

    error = assert_graph_error(response, 400, "BadRequest")
    assert error["message"].startswith("Invalid filter clause: ")


@pytest.mark.parametrize(
    "query, code",
    [
        ({"$select": "id,nosuchproperty"}, "RequestBroker--ParseUri"),
        ({"$select": "id,,subject"}, "BadRequest"),
        ({"$top": "-1"}, "BadRequest"),
        ({"$top": "ten"}, "BadRequest"),
        ({"$orderby": "sentDateTime desc"}, "BadRequest"),
        ({"$unknown": "1"}, "BadRequest"),
        (
            "$filter=internetMessageId eq 'a'&filter=internetMessageId eq 'b'",
            "BadRequest",
        ),
    ],
    ids=[
        "unknown-property",
        "empty-select",
        "negative-top",
        "word-top",
        "orderby",
        "unknown-option",
        "filter-twice",
    ],
)
def test_malformed_query_options_are_400(sb, http, seed, reader, query, code):
    response = sent_items(sb, http, reader, seed["sender"], query)

    assert_graph_error(response, 400, code)


# --- limits and faults apply to the lookup too ------------------------------------


def test_lookups_count_against_the_app_and_mailbox_budget(sb, http, ctl, seed, reader):
    ctl.throttle(graph_requests_per_window=2, window_seconds=30)
    sent(sb, http, reader, seed)

    found = sent_items(sb, http, reader, seed["sender"], by_message_id(MESSAGE_ID))
    throttled = sent_items(sb, http, reader, seed["sender"], by_message_id(MESSAGE_ID))
    other_mailbox = sent_items(
        sb, http, reader, seed["recipient"], by_message_id(MESSAGE_ID)
    )

    assert found.status_code == 200
    assert_graph_error(throttled, 429, "ApplicationThrottled")
    assert float(throttled.headers["Retry-After"]) > 0
    assert other_mailbox.status_code == 200
    assert sb.counters()["graph_throttled"] == 1


@pytest.mark.parametrize("operation", ["listMessages", "any"])
def test_fault_aimed_at_the_lookup_fires_on_it(sb, http, ctl, seed, reader, operation):
    ctl.add_fault(target="graph", status=503, graph_operation=operation, count=1)

    faulted = sent_items(sb, http, reader, seed["sender"], by_message_id(MESSAGE_ID))
    after = sent_items(sb, http, reader, seed["sender"], by_message_id(MESSAGE_ID))

    assert_graph_error(faulted, 503, "ServiceUnavailable")
    assert after.status_code == 200


def test_send_mail_faults_leave_the_lookup_alone(sb, http, ctl, seed, reader):
    ctl.add_fault(target="graph", status=503, probability=1.0)

    lookup_ = sent_items(sb, http, reader, seed["sender"], by_message_id(MESSAGE_ID))
    body = mail(to=[seed["recipient"]])
    send = send_mail(sb, http, reader, seed["sender"], body)

    assert lookup_.status_code == 200
    assert send.status_code == 503


# --- control API and seed -----------------------------------------------------------


def test_control_api_lists_and_deletes_saved_copies(sb, http, ctl, seed, reader):
    ctl.patch_tenant(sent_items_delay=60)
    sent(sb, http, reader, seed, subject="kept")

    listed = ctl("GET", f"sent_items?mailbox={seed['sender']}")["sent_items"]
    deleted = ctl("DELETE", "sent_items")

    [item] = listed
    assert item["mailbox"] == seed["sender"]
    assert item["message_id"] == MESSAGE_ID
    assert item["subject"] == "kept"
    assert item["visible_at"] > item["saved_at"]  # not filed yet, still listed
    assert sb.sent_items() == []
    assert deleted == {"deleted": 1}


def test_python_handle_lists_saved_copies(sb, http, seed, reader):
    sent(sb, http, reader, seed)

    [item] = sb.sent_items(seed["sender"])

    assert item["message_id"] == MESSAGE_ID
    assert sb.sent_items("nobody@contoso.onmicrosoft.com") == []


def test_reset_forgets_sent_items_and_the_grant(sb, http, ctl, seed, reader):
    sent(sb, http, reader, seed)

    sb.reset()

    assert sb.sent_items() == []
    token = app_token(sb, http, GRAPH_DEFAULT)
    assert READ_BASIC not in jwt_claims(token)["roles"]


def test_sandbox_grant_option_gives_the_seeded_app_the_permission_across_resets(
    tmp_path,
):
    with Sandbox(state_dir=tmp_path, grant=[READ_BASIC]) as other:
        other.reset()
        with trusted_session(other.ca_path) as session:
            token = app_token(other, session, GRAPH_DEFAULT)
            response = sent_items(
                other, session, token, other.seed["sender"], by_message_id(MESSAGE_ID)
            )

    assert set(jwt_claims(token)["roles"]) >= {"Mail.Send", READ_BASIC}
    assert response.status_code == 200, response.text
