"""The audit trail names who did what to which tool, and never a value."""

import pytest
from django.contrib.auth.models import AnonymousUser

from integrations.exceptions import AuthenticationFailed
from integrations.models import AuditAction, AuditEntry
from integrations.services import audit_record

pytestmark = pytest.mark.django_db


def test_an_entry_names_the_actor_and_the_changed_fields(admin_user):
    entry = audit_record(
        provider_key="smtp",
        action=AuditAction.CHANGED,
        actor=admin_user,
        changed_fields=("Password", "From address"),
    )

    entry.refresh_from_db()
    assert (entry.actor, entry.actor_name) == (admin_user, "sec-admin")
    assert entry.changed_fields == ["Password", "From address"]
    assert (entry.succeeded, entry.error_code) == (True, "")
    assert str(entry) == "sec-admin changed smtp"


def test_the_actor_s_name_outlives_the_user(admin_user):
    audit_record(provider_key="smtp", action=AuditAction.TESTED, actor=admin_user)

    admin_user.delete()

    entry = AuditEntry.objects.get()
    assert (entry.actor, entry.actor_name) == (None, "sec-admin")


@pytest.mark.parametrize("actor", [None, AnonymousUser()])
def test_without_a_signed_in_actor_the_system_did_it(actor):
    entry = audit_record(provider_key="smtp", action=AuditAction.TESTED, actor=actor)

    assert (entry.actor, entry.actor_name) == (None, "")
    assert str(entry) == "system tested smtp"


def test_a_failure_is_recorded_by_its_code_only(admin_user):
    error = AuthenticationFailed("AADSTS7000215 secret abc123", code="secret_invalid")

    entry = audit_record(
        provider_key="smtp", action=AuditAction.TESTED, actor=admin_user, error=error
    )

    entry.refresh_from_db()
    assert (entry.succeeded, entry.error_code) == (False, "secret_invalid")
    assert "abc123" not in str(AuditEntry.objects.values().get())
