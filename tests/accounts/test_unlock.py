"""A security admin ends a lockout: on the Sign-in lockouts page or with
`manage.py unlock_sign_in`. Both are audited."""

from io import StringIO

import pytest
from axes.models import AccessAttempt
from django.core.management import CommandError, call_command

from integrations.models import AuditAction, AuditEntry
from tests.accounts.conftest import sign_in, signed_in
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

LOCKOUTS_URL = "/accounts/lockouts/"
UNLOCK_URL = "/accounts/lockouts/unlock/"
OWNER_PASSWORD = "pw-olivia-123456"


def unlocked_entries():
    return AuditEntry.objects.filter(action=AuditAction.SIGN_IN_UNLOCKED)


@pytest.fixture
def locked_owner(owner, fail_sign_ins):
    """olivia locked out by user name (failures from several addresses)."""
    for n in range(5):
        fail_sign_ins("olivia", 1, address=f"198.51.100.{n + 1}")
    return owner


# --- the page -----------------------------------------------------------------------


def test_the_page_lists_current_lockouts_for_a_security_admin(
    client, security_admin, locked_owner, fail_sign_ins
):
    for name in ("a", "b", "c", "d", "e"):
        fail_sign_ins(name, 1, address="192.0.2.66")
    fail_sign_ins("not-yet-locked", 2, address="192.0.2.99")

    response = client_for(client, security_admin).get(LOCKOUTS_URL)

    assert response.status_code == 200
    rows = {(lockout.kind, lockout.value) for lockout in response.context["lockouts"]}
    assert rows == {("user", "olivia"), ("address", "192.0.2.66")}
    assert "<code>olivia</code>" in response.text
    assert "<code>192.0.2.66</code>" in response.text
    assert "not-yet-locked" not in response.text
    assert response.text.count(">Unlock</button>") == 2


def test_the_page_says_when_nobody_is_locked_out(client, security_admin):
    response = client_for(client, security_admin).get(LOCKOUTS_URL)
    assert "Nobody is locked out." in response.text


def test_the_navigation_links_the_page_for_security_admins_only(
    client, security_admin, owner
):
    assert LOCKOUTS_URL in client_for(client, security_admin).get("/projects/").text
    assert LOCKOUTS_URL not in client_for(client, owner).get("/projects/").text


def test_anonymous_users_are_sent_to_sign_in(client, locked_owner):
    for response in (
        client.get(LOCKOUTS_URL),
        client.post(UNLOCK_URL, {"kind": "user", "value": "olivia"}),
    ):
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    assert AccessAttempt.objects.filter(username="olivia").count() == 5


def test_other_users_get_403_and_unlock_nothing(client, owner, member, locked_owner):
    client_for(client, member)
    assert client.get(LOCKOUTS_URL).status_code == 403
    assert (
        client.post(UNLOCK_URL, {"kind": "user", "value": "olivia"}).status_code == 403
    )
    assert AccessAttempt.objects.filter(username="olivia").count() == 5
    assert not unlocked_entries().exists()


def test_unlock_is_post_only(client, security_admin):
    assert client_for(client, security_admin).get(UNLOCK_URL).status_code == 405


def test_a_security_admin_unlocks_a_user_name(client, security_admin, locked_owner):
    admin_client = client_for(client, security_admin)

    response = admin_client.post(
        UNLOCK_URL, {"kind": "user", "value": "olivia"}, follow=True
    )

    assert response.redirect_chain == [(LOCKOUTS_URL, 302)]
    assert "Sign-in is unlocked for the user name olivia." in response.text
    assert "Nobody is locked out." in response.text
    entry = unlocked_entries().get()
    assert entry.actor == security_admin
    assert entry.subject == "user:olivia"
    assert "5 failed sign-in records cleared" in entry.detail

    admin_client.logout()
    assert (
        sign_in(client, "olivia", OWNER_PASSWORD, address="203.0.113.1").status_code
        == 302
    )
    assert signed_in(client)


def test_a_security_admin_unlocks_an_address(
    client, security_admin, owner, fail_sign_ins
):
    for name in ("a", "b", "c", "d", "e"):
        fail_sign_ins(name, 1, address="192.0.2.66")
    assert sign_in(client, "olivia", OWNER_PASSWORD, "192.0.2.66").status_code == 429

    admin_client = client_for(client, security_admin)
    admin_client.post(UNLOCK_URL, {"kind": "address", "value": "192.0.2.66"})
    admin_client.logout()

    assert unlocked_entries().get().subject == "address:192.0.2.66"
    assert sign_in(client, "olivia", OWNER_PASSWORD, "192.0.2.66").status_code == 302


@pytest.mark.parametrize(
    "data, error",
    [
        ({"kind": "address", "value": "not-an-address"}, "valid IPv4 or IPv6"),
        ({"kind": "user", "value": "   "}, "Enter the user name."),
        ({"kind": "user", "value": ""}, "This field is required."),
        ({"kind": "everyone", "value": "x"}, "Select a valid choice."),
    ],
)
def test_a_bad_unlock_request_is_refused_with_a_clear_error(
    client, security_admin, locked_owner, data, error
):
    response = client_for(client, security_admin).post(UNLOCK_URL, data)

    assert response.status_code == 400
    assert error in response.text
    assert AccessAttempt.objects.filter(username="olivia").count() == 5
    assert not unlocked_entries().exists()


def test_unlocking_an_ended_lockout_says_so_and_audits_nothing(client, security_admin):
    response = client_for(client, security_admin).post(
        UNLOCK_URL, {"kind": "user", "value": "olivia"}, follow=True
    )
    assert "That lockout had already ended." in response.text
    assert not unlocked_entries().exists()


# --- the command ----------------------------------------------------------------------


def run(*args):
    out = StringIO()
    call_command("unlock_sign_in", *args, stdout=out)
    return out.getvalue()


def test_the_command_unlocks_a_user_name(client, locked_owner, fail_sign_ins):
    fail_sign_ins("mike", 2)

    output = run("olivia")

    assert "Unlocked sign-in for the user name 'olivia' (5 failed" in output
    assert not AccessAttempt.objects.filter(username="olivia").exists()
    assert AccessAttempt.objects.filter(username="mike").exists()
    entry = unlocked_entries().get()
    assert entry.actor is None
    assert entry.subject == "user:olivia"
    assert "manage.py unlock_sign_in" in entry.detail
    assert sign_in(client, "olivia", OWNER_PASSWORD).status_code == 302


def test_the_command_unlocks_an_address(client, owner, fail_sign_ins):
    for name in ("a", "b", "c", "d", "e"):
        fail_sign_ins(name, 1, address="2001:db8::7")

    output = run("--address", "2001:db8::7")

    assert "Unlocked sign-in for the address 2001:db8::7" in output
    assert not AccessAttempt.objects.exists()
    assert unlocked_entries().get().subject == "address:2001:db8::7"


def test_the_command_unlocks_everyone(locked_owner, fail_sign_ins):
    fail_sign_ins("mike", 5, address="192.0.2.5")

    assert "Unlocked sign-in for everyone (6 failed" in run("--all")

    assert not AccessAttempt.objects.exists()
    assert unlocked_entries().get().subject == "all"


def test_the_command_lists_lockouts_without_arguments(locked_owner):
    output = run()
    assert output.startswith("user\tolivia\t5 failures\tunlocks at ")


def test_the_command_with_nothing_to_unlock_says_so(db):
    assert "nothing to do" in run("olivia")
    assert not unlocked_entries().exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (("olivia", "--address", "192.0.2.1"), "Give one of"),
        (("--all", "--address", "192.0.2.1"), "Give one of"),
        (("--address", "192.0.2.300"), "This is not an IP address."),
        (("  ",), "The user name is empty."),
    ],
)
def test_the_command_refuses_unclear_requests(locked_owner, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert AccessAttempt.objects.count() == 5
    assert not unlocked_entries().exists()
