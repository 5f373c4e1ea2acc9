"""The drawers' layout (issue 15, items 2 and 5): sections, the certificate choice,
fields required for some choices, help texts for the admin, and Test Connection's
progress streamed to the drawer's script."""

import json
import re

import pytest
from django.urls import reverse

from integrations.forms.microsoft_azure_mail import MicrosoftAzureMailForm
from integrations.forms.smtp import SmtpForm
from integrations.models import AuditAction, AuditEntry, Integration
from integrations.registry import providers
from integrations.services import integration_test_connection_progress
from tests.integrations.smtp_support import drawer_data
from tests.integrations.test_certificates import make_certificate

FORMS = [MicrosoftAzureMailForm, SmtpForm]
AZURE = "microsoft_azure_mail"
TEST = reverse("integrations:test", args=[AZURE])
NDJSON = "application/x-ndjson"
#: A server setting's name, as an environment variable is written.
SETTING_NAME = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")


@pytest.fixture(scope="module")
def certificate():
    return make_certificate()


# --- sections ----------------------------------------------------------------------


@pytest.mark.parametrize("form_class", FORMS)
def test_every_field_is_in_exactly_one_group(form_class):
    groups = form_class().drawer_sections()
    names = [field.name for group in groups for field in group.fields]
    assert sorted(names) == sorted(form_class.base_fields)
    assert all(group.title for group in groups)  # none left untitled


def test_the_groups_are_the_vendors():
    assert [g.title for g in SmtpForm().drawer_sections()] == [
        "SMTP server",
        "Authentication",
        "Sender and recipients",
        "Email box",
        "Test email",
        "Advanced",
    ]
    assert [g.title for g in MicrosoftAzureMailForm().drawer_sections()] == [
        "App registration",
        "Sender and recipients",
        "Email box",
        "Advanced",
    ]


def test_a_form_without_sections_keeps_every_field():
    from integrations.forms.base import ProviderForm

    class Plain(ProviderForm):
        from django import forms

        a = forms.CharField()
        b = forms.CharField(required=False)
        advanced_fields = ("b",)

    groups = Plain().drawer_sections()
    assert [(g.title, [f.name for f in g.fields], g.advanced) for g in groups] == [
        ("", ["a"], False),
        ("Advanced", ["b"], True),
    ]


@pytest.mark.parametrize("form_class", FORMS)
def test_help_texts_speak_to_the_admin_not_the_operator(form_class):
    for name, field in form_class().fields.items():
        text = str(field.help_text or "")
        assert not SETTING_NAME.search(text), f"{name}: {text}"


def test_every_provider_form_keeps_setting_names_out_of_its_help():
    for provider_cls in providers().values():
        for name, field in provider_cls.form_class().fields.items():
            text = str(field.help_text or "")
            assert not SETTING_NAME.search(text), f"{provider_cls.key}.{name}: {text}"


# --- required for some choices -----------------------------------------------------


def test_conditionally_required_fields_carry_their_rule():
    form = SmtpForm()
    assert form.fields["username"].required_when == "auth_type=basic|oauth_delegated"
    assert form.fields["smtp_host"].required_when == "cloud=other"
    assert "use_certificate!=on" in form.fields["client_secret"].required_when


def test_a_saved_secret_is_never_marked_required():
    form = SmtpForm(saved_secrets={"client_secret", "password"})
    assert not hasattr(form.fields["client_secret"], "required_when")
    assert not hasattr(form.fields["password"], "required_when")
    assert hasattr(form.fields["imap_password"], "required_when")


@pytest.mark.django_db
def test_the_drawer_renders_groups_rules_and_marks(admin_client):
    html = admin_client.get(
        reverse("integrations:tool", args=["smtp"])
    ).content.decode()
    assert "<legend>SMTP server</legend>" in html
    assert (
        'data-show-when="auth_type=none|basic|oauth_app;communication_type=smtp"'
        in html
    )
    assert 'data-required-when="auth_type=basic|oauth_delegated"' in html
    assert (
        '<span class="required" aria-hidden="true" data-required-mark hidden>' in html
    )
    # Help texts are tied to their fields.
    assert 'aria-describedby="id_client_secret_helptext"' in html
    assert 'id="id_client_secret_helptext"' in html


# --- Use a certificate instead of a secret -----------------------------------------


def test_a_tool_saved_with_a_certificate_opens_with_the_choice_ticked():
    form = MicrosoftAzureMailForm(
        initial={
            "certificate": "-----BEGIN CERTIFICATE-----",
            "certificate_thumbprint": "AB",
        }
    )
    assert form["use_certificate"].value() is True
    assert "checked" in str(form["use_certificate"])
    assert MicrosoftAzureMailForm()["use_certificate"].value() is False


@pytest.mark.django_db
def test_unticked_with_a_secret_the_hidden_certificate_fields_do_not_count(
    sandbox, certificate
):
    cert_pem, key_pem, _ = certificate
    data = drawer_data(
        sandbox,
        "oauth_app",
        certificate=cert_pem,
        private_key="not a key at all",  # out of sight: its error is dropped too
    )
    form = SmtpForm(data)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["certificate"] == ""
    assert form.cleaned_data["certificate_thumbprint"] == ""
    assert form.cleaned_data["client_secret"] == sandbox.seed["client_secret"]
    assert "use_certificate" not in form.cleaned_data  # not a setting of its own


@pytest.mark.django_db
def test_ticked_the_certificate_replaces_the_secret(sandbox, certificate):
    cert_pem, key_pem, thumbprint = certificate
    data = drawer_data(
        sandbox,
        "oauth_app",
        client_secret="",
        use_certificate="on",
        certificate=cert_pem,
        private_key=key_pem,
    )
    form = SmtpForm(data)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["certificate_thumbprint"] == thumbprint


@pytest.mark.django_db
def test_ticked_without_a_certificate_nor_a_secret_is_refused(sandbox):
    data = drawer_data(sandbox, "oauth_app", client_secret="", use_certificate="on")
    form = SmtpForm(data)
    assert not form.is_valid()
    assert "client_secret" in form.errors


# --- Test Connection's progress, streamed --------------------------------------------


def events(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


@pytest.mark.django_db
def test_the_progress_streams_every_step_then_the_result(
    admin_client, sandbox, graph_values
):
    response = admin_client.post(
        TEST, graph_values, HTTP_X_REQUESTED_WITH="fetch", HTTP_ACCEPT=NDJSON
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith(NDJSON)
    assert response["Cache-Control"] == "no-store"
    lines = events(response)

    first, last = lines[0], lines[-1]
    assert "Testing connection…" in first["html"]
    assert first["html"].count("data-step=") == 4
    assert 'Tenant found — <span class="step-status">running</span>' in first["html"]
    for update in lines[1:-1]:
        statuses = [step["status"] for step in update["steps"]]
        assert statuses.count("running") <= 1
        assert set(statuses) <= {"passed", "running", "pending"}
    assert last["done"] is True
    assert "Connection successful" in last["html"]
    assert 'Test email accepted — <span class="step-status">passed' in last["html"]
    assert AuditEntry.objects.filter(action=AuditAction.TESTED, succeeded=True).exists()
    assert not Integration.objects.exists()  # testing saves nothing


@pytest.mark.django_db
def test_the_streamed_failure_names_the_step_and_never_the_secret(
    admin_client, sandbox, graph_values
):
    graph_values["client_secret"] = "Wrong8Q~not-the-secret-value-0123456789"
    response = admin_client.post(
        TEST, graph_values, HTTP_X_REQUESTED_WITH="fetch", HTTP_ACCEPT=NDJSON
    )
    body = b"".join(response.streaming_content).decode()
    assert "Wrong8Q~" not in body
    last = json.loads(body.strip().splitlines()[-1])
    assert (
        "Connection failed at step Token acquired for Microsoft Graph" in last["html"]
    )


@pytest.mark.django_db
def test_a_page_that_goes_away_still_gets_its_test_audited(
    admin_user, sandbox, graph_values
):
    form = MicrosoftAzureMailForm(graph_values)
    assert form.is_valid(), form.errors
    progress = integration_test_connection_progress(
        provider_key=AZURE, cleaned_data=form.cleaned_data, actor=admin_user
    )
    report, finished = next(progress)
    assert not finished
    assert [step.status for step in report.steps] == ["pending"] * 4
    progress.close()  # what the stream does when the browser goes away
    [entry] = AuditEntry.objects.filter(action=AuditAction.TESTED)
    assert entry.succeeded
    assert len(sandbox.messages()) == 1  # the test went on to its end


@pytest.mark.django_db
def test_invalid_fields_answer_the_partial_not_a_stream(admin_client, graph_values):
    graph_values["client_id"] = "not-a-guid"
    response = admin_client.post(
        TEST, graph_values, HTTP_X_REQUESTED_WITH="fetch", HTTP_ACCEPT=NDJSON
    )
    assert response.status_code == 400
    assert "Fix these fields before testing" in response.content.decode()
