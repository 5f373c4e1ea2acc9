"""Failed sign-ins lock out a user name or an address (django-axes, database
handler), through the real sign-in page."""

import re
from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.utils import timezone

from integrations.models import AuditAction, AuditEntry
from tests.accounts.conftest import LOGIN_URL, sign_in, signed_in

pytestmark = pytest.mark.django_db

OWNER_PASSWORD = "pw-olivia-123456"
LOCKED_WORDS = "Too many failed sign-in attempts"


def lockout_message(response) -> str:
    match = re.search(r'<p class="error" role="alert">(.*?)</p>', response.text, re.S)
    assert match, response.text
    return " ".join(match[1].split())


def test_settings_lock_after_five_failures_for_fifteen_minutes(settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    assert settings.AXES_COOLOFF_TIME == timedelta(minutes=15)
    assert settings.AXES_HANDLER == "axes.handlers.database.AxesDatabaseHandler"
    assert settings.AXES_ENABLED  # on in the test suite: lockouts are tested


def test_four_failures_still_let_the_right_password_in(client, owner, fail_sign_ins):
    responses = fail_sign_ins("olivia", 4)
    assert [r.status_code for r in responses] == [200] * 4
    assert LOCKED_WORDS not in responses[-1].text

    response = sign_in(client, "olivia", OWNER_PASSWORD)

    assert response.status_code == 302
    assert signed_in(client)


def test_user_name_is_locked_after_five_failures_from_different_addresses(
    client, owner, member, fail_sign_ins
):
    for n in range(4):
        fail_sign_ins("olivia", 1, address=f"198.51.100.{n + 1}")
    fifth = fail_sign_ins("olivia", 1, address="198.51.100.5")[0]
    assert fifth.status_code == 429

    response = sign_in(client, "olivia", OWNER_PASSWORD, address="203.0.113.50")

    assert response.status_code == 429
    assert LOCKED_WORDS in response.text
    assert not signed_in(client)
    # Another user name from that address is not affected (the address has 1 failure).
    response = sign_in(client, "mike", "pw-mike-123456", address="203.0.113.50")
    assert response.status_code == 302
    assert signed_in(client)


def test_address_is_locked_after_five_failures_with_different_user_names(
    client, owner, member, fail_sign_ins
):
    for name in ("root", "admin", "mike", "sam", "olivia"):
        fail_sign_ins(name, 1, address="192.0.2.77")

    locked = sign_in(client, "mike", "pw-mike-123456", address="192.0.2.77")
    assert locked.status_code == 429
    assert not signed_in(client)

    # The same user from another address: "mike" has only one failure.
    response = sign_in(client, "mike", "pw-mike-123456", address="192.0.2.78")
    assert response.status_code == 302
    assert signed_in(client)


def test_the_right_password_is_refused_while_locked_and_nothing_else_leaks(
    client, owner, fail_sign_ins
):
    fail_sign_ins("olivia", 5)

    response = sign_in(client, "olivia", OWNER_PASSWORD)

    assert response.status_code == 429
    assert not signed_in(client)
    assert OWNER_PASSWORD not in response.text
    assert "not-the-password" not in response.text


def test_the_lockout_message_says_for_how_long_and_whom_to_ask(
    client, owner, fail_sign_ins
):
    fail_sign_ins("olivia", 5)

    response = sign_in(client, "olivia", OWNER_PASSWORD)

    assert response.templates[0].name == "registration/login.html"
    message = lockout_message(response)
    assert "for this user name or from your address" in message
    assert "locked for 15 minutes" in message
    assert "ask a security admin to unlock it" in message
    # Still the sign-in page, with a form that works once the lockout ends.
    assert 'name="csrfmiddlewaretoken"' in response.text
    assert 'value="/projects/"' in response.text  # `next` is kept


def test_the_message_is_the_same_whether_the_user_name_exists_or_not(
    client, owner, fail_sign_ins
):
    fail_sign_ins("olivia", 5, address="192.0.2.1")
    fail_sign_ins("nobody-by-this-name", 5, address="192.0.2.2")

    existing = sign_in(client, "olivia", "guess", address="192.0.2.1")
    missing = sign_in(client, "nobody-by-this-name", "guess", address="192.0.2.2")

    assert existing.status_code == missing.status_code == 429
    assert lockout_message(existing) == lockout_message(missing)


def test_the_cool_off_ends_the_lockout(client, owner, fail_sign_ins, settings):
    fail_sign_ins("olivia", 5)
    cool_off = settings.AXES_COOLOFF_TIME

    # A minute before the end it still holds...
    AccessAttempt.objects.update(
        attempt_time=timezone.now() - cool_off + timedelta(minutes=1)
    )
    assert sign_in(client, "olivia", OWNER_PASSWORD).status_code == 429
    assert not signed_in(client)

    # ...and once the cool-off has passed since the last failure, it is over.
    AccessAttempt.objects.update(
        attempt_time=timezone.now() - cool_off - timedelta(seconds=1)
    )
    response = sign_in(client, "olivia", OWNER_PASSWORD)
    assert response.status_code == 302
    assert signed_in(client)


def test_a_short_cool_off_setting_is_honoured(client, owner, fail_sign_ins, settings):
    settings.AXES_COOLOFF_TIME = timedelta(minutes=2)
    fail_sign_ins("olivia", 5)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=3))

    assert sign_in(client, "olivia", OWNER_PASSWORD).status_code == 302


def test_attempts_while_locked_do_not_extend_the_lockout(
    client, owner, fail_sign_ins, settings
):
    fail_sign_ins("olivia", 5)
    locked_at = timezone.now() - settings.AXES_COOLOFF_TIME + timedelta(seconds=30)
    AccessAttempt.objects.update(attempt_time=locked_at)

    for _ in range(3):
        assert sign_in(client, "olivia", "still-guessing").status_code == 429

    attempt = AccessAttempt.objects.get()
    assert attempt.failures_since_start == 5
    assert attempt.attempt_time == locked_at


def test_a_lockout_is_audited_once_with_the_address_and_no_password(
    client, owner, fail_sign_ins
):
    fail_sign_ins("olivia", 5, address="203.0.113.9", password="Secret-Guess-42")
    fail_sign_ins("olivia", 3, address="203.0.113.9", password="Secret-Guess-42")
    sign_in(client, "olivia", OWNER_PASSWORD, address="203.0.113.9")

    entries = AuditEntry.objects.filter(action=AuditAction.SIGN_IN_LOCKED_OUT)
    assert entries.count() == 1
    entry = entries.get()
    assert entry.subject == "user:olivia"
    assert "203.0.113.9" in entry.detail
    assert "15 minutes" in entry.detail
    assert entry.actor is None
    assert not entry.succeeded

    for text in ("Secret-Guess-42", OWNER_PASSWORD):
        for row in AuditEntry.objects.values():
            assert text not in str(row)
        for row in AccessAttempt.objects.values():
            assert text not in str(row)


def test_the_audit_subject_is_sanitised(client, fail_sign_ins):
    fail_sign_ins("eve\r\nInjected: yes", 5)

    entry = AuditEntry.objects.get(action=AuditAction.SIGN_IN_LOCKED_OUT)
    assert entry.subject == "user:eve Injected: yes"


def test_signing_in_still_works_with_the_page_and_force_login(client, owner):
    response = client.get(LOGIN_URL)
    assert response.status_code == 200
    assert sign_in(client, "olivia", OWNER_PASSWORD).status_code == 302
    client.logout()
    client.force_login(owner)
    assert client.get("/projects/").status_code == 200


def test_all_four_password_validators_are_on():
    for weak in ("short", "password123", "83749201938475"):
        with pytest.raises(ValidationError):
            validate_password(weak)
    with pytest.raises(ValidationError) as refused:
        validate_password("83749201938475")
    assert any(e.code == "password_entirely_numeric" for e in refused.value.error_list)
    validate_password("correct horse battery staple 7")
