"""The SMTP drawer: card, Test, Validate and Save; and secrets that never come back out."""

import logging
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.urls import reverse

from integrations.models import AuditEntry, Integration
from tests.integrations.smtp_support import drawer_data, register_redirect_uri
from tests.sandbox.m365 import Control, sign_in, trusted_session

pytestmark = pytest.mark.django_db


@pytest.fixture
def ctl(sandbox):
    with trusted_session(sandbox.ca_path) as http:
        yield Control(sandbox, http)


def login(django_user_model, email="secadmin@contoso.onmicrosoft.com", name="secadmin"):
    admin = django_user_model.objects.create_superuser(name, email, "irrelevant-pass-1")
    client = Client()
    client.force_login(admin)
    return client


@pytest.fixture
def client_admin(django_user_model, sandbox):
    return login(django_user_model)


def test_card_and_drawer_have_the_fields(client_admin, settings):
    settings.SMTP_ALLOW_INSECURE = False
    page = client_admin.get(reverse("integrations:notification_tools")).content.decode()
    assert "<h2>SMTP</h2>" in page

    drawer = client_admin.get(
        reverse("integrations:tool", args=["smtp"])
    ).content.decode()
    for label in [
        "SMTP host",
        "SMTP port",
        "Security",
        "Minimum TLS version",
        "From address",
        "Sender name",
        "To",
        "Authentication type",
        "Username",
        "Password",
        "Tenant ID",
        "Client ID",
        "Client Secret",
        "Authorization endpoint",
        "Token endpoint",
        "Scope",
        "Redirect URL",
        "Communication type",
        "Test email address",
    ]:
        assert f">{label}" in drawer, label
    assert "Validate and Save" in drawer and "Save &amp; Authorize" in drawer
    assert 'formtarget="_blank"' in drawer
    assert "smtp.office365.us" in drawer  # the Cloud presets
    assert "None (plain text)" not in drawer
    settings.SMTP_ALLOW_INSECURE = True
    drawer = client_admin.get(
        reverse("integrations:tool", args=["smtp"])
    ).content.decode()
    assert "None (plain text)" in drawer


def test_redirect_url_is_read_only_with_a_copy_button(client_admin, settings):
    settings.SITE_URL = "https://appsec.example.com"

    drawer = client_admin.get(
        reverse("integrations:tool", args=["smtp"])
    ).content.decode()

    (field,) = re.findall(r"<input[^>]*\bid=\"id_redirect_url\"[^>]*>", drawer)
    assert re.search(r"\sreadonly[\s>]", field) and re.search(r"\sdisabled[\s>]", field)
    assert 'value="https://appsec.example.com/integrations/oauth/callback/"' in field
    assert (
        '<button type="button" class="secondary copy" data-copy="id_redirect_url">'
        "Copy</button>"
    ) in drawer


def test_a_posted_redirect_url_is_ignored(sandbox, client_admin, ctl, settings):
    settings.SITE_URL = "http://testserver"
    callback = "http://testserver/integrations/oauth/callback/"
    register_redirect_uri(ctl, callback)
    data = drawer_data(
        sandbox, "oauth_delegated", redirect_url="https://attacker.example/steal"
    )

    response = client_admin.post(reverse("integrations:authorize", args=["smtp"]), data)

    assert response.status_code == 302, response.content.decode()[:2000]
    query = parse_qs(urlsplit(response["Location"]).query)
    assert query["redirect_uri"] == [callback]
    assert "redirect_url" not in Integration.objects.get(provider="smtp").config


def test_validate_and_save_sends_to_the_admin_and_saves(sandbox, client_admin):
    response = client_admin.post(
        reverse("integrations:validate", args=["smtp"]),
        drawer_data(sandbox, "oauth_app"),
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    assert Integration.objects.get(provider="smtp").state == "active"
    assert sandbox.messages(to="secadmin@contoso.onmicrosoft.com")


def test_validate_and_save_with_basic_auth(sandbox, client_admin):
    response = client_admin.post(
        reverse("integrations:tool", args=["smtp"]), drawer_data(sandbox, "basic")
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    row = Integration.objects.get(provider="smtp")
    assert row.secrets["password"] == sandbox.seed["password"]
    assert "password" not in row.config and "test_email" not in row.config


def test_failed_validation_saves_nothing(sandbox, client_admin):
    response = client_admin.post(
        reverse("integrations:validate", args=["smtp"]),
        drawer_data(sandbox, "basic", password="wrong-password"),
    )

    body = response.content.decode()
    assert response.status_code == 400
    assert "nothing was saved" in body
    assert "SMTP authentication unsuccessful (535 5.7.3)" in body
    assert not Integration.objects.filter(provider="smtp").exists()


def test_admin_without_email_is_told_to_set_one(sandbox, django_user_model):
    client = login(django_user_model, email="", name="noemail")

    response = client.post(
        reverse("integrations:validate", args=["smtp"]),
        drawer_data(sandbox, "oauth_app"),
    )

    assert response.status_code == 400
    assert "Your account has no email address" in response.content.decode()
    assert not Integration.objects.filter(provider="smtp").exists()


def test_test_button_shows_each_step(sandbox, client_admin):
    data = drawer_data(sandbox, "oauth_app", test_email=sandbox.seed["recipient"])

    result = client_admin.post(
        reverse("integrations:test", args=["smtp"]),
        data,
        headers={"X-Requested-With": "fetch"},
    ).content.decode()

    assert "Connection successful" in result
    for label in [
        "Connect to the SMTP server",
        "STARTTLS",
        "Authenticate",
        "Sender accepted",
        "Message accepted",
    ]:
        assert label in result
    assert not Integration.objects.filter(provider="smtp").exists()


# --- sentinel secrets ------------------------------------------------------------------

SENTINEL_PASSWORD = "SENTINEL-pw-4b1d-never-shown"


def test_secrets_never_appear_in_pages_logs_errors_or_audit(
    sandbox, client_admin, ctl, settings, caplog
):
    caplog.set_level(logging.DEBUG)
    settings.SITE_URL = "http://testserver"
    register_redirect_uri(ctl, "http://testserver/integrations/oauth/callback/")
    http = ctl.http
    secret = sandbox.seed["client_secret"]
    pages = []

    # A wrong password, through Test and Validate and Save.
    bad = drawer_data(sandbox, "basic", password=SENTINEL_PASSWORD)
    pages.append(client_admin.post(reverse("integrations:test", args=["smtp"]), bad))
    pages.append(
        client_admin.post(reverse("integrations:validate", args=["smtp"]), bad)
    )
    # A delegated authorization, then the drawer, the Test result, the audit log.
    data = drawer_data(sandbox, "oauth_delegated")
    start = client_admin.post(reverse("integrations:authorize", args=["smtp"]), data)
    params = sign_in(
        http, start["Location"], sandbox.seed["user"], sandbox.seed["password"]
    )
    pages.append(client_admin.get(reverse("integrations:oauth_callback"), params))
    pages.append(
        client_admin.get(reverse("integrations:oauth_callback"), params)
    )  # replay
    pages.append(client_admin.get(reverse("integrations:tool", args=["smtp"])))
    pages.append(
        client_admin.post(
            reverse("integrations:test", args=["smtp"]), {**data, "client_secret": ""}
        )
    )
    pages.append(client_admin.get(reverse("integrations:audit_log")))
    pages.append(client_admin.get(reverse("integrations:notification_tools")))

    row = Integration.objects.get(provider="smtp")
    sentinels = [
        SENTINEL_PASSWORD,
        secret,
        sandbox.seed["password"],
        row.secrets["access_token"],
        row.secrets["refresh_token"],
        params["code"],
    ]
    texts = [p.content.decode() for p in pages]
    texts.append("\n".join(r.getMessage() for r in caplog.records))
    texts.append(repr(list(AuditEntry.objects.values())))
    for text in texts:
        for sentinel in sentinels:
            assert sentinel not in text
