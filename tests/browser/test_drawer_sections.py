"""The drawers group their fields as the vendors do, show a field only when it
applies and mark a field required when it becomes so (issue 15, item 5)."""

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def legends(drawer):
    return drawer.locator("fieldset.drawer-section:visible > legend")


def required(drawer, label, *, exact=False):
    """Whether the field is marked required: its asterisk shows and it says so."""
    control = drawer.get_by_label(label, exact=exact)
    mark = control.locator(
        "xpath=ancestor::div[contains(@class, 'field')][1]//span[@class='required']"
    )
    marked = mark.count() == 1 and mark.is_visible()
    said = control.get_attribute("aria-required") == "true" or (
        control.get_attribute("required") is not None
    )
    assert marked == said, f"{label}: asterisk {marked}, aria-required {said}"
    return marked


def test_azure_mail_sections_and_the_certificate_choice(page, sign_in, security_admin):
    sign_in(security_admin.username, security_admin.raw_password)
    page.goto("/integrations/notification-tools/microsoft_azure_mail/")
    drawer = page.get_by_role("dialog", name="Microsoft Azure Mail settings")
    expect(legends(drawer)).to_have_text(
        ["App registration", "Sender and recipients", "Email box"]
    )
    expect(drawer.locator("details.advanced > summary")).to_have_text("Advanced")
    expect(drawer.get_by_role("group", name="App registration")).to_contain_text(
        "Tenant ID"
    )

    # A secret by default: no certificate fields between Client Secret and From.
    secret = drawer.get_by_label("Client Secret", exact=True)
    certificate = drawer.get_by_label("Certificate (PEM)")
    choice = drawer.get_by_label("Use a certificate instead of a secret")
    expect(choice).not_to_be_checked()
    expect(secret).to_be_visible()
    expect(certificate).to_be_hidden()
    expect(drawer.get_by_label("Private key (PEM)")).to_be_hidden()
    assert required(drawer, "Client Secret", exact=True)

    choice.check()
    expect(secret).to_be_hidden()
    expect(drawer.get_by_label("Client secret expires")).to_be_hidden()
    expect(certificate).to_be_visible()
    expect(drawer.get_by_label("Private key (PEM)")).to_be_visible()
    expect(drawer.get_by_label("Certificate file")).to_be_visible()
    assert required(drawer, "Certificate (PEM)")
    assert required(drawer, "Private key (PEM)")

    choice.uncheck()
    expect(secret).to_be_visible()
    expect(certificate).to_be_hidden()
    assert required(drawer, "Client Secret", exact=True)


def test_smtp_sections_and_fields_that_apply(page, sign_in, security_admin):
    sign_in(security_admin.username, security_admin.raw_password)
    page.goto("/integrations/notification-tools/smtp/")
    drawer = page.get_by_role("dialog", name="SMTP settings")
    expect(legends(drawer)).to_have_text(
        [
            "SMTP server",
            "Authentication",
            "Sender and recipients",
            "Email box",
            "Test email",
        ]
    )
    auth = drawer.get_by_label("Authentication type")
    cloud = drawer.get_by_label("Cloud")
    endpoint = drawer.get_by_label("Token endpoint")

    # OAuth 2.0 application (the default): Tenant ID, Client ID and Client Secret
    # required, the certificate behind its choice, no user name or password.
    expect(auth).to_have_value("oauth_app")
    assert required(drawer, "Tenant ID")
    assert required(drawer, "Client ID")
    assert required(drawer, "Client Secret", exact=True)
    expect(drawer.get_by_label("Username")).to_be_hidden()
    expect(drawer.get_by_label("Certificate (PEM)")).to_be_hidden()
    drawer.get_by_label("Use a certificate instead of a secret").check()
    expect(drawer.get_by_label("Client Secret", exact=True)).to_be_hidden()
    assert required(drawer, "Certificate (PEM)")

    # SMTP host: filled in by the Microsoft cloud, required for another server.
    assert not required(drawer, "SMTP host")
    cloud.select_option("other")
    assert required(drawer, "SMTP host")
    cloud.select_option("global")

    # Basic: Username and Password required; no OAuth fields nor the choice.
    auth.select_option("basic")
    assert required(drawer, "Username")
    authentication = drawer.get_by_role("group", name="Authentication")
    assert required(authentication, "Password", exact=True)
    expect(drawer.get_by_label("Tenant ID")).to_be_hidden()
    expect(drawer.get_by_label("Use a certificate instead of a secret")).to_be_hidden()
    expect(drawer.get_by_label("Certificate (PEM)")).to_be_hidden()

    # Delegated: the OAuth endpoints only for another server than Microsoft 365;
    # Client Secret whatever the certificate choice said.
    auth.select_option("oauth_delegated")
    expect(drawer.get_by_label("Client Secret", exact=True)).to_be_visible()
    expect(drawer.get_by_label("Certificate (PEM)")).to_be_hidden()
    expect(endpoint).to_be_hidden()
    expect(drawer.get_by_label("Authorization endpoint")).to_be_hidden()
    assert required(drawer, "Tenant ID")
    cloud.select_option("other")
    expect(endpoint).to_be_visible()
    expect(drawer.get_by_label("Authorization endpoint")).to_be_visible()
    assert not required(drawer, "Tenant ID")  # the endpoints may stand in for it
    endpoint.fill("https://login.example.net/token")
    cloud.select_option("global")
    expect(endpoint).to_be_visible()  # it holds a value, which counts: still shown
    endpoint.fill("")
    expect(endpoint).to_be_hidden()

    # The Email box's IMAP server: for SMTP, not for the API (read through Graph).
    drawer.get_by_label("Email box").check()
    imap_host = drawer.locator('[name="imap_host"]')
    expect(imap_host).to_be_visible()
    drawer.get_by_label("Communication type").select_option("api")
    expect(imap_host).to_be_hidden()
    expect(drawer.get_by_role("group", name="SMTP server")).to_be_hidden()
    expect(drawer.get_by_label("Scope")).to_be_hidden()
    drawer.get_by_label("Communication type").select_option("smtp")
    expect(imap_host).to_be_visible()
    expect(drawer.get_by_role("group", name="SMTP server")).to_be_visible()

    # Basic with the Email box on: its email and password are required.
    auth.select_option("basic")
    assert required(drawer.get_by_role("group", name="Email box"), "Email", exact=True)
    expect(drawer.locator('[name="imap_password"]')).to_have_attribute(
        "aria-required", "true"
    )
