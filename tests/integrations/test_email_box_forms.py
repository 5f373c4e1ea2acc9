"""The drawer's Email box (issue 13): its fields in the SMTP and Microsoft Azure Mail
forms, their checks and show-rules, the write-only password, and the delegated grant
bound to the switch."""

import pytest

from integrations.forms.microsoft_azure_mail import MicrosoftAzureMailForm
from integrations.forms.smtp import SmtpForm
from integrations.models import AuditEntry, Integration
from integrations.providers.mailbox import GraphReader, ImapLogin, ImapOAuth
from integrations.providers.microsoft_azure_mail import MicrosoftAzureMailProvider
from integrations.providers.smtp import SmtpProvider
from tests.integrations.test_smtp_forms import APP, BASIC, GOOD, OTHER_BASIC

EMAIL_BOX = {
    "email_box": "on",
    "imap_host": "",
    "imap_port": "",
    "imap_security": "",
    "imap_username": "",
    "imap_password": "",
}
BASIC_BOX = {
    **BASIC,
    **EMAIL_BOX,
    "imap_username": "alerts@contoso.com",
    "imap_password": "pw-imap-1",
}
AZURE = {
    "tenant_id": "b5a0c1e2-3f47-4d8a-9c6b-2e1f0a9d8c7b",
    "client_id": "4e9d2a71-8c3b-4f05-a6d2-91b7e0c3f58a",
    "client_secret": "s3cret",
    "sender": "alerts@contoso.com",
    "recipients": "security-team@contoso.com",
    "cloud": "global",
    "secret_expires_on": "",
}


def smtp_form(base, saved_secrets=(), **overrides):
    form = SmtpForm({**base, **overrides}, saved_secrets=saved_secrets)
    form.is_valid()
    return form


def cleaned(base, **overrides):
    form = smtp_form(base, **overrides)
    assert not form.errors, form.errors
    return form.cleaned_data


# --- the switch ------------------------------------------------------------------------


def test_the_switch_is_labelled_email_box_in_both_drawers():
    assert SmtpForm.base_fields["email_box"].label == "Email box"
    assert MicrosoftAzureMailForm.base_fields["email_box"].label == "Email box"


def test_off_is_stored_as_no_value_and_on_as_true():
    assert cleaned(BASIC)["email_box"] is None
    assert cleaned(BASIC_BOX)["email_box"] is True


def test_the_fields_it_reveals_are_hidden_while_it_is_off():
    rendered = str(SmtpForm())
    shown = {
        name: SmtpForm.base_fields[name].widget.attrs.get("data_show_when", "")
        for name in ("imap_host", "imap_port", "imap_security")
    }
    # Not for delegated OAuth 2.0 over the API, which reads through Graph.
    assert shown == dict.fromkeys(
        shown,
        "email_box=on&auth_type=none|basic|oauth_app;"
        "email_box=on&communication_type=smtp",
    )
    assert (
        SmtpForm.base_fields["imap_username"].widget.attrs["data_show_when"]
        == "email_box=on&auth_type=none|basic|oauth_app"
    )
    assert (
        SmtpForm.base_fields["imap_password"].widget.attrs["data_show_when"]
        == "email_box=on&auth_type=none|basic"
    )
    # The checkbox is posted as "on" (no value attribute: the browser's default).
    assert 'type="checkbox" name="email_box"' in rendered
    assert (
        MicrosoftAzureMailForm.base_fields["mailbox_address"].widget.attrs[
            "data_show_when"
        ]
        == "email_box=on"
    )


def test_the_drawer_script_reads_an_unchecked_checkbox_as_off():
    from pathlib import Path

    from django.conf import settings

    script = (Path(settings.BASE_DIR) / "static/js/drawer.js").read_text()
    # The fallback lookup (for text inputs) must not find the checkbox itself,
    # whose value is "on" whether it is checked or not.
    assert ':not([type="checkbox"])' in script


def test_the_cloud_presets_fill_the_imap_host_too():
    import json

    presets = json.loads(SmtpForm().fields["cloud"].widget.attrs["data-presets"])
    assert presets["global"]["imap_host"] == "outlook.office365.com"
    assert presets["usgov_high"]["imap_host"] == "outlook.office365.us"
    assert presets["china"]["imap_host"] == "partner.outlook.cn"


# --- host, port, security -------------------------------------------------------------


def test_host_port_and_security_default_to_the_clouds_imap_over_tls():
    data = cleaned(BASIC_BOX)
    assert data["imap_host"] == "outlook.office365.com"
    assert data["imap_port"] == 993
    assert data["imap_security"] == "ssl"
    assert cleaned(BASIC_BOX, cloud="usgov_dod")["imap_host"] == (
        "outlook-dod.office365.us"
    )


def test_starttls_defaults_to_port_143():
    data = cleaned(BASIC_BOX, imap_security="starttls")
    assert data["imap_port"] == 143


def test_host_is_required_for_another_server():
    form = smtp_form({**OTHER_BASIC, **BASIC_BOX, "cloud": "other"})
    assert form.errors["imap_host"] == [
        "Enter the host name of the mailbox's IMAP server."
    ]
    data = cleaned(
        {**OTHER_BASIC, **BASIC_BOX, "cloud": "other"},
        imap_host="imap.example.org",
        imap_username="alerts",
    )
    assert data["imap_host"] == "imap.example.org"


@pytest.mark.parametrize(
    "host", ["imap.example.org:993", "https://imap.example.org", "a b", "<x>"]
)
def test_host_must_be_a_host_name(host):
    assert "imap_host" in smtp_form(BASIC_BOX, imap_host=host).errors


@pytest.mark.parametrize("host", ["169.254.169.254", "0.0.0.0", "224.0.0.1"])
def test_host_link_local_metadata_and_multicast_are_never_allowed(host, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    (error,) = smtp_form(BASIC_BOX, imap_host=host).errors["imap_host"]
    assert "never allowed" in error


def test_host_private_address_is_refused_unless_allowed(settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
    settings.OUTBOUND_ALLOWED_HOSTS = []
    settings.M365_IMAP_HOST = ""
    (error,) = smtp_form(BASIC_BOX, imap_host="10.1.2.3").errors["imap_host"]
    assert "OUTBOUND_ALLOW_PRIVATE_NETWORKS" in error
    settings.OUTBOUND_ALLOWED_HOSTS = ["10.0.0.0/8"]
    assert cleaned(BASIC_BOX, imap_host="10.1.2.3")["imap_host"] == "10.1.2.3"


def test_host_configured_by_the_operator_is_trusted(settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
    settings.M365_IMAP_HOST = "127.0.0.1"
    assert cleaned(BASIC_BOX, imap_host="127.0.0.1")["imap_host"] == "127.0.0.1"


@pytest.mark.parametrize("port", ["993", "143"])
def test_the_imap_ports_are_allowed(port):
    assert cleaned(BASIC_BOX, imap_port=port)["imap_port"] == int(port)


@pytest.mark.parametrize("port", ["25", "587", "8993", "22"])
def test_other_ports_are_refused_unless_added(port, settings):
    settings.IMAP_ALLOWED_PORTS_EXTRA = []
    settings.M365_IMAP_PORT = 0
    (error,) = smtp_form(BASIC_BOX, imap_port=port).errors["imap_port"]
    assert "IMAP_ALLOWED_PORTS_EXTRA" in error
    settings.IMAP_ALLOWED_PORTS_EXTRA = [int(port)]
    assert cleaned(BASIC_BOX, imap_port=port)["imap_port"] == int(port)


def test_the_operators_imap_port_is_allowed(settings):
    settings.IMAP_ALLOWED_PORTS_EXTRA = []
    settings.M365_IMAP_PORT = 8993
    assert cleaned(BASIC_BOX, imap_port="8993")["imap_port"] == 8993


@pytest.mark.parametrize("port", ["0", "65536", "-1", "x"])
def test_port_must_be_a_port_number(port):
    assert "imap_port" in smtp_form(BASIC_BOX, imap_port=port).errors


def test_security_must_be_an_offered_value():
    assert "imap_security" in smtp_form(BASIC_BOX, imap_security="none").errors


def test_nothing_is_checked_while_the_switch_is_off():
    assert cleaned(BASIC, imap_port="22", imap_host="", imap_username="") is not None


# --- sign-in ------------------------------------------------------------------------------


def test_basic_needs_the_email_and_the_password_with_clear_words():
    errors = smtp_form(BASIC_BOX, imap_username="", imap_password="").errors
    assert errors["imap_username"] == [
        "Enter the Email box's email address (it signs in to IMAP)."
    ]
    assert errors["imap_password"] == [
        "Enter the Email box's password (it signs in to IMAP)."
    ]


def test_the_saved_password_is_kept_when_left_blank():
    form = smtp_form(
        BASIC_BOX,
        saved_secrets={"password", "imap_password"},
        imap_password="",
        password="",
    )
    assert form.is_valid(), form.errors


def test_exchange_online_needs_an_email_address():
    (error,) = smtp_form(BASIC_BOX, imap_username="alerts").errors["imap_username"]
    assert "email address" in error


def test_another_server_may_use_a_plain_user_name_without_spaces():
    base = {**OTHER_BASIC, **BASIC_BOX, "cloud": "other", "imap_host": "imap.corp.org"}
    assert cleaned(base, imap_username="DOMAIN\\alerts")["imap_username"] == (
        "DOMAIN\\alerts"
    )
    assert "imap_username" in smtp_form(base, imap_username="a b").errors


def test_line_breaks_are_refused():
    for field in ("imap_username", "imap_password", "imap_host"):
        value = BASIC_BOX[field] or "outlook.office365.com"
        errors = smtp_form(BASIC_BOX, **{field: value + "\r\nA2 LOGOUT"}).errors
        assert field in errors, field


def test_application_auth_needs_no_password_and_the_mailbox_is_optional():
    data = cleaned({**APP, **EMAIL_BOX})
    assert data["imap_username"] == ""
    assert cleaned({**APP, **EMAIL_BOX}, imap_username="shared@contoso.com")
    (error,) = smtp_form({**APP, **EMAIL_BOX}, imap_username="shared").errors[
        "imap_username"
    ]
    assert "leave blank for the From address" in error


def test_delegated_needs_nothing_more():
    assert cleaned({**GOOD, **EMAIL_BOX})["email_box"] is True


def test_delegated_api_reads_through_graph_and_ignores_the_imap_fields():
    data = cleaned({**GOOD, **EMAIL_BOX, "communication_type": "api"}, imap_port="22")
    assert data["email_box"] is True


def test_the_password_is_write_only_and_encrypted():
    assert "imap_password" in SmtpProvider.secret_fields
    rendered = str(SmtpForm({**BASIC_BOX, "imap_password": "do-not-render-imap"}))
    assert "do-not-render-imap" not in rendered
    saved = SmtpForm(BASIC_BOX, saved_secrets={"imap_password"})
    assert "Saved (hidden)" in str(saved["imap_password"])


@pytest.mark.django_db
def test_the_password_is_stored_encrypted_with_the_secrets(admin_user):
    from django.db import connection

    from integrations.services import integration_save

    integration_save(
        provider_key="smtp", cleaned_data=cleaned(BASIC_BOX), actor=admin_user
    )
    row = Integration.objects.get(provider="smtp")
    assert row.secrets["imap_password"] == "pw-imap-1"
    assert "imap_password" not in row.config
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM integrations_integration")
        assert "pw-imap-1" not in repr(cursor.fetchall())


# --- Microsoft Azure Mail ----------------------------------------------------------------


def test_azure_mailbox_is_optional_and_one_address():
    form = MicrosoftAzureMailForm({**AZURE, "email_box": "on"})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["mailbox_address"] == ""
    form = MicrosoftAzureMailForm(
        {**AZURE, "email_box": "on", "mailbox_address": "a@x.com, b@x.com"}
    )
    assert "mailbox_address" in form.errors


def test_azure_reads_the_from_mailbox_or_the_one_named():
    config = {**AZURE, "recipients": [AZURE["recipients"]], "email_box": True}
    reader = MicrosoftAzureMailProvider(config=config, secrets={}).mailbox_reader()
    assert isinstance(reader, GraphReader)
    assert reader.mailbox == reader.user == "alerts@contoso.com"
    config["mailbox_address"] = "bounces@contoso.com"
    reader = MicrosoftAzureMailProvider(config=config, secrets={}).mailbox_reader()
    assert reader.mailbox == "bounces@contoso.com"
    config["email_box"] = None
    assert (
        MicrosoftAzureMailProvider(config=config, secrets={}).mailbox_reader() is None
    )


# --- the provider's reader and scopes ------------------------------------------------------


def provider(base, **overrides):
    return SmtpProvider(config=cleaned(base, **overrides), secrets={"x": "y"})


def test_basic_signs_in_with_the_email_box_credentials():
    p = SmtpProvider(config=cleaned(BASIC_BOX), secrets={"imap_password": "pw"})
    auth = p.imap_auth()
    assert auth == ImapLogin("alerts@contoso.com", "pw")
    assert "pw" not in repr(auth)


def test_application_reads_the_from_mailbox_by_default():
    auth = provider({**APP, **EMAIL_BOX}).imap_auth()
    assert isinstance(auth, ImapOAuth)
    assert auth.user == APP["sender"]
    assert auth.claim == ("roles", ("IMAP.AccessAsApp",))
    other = provider({**APP, **EMAIL_BOX}, imap_username="shared@contoso.com")
    assert other.imap_auth().user == "shared@contoso.com"


def test_microsoft_hosts_are_read_at_the_operators_imap_host(settings):
    settings.M365_IMAP_HOST = "127.0.0.1"
    settings.M365_IMAP_PORT = 8993
    assert provider(BASIC_BOX).imap_server == ("127.0.0.1", 8993)
    other = {**OTHER_BASIC, **BASIC_BOX, "cloud": "other"}
    assert provider(
        other, imap_host="imap.example.org", imap_username="u"
    ).imap_server == (
        "imap.example.org",
        993,
    )


def test_delegated_scopes_gain_the_email_boxs_when_it_is_on():
    imap = "https://outlook.office.com/IMAP.AccessAsUser.All"
    assert imap not in provider(GOOD).delegated_scopes
    assert provider({**GOOD, **EMAIL_BOX}).delegated_scopes == [
        "https://outlook.office.com/SMTP.Send",
        imap,
    ]
    api = {**GOOD, **EMAIL_BOX, "communication_type": "api"}
    assert provider(api).delegated_scopes == [
        "https://graph.microsoft.com/Mail.Send",
        "https://graph.microsoft.com/Mail.Read",
    ]
    reader = provider(api).mailbox_reader()
    assert isinstance(reader, GraphReader) and reader.user is None  # /me


def test_test_connection_ends_with_mailbox_readable_only_when_on():
    assert "mailbox" not in [s.key for s in provider(BASIC).new_report().steps]
    steps = provider(BASIC_BOX).new_report().steps
    assert (steps[-1].key, steps[-1].label) == ("mailbox", "Mailbox readable")
    api = provider({**GOOD, **EMAIL_BOX, "communication_type": "api"})
    assert [s.key for s in api.new_report().steps] == ["token", "graph_send", "mailbox"]
    azure = MicrosoftAzureMailProvider(config={**AZURE, "email_box": True}, secrets={})
    assert azure.new_report().steps[-1].label == "Mailbox readable"


# --- the delegated grant is bound to the switch -------------------------------------------

GRANT = {"access_token": "at", "refresh_token": "rt", "token_expires_at": 1.0}


@pytest.fixture
def delegated_row(db):
    """A delegated SMTP tool saved before the Email box existed (no such key)."""
    config = {**cleaned(GOOD)}
    config.pop("email_box")
    for name in [n for n in config if n.startswith("imap_")]:
        config.pop(name)
    config.pop("client_secret", None)
    config.pop("test_email", None)
    config.pop("redirect_url", None)
    return Integration.objects.create(
        provider="smtp",
        config=config,
        secrets={"client_secret": "s3cret", **GRANT},
    )


def save(admin_user, data, row):
    from integrations.services import integration_save

    form = SmtpForm(data, saved_secrets=set(row.secrets))
    assert form.is_valid(), form.errors
    integration_save(
        provider_key="smtp", cleaned_data=form.cleaned_data, actor=admin_user
    )
    row.refresh_from_db()
    return row


def test_saving_a_tool_from_before_the_switch_keeps_its_grant(
    admin_user, delegated_row
):
    row = save(admin_user, {**GOOD, "client_secret": ""}, delegated_row)
    assert row.secrets["refresh_token"] == "rt"
    entry = AuditEntry.objects.filter(provider="smtp").latest("pk")
    assert "Email box" not in entry.changed_fields


def test_switching_the_email_box_drops_the_grant(admin_user, delegated_row):
    row = save(admin_user, {**GOOD, **EMAIL_BOX, "client_secret": ""}, delegated_row)
    assert not set(GRANT) & set(row.secrets)
    assert row.secrets["client_secret"] == "s3cret"
    entry = AuditEntry.objects.filter(provider="smtp").latest("pk")
    assert "Email box" in entry.changed_fields


def test_audit_names_the_email_box_fields_unambiguously():
    assert SmtpProvider.field_label("imap_host") == "Email box host name"
    assert SmtpProvider.field_label("imap_password") == "Email box password"
    assert SmtpProvider.field_label("email_box") == "Email box"
