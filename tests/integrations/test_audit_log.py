"""The audit log as a security admin reads it (issue 15, item 10): failures in words,
timestamps on one line, and "Fields changed" naming only values that changed."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from integrations.forms.smtp import SmtpForm
from integrations.models import AuditAction, AuditEntry, Integration
from integrations.services import integration_save
from integrations.services.audit import audit_record
from integrations.troubleshooting import troubleshooting_for
from tests.integrations.services.test_tools import KEY, cleaned
from tests.integrations.test_smtp_forms import APP, BASIC

pytestmark = pytest.mark.django_db
LOG = reverse("integrations:audit_log")


def log_page(client, user) -> str:
    client.force_login(user)
    response = client.get(LOG)
    assert response.status_code == 200
    return response.content.decode()


def result_cells(body: str) -> list[str]:
    return [
        re.sub(r"<[^>]+>", "", cell).strip()
        for cell in re.findall(r'<td class="result-cell">(.*?)</td>', body, re.S)
    ]


# --- codes become words -----------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "secret_invalid",
        "recipient_refused",
        "too_many_failed_sign_ins",
        "address_refused",
    ],
)
def test_a_failure_shows_its_troubleshooting_title_not_its_code(
    client, security_admin, code
):
    audit_record(
        provider_key=KEY,
        action=AuditAction.TESTED,
        succeeded=False,
        error_code=code,
    )
    body = log_page(client, security_admin)
    title = str(troubleshooting_for(code).title)
    assert result_cells(body) == [f"Failed: {title}".replace("'", "&#x27;")]
    assert f"({code})" not in body


def test_the_known_codes_of_audit_entries_have_words_of_their_own():
    for code in ("recipient_refused", "too_many_failed_sign_ins"):
        assert troubleshooting_for(code).title != troubleshooting_for("").title


def test_an_unknown_code_reads_as_an_unexpected_answer(client, security_admin):
    audit_record(
        provider_key=KEY,
        action=AuditAction.TESTED,
        succeeded=False,
        error_code="no_such_code_<b>",
    )
    body = log_page(client, security_admin)
    assert result_cells(body) == ["Failed: Unexpected answer"]
    assert "no_such_code" not in body


def test_success_and_a_failure_without_a_code(client, security_admin):
    audit_record(provider_key=KEY, action=AuditAction.CHANGED)
    audit_record(provider_key=KEY, action=AuditAction.TESTED, succeeded=False)
    assert result_cells(log_page(client, security_admin)) == ["Failed", "OK"]


def test_a_lockout_reads_in_words(client, security_admin):
    from accounts.services import sign_in_lockout_record

    sign_in_lockout_record(username="eve", ip_address="192.0.2.1")
    assert result_cells(log_page(client, security_admin)) == [
        "Failed: Too many failed sign-ins"
    ]


# --- timestamps -------------------------------------------------------------------------


def test_timestamps_are_one_time_element_that_does_not_wrap(client, security_admin):
    audit_record(provider_key=KEY, action=AuditAction.CHANGED)
    body = log_page(client, security_admin)
    cell = re.search(r'<td class="when">(.*?)</td>', body).group(1)
    assert re.fullmatch(
        r'<time datetime="[^"]+" title="[^"]+">\d{4}-\d\d-\d\d \d\d:\d\d UTC</time>',
        cell,
    )
    css = Path(settings.BASE_DIR, "static/css/app.css").read_text()
    assert re.search(r"\.when[^{]*\{[^}]*white-space:\s*nowrap", css)


# --- fields changed ---------------------------------------------------------------------


def latest() -> AuditEntry:
    return AuditEntry.objects.order_by("-pk").first()


def test_activation_names_only_the_fields_given_a_value(admin_user):
    integration_save(provider_key=KEY, cleaned_data=cleaned(), actor=admin_user)
    # In the form's field order (the drawer's sections), the secret last.
    assert latest().changed_fields == [
        "Tenant ID",
        "Client ID",
        "Cloud",
        "From",
        "To",
        "Client Secret",
    ]


def test_saving_again_with_a_blank_secret_and_blank_fields_changes_nothing(
    admin_user,
):
    integration_save(provider_key=KEY, cleaned_data=cleaned(), actor=admin_user)
    integration_save(
        provider_key=KEY, cleaned_data=cleaned(client_secret=""), actor=admin_user
    )
    assert latest().action == AuditAction.CHANGED
    assert latest().changed_fields == []


def test_a_new_secret_value_is_a_change_and_the_same_one_is_not(admin_user):
    integration_save(provider_key=KEY, cleaned_data=cleaned(), actor=admin_user)
    integration_save(
        provider_key=KEY,
        cleaned_data=cleaned(client_secret="first-secret-value"),
        actor=admin_user,
    )
    assert latest().changed_fields == []
    integration_save(
        provider_key=KEY,
        cleaned_data=cleaned(client_secret="second-secret-value"),
        actor=admin_user,
    )
    assert latest().changed_fields == ["Client Secret"]


def test_clearing_a_value_is_a_change(admin_user):
    integration_save(
        provider_key=KEY,
        cleaned_data=cleaned(allowed_recipient_domains="contoso.onmicrosoft.com"),
        actor=admin_user,
    )
    integration_save(provider_key=KEY, cleaned_data=cleaned(), actor=admin_user)
    assert latest().changed_fields == ["Allowed recipient domains"]


def smtp_save(admin_user, data):
    row = Integration.objects.filter(provider="smtp").first()
    form = SmtpForm(data, saved_secrets=set(row.secrets) if row else set())
    assert form.is_valid(), form.errors
    integration_save(
        provider_key="smtp", cleaned_data=form.cleaned_data, actor=admin_user
    )
    return latest().changed_fields


def test_smtp_fields_left_blank_are_not_listed(admin_user):
    first = smtp_save(admin_user, BASIC)
    assert "Password" in first and "Username" in first
    for blank in ("Tenant ID", "Client ID", "Certificate (PEM)", "Token endpoint"):
        assert blank not in first

    # Switching to OAuth: the fields that got or lost a value, nothing left blank.
    switched = smtp_save(admin_user, {**APP, "client_secret": "s3cret"})
    assert {"Authentication type", "Tenant ID", "Client ID", "Client Secret"} <= set(
        switched
    )
    assert "Username" in switched  # it had a value, it has none now
    assert "Certificate thumbprint" not in switched
    assert "Certificate expires" not in switched

    # The same values again, secret left blank: nothing changed.
    assert smtp_save(admin_user, {**APP, "client_secret": ""}) == []
