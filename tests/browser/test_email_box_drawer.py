"""The SMTP drawer's Email box in a real browser: the switch shows its fields (and
the sign-in fields that fit the Authentication type), and Test Connection ends
with "Mailbox readable"."""

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_email_box_shows_its_fields_and_test_connection_reads_the_mailbox(
    page, sign_in, security_admin, sandbox
):
    seed = sandbox.seed
    sign_in(security_admin.username, security_admin.raw_password)
    page.goto("/integrations/notification-tools/smtp/")
    drawer = page.get_by_role("dialog", name="SMTP settings")
    host = drawer.locator('[name="imap_host"]')
    email = drawer.locator('[name="imap_username"]')
    password = drawer.locator('[name="imap_password"]')

    expect(host).to_be_hidden()
    drawer.get_by_label("Email box").check()
    expect(host).to_be_visible()
    expect(host).to_have_value("outlook.office365.com")
    expect(drawer.locator('[name="imap_port"]')).to_have_value("993")
    drawer.get_by_label("Authentication type").select_option("basic")
    expect(email).to_be_visible()
    expect(password).to_be_visible()
    drawer.get_by_label("Authentication type").select_option("oauth_delegated")
    expect(email).to_be_hidden()
    expect(password).to_be_hidden()
    drawer.get_by_label("Email box").uncheck()
    expect(host).to_be_hidden()

    drawer.get_by_label("Email box").check()
    drawer.get_by_label("Authentication type").select_option("oauth_app")
    expect(email).to_be_visible()
    expect(password).to_be_hidden()
    drawer.get_by_label("From address").fill(seed["sender"])
    drawer.get_by_label("To", exact=True).fill(seed["recipient"])
    drawer.get_by_label("Tenant ID").fill(seed["tenant_id"])
    drawer.get_by_label("Client ID").fill(seed["client_id"])
    drawer.get_by_label("Client Secret", exact=True).fill(seed["client_secret"])
    drawer.get_by_role("button", name="Test", exact=True).click()

    result = drawer.locator("#test-result")
    expect(result.get_by_text("Connection successful")).to_be_visible()
    expect(
        result.locator("li.step-passed", has_text="Mailbox readable")
    ).to_be_visible()
