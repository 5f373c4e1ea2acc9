"""Graph `GET /users/{id or userPrincipalName}` (the health check's sender lookup):
User.Read.All needed, 404 for an unknown user, `mail` null without a mailbox."""

from tests.sandbox.m365 import assert_graph_error
from tests.sandbox.test_breakages import app_only


def get_user(sb, http, token, user, select="id,mail"):
    return http.get(
        f"{sb.graph_host}/v1.0/users/{user}",
        params={"$select": select} if select else None,
        headers={"Authorization": f"Bearer {token}"},
    )


def test_reading_a_user_needs_user_read_all(sb, http, seed):
    answer = get_user(sb, http, app_only(sb, http), seed["sender"])

    error = assert_graph_error(answer, 403, "Authorization_RequestDenied")
    assert error["message"] == "Insufficient privileges to complete the operation."


def test_user_with_its_mailbox_and_unknown_user(sb, http, ctl, seed):
    ctl.grant("User.Read.All")
    token = app_only(sb, http)

    answer = get_user(sb, http, token, seed["sender"])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"@odata.context", "id", "mail"}
    assert body["mail"] == seed["sender"]
    assert body["@odata.context"].endswith("#users(id,mail)/$entity")

    missing = get_user(sb, http, token, "nobody@contoso.onmicrosoft.com")
    assert_graph_error(missing, 404, "Request_ResourceNotFound")
    bad = get_user(sb, http, token, seed["sender"], select="id,nope")
    assert_graph_error(bad, 400, "Request_BadRequest")


def test_user_without_a_mailbox_has_no_mail(sb, http, ctl, seed):
    ctl.grant("User.Read.All")
    ctl(
        "PATCH",
        f"tenants/{seed['tenant_id']}/users/{seed['user']}",
        json={"has_mailbox": False},
    )

    body = get_user(sb, http, app_only(sb, http), seed["user"], select=None).json()

    assert body["mail"] is None
    assert body["userPrincipalName"] == seed["user"]
