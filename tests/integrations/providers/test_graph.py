"""`GraphClient.sent_message_exists` against the sandbox: real msal and requests over
TLS, the sandbox's Sent Items and its limits and faults."""

import pytest

from integrations.exceptions import (
    ConnectionFailed,
    PermissionMissing,
    SenderRejected,
    ServiceUnavailable,
    Throttled,
)
from integrations.providers.base import OutgoingEmail
from integrations.providers.graph import GraphClient, message_payload
from integrations.providers.identity import AppCredentials, acquire_app_token

GRAPH_DEFAULT = "https://graph.microsoft.com/.default"
READ_BASIC = "Mail.ReadBasic.All"
MESSAGE_ID = "<delivery-7.attempt-1@notifications.contoso.onmicrosoft.com>"


@pytest.fixture
def client(sandbox):
    return GraphClient(sandbox.graph_host)


def grant(ctl, sandbox, *permissions):
    """Give the seeded app these application permissions besides its own."""
    from sandbox.seed import APPLICATION_PERMISSIONS

    seed = sandbox.seed
    ctl(
        "PATCH",
        f"tenants/{seed['tenant_id']}/apps/{seed['client_id']}",
        {"application_permissions": APPLICATION_PERMISSIONS + list(permissions)},
    )


def token(sandbox, client_id=None, client_secret=None):
    seed = sandbox.seed
    creds = AppCredentials(
        authority_host=sandbox.authority_host,
        tenant=seed["tenant_id"],
        client_id=client_id or seed["client_id"],
        client_secret=client_secret or seed["client_secret"],
    )
    return acquire_app_token(creds, [GRAPH_DEFAULT])


@pytest.fixture
def reader(sandbox, ctl):
    grant(ctl, sandbox, READ_BASIC)
    return token(sandbox)


def send(client, sandbox, access_token, message_id=MESSAGE_ID, save=True):
    seed = sandbox.seed
    payload = {
        "message": {
            "subject": "Finding: SQL injection",
            "body": {"contentType": "Text", "content": "Details inside."},
            "toRecipients": [{"emailAddress": {"address": seed["recipient"]}}],
            "internetMessageId": message_id,
        },
        "saveToSentItems": save,
    }
    return client.send_mail(
        access_token=access_token, sender=seed["sender"], payload=payload
    )


def exists(client, sandbox, access_token, message_id=MESSAGE_ID, sender=None):
    return client.sent_message_exists(
        access_token=access_token,
        sender=sender or sandbox.seed["sender"],
        internet_message_id=message_id,
    )


def test_a_sent_message_saved_in_sent_items_is_found(client, sandbox, reader):
    send(client, sandbox, reader)

    assert exists(client, sandbox, reader) is True


def test_an_unknown_message_id_is_not_found(client, sandbox, reader):
    send(client, sandbox, reader)

    assert exists(client, sandbox, reader, "<never-sent@contoso>") is False


def test_a_message_sent_without_saving_to_sent_items_is_not_found(
    client, sandbox, reader
):
    send(client, sandbox, reader, save=False)

    assert exists(client, sandbox, reader) is False


def test_a_message_accepted_before_a_504_is_found(client, sandbox, ctl, reader):
    ctl("POST", "faults", {"target": "graph", "accept_then_status": 504})

    with pytest.raises(ServiceUnavailable):
        send(client, sandbox, reader)

    assert exists(client, sandbox, reader) is True


@pytest.mark.parametrize(
    "message_id",
    [
        "<o'brien'@contoso.onmicrosoft.com>",
        "<a+b&c=d#e%20f?g@contoso>",
        "<spaces and 'quotes''@contoso>",
    ],
    ids=["quotes", "url-characters", "spaces"],
)
def test_message_ids_are_quoted_for_odata_and_the_url(
    client, sandbox, reader, message_id
):
    send(client, sandbox, reader, message_id=message_id)

    assert exists(client, sandbox, reader, message_id) is True
    assert exists(client, sandbox, reader, message_id[:-1] + "x>") is False


def test_a_message_not_filed_yet_is_not_found_until_it_is(client, sandbox, ctl, reader):
    ctl("PATCH", f"tenants/{sandbox.seed['tenant_id']}", {"sent_items_delay": 20})
    send(client, sandbox, reader)

    before = exists(client, sandbox, reader)
    ctl("POST", "clock", {"advance_seconds": 21})

    assert (before, exists(client, sandbox, reader)) == (False, True)


def test_without_a_read_permission_permission_missing_is_raised(client, sandbox):
    access_token = token(sandbox)  # the seeded app: Mail.Send, no Mail.Read*
    send(client, sandbox, access_token)

    with pytest.raises(PermissionMissing) as raised:
        exists(client, sandbox, access_token)

    assert raised.value.code == "permission_missing"
    assert raised.value.status == 403
    assert raised.value.request_id


def test_a_mailbox_outside_the_apps_access_policy_is_permission_missing(
    client, sandbox, add_app
):
    client_id, secret = add_app(
        application_permissions=["Mail.Send", READ_BASIC],
        access_policy=[sandbox.seed["recipient"]],
    )
    access_token = token(sandbox, client_id, secret)

    with pytest.raises(PermissionMissing) as raised:
        exists(client, sandbox, access_token)

    assert raised.value.code == "mailbox_access_denied"


def test_an_unknown_sender_is_sender_rejected(client, sandbox, reader):
    with pytest.raises(SenderRejected) as raised:
        exists(client, sandbox, reader, sender="ghost@contoso.onmicrosoft.com")

    assert raised.value.code == "sender_not_found"


def test_a_throttled_lookup_is_throttled_with_the_servers_delay(
    client, sandbox, ctl, reader
):
    ctl(
        "PUT",
        "throttling",
        {"enabled": True, "graph_requests_per_window": 1, "window_seconds": 30},
    )
    assert exists(client, sandbox, reader) is False

    with pytest.raises(Throttled) as raised:
        exists(client, sandbox, reader)

    assert raised.value.retryable is True
    assert raised.value.status == 429
    assert 0 < raised.value.retry_after <= 30


def test_a_failing_lookup_is_service_unavailable(client, sandbox, ctl, reader):
    ctl(
        "POST",
        "faults",
        {"target": "graph", "graph_operation": "listMessages", "status": 503},
    )

    with pytest.raises(ServiceUnavailable) as raised:
        exists(client, sandbox, reader)

    assert raised.value.retryable is True


def test_a_dropped_lookup_is_connection_failed(client, sandbox, ctl, reader):
    ctl(
        "POST",
        "faults",
        {"target": "graph", "graph_operation": "listMessages", "drop": True},
    )

    with pytest.raises(ConnectionFailed) as raised:
        exists(client, sandbox, reader)

    assert raised.value.retryable is True


def test_an_empty_message_id_is_a_programming_error(client, sandbox, reader):
    with pytest.raises(ValueError):
        exists(client, sandbox, reader, "")


def test_the_products_own_messages_are_kept_in_sent_items_and_found_there(
    client, sandbox, reader
):
    email = OutgoingEmail(
        to=(sandbox.seed["recipient"],),
        subject="3 new vulnerabilities",
        text="Details inside.",
        message_id="<delivery-42@appsec.example.test>",
    )
    client.send_mail(
        access_token=reader,
        sender=sandbox.seed["sender"],
        payload=message_payload(email),
    )

    assert exists(client, sandbox, reader, message_id=email.message_id)
