"""A security admin sets up SMTP with delegated OAuth 2.0 in a real browser: Save &
Authorize opens the sandbox's sign-in in a new tab, the admin signs in and accepts,
the settings show "Authorized", and a test email reaches the sandbox mailbox."""

import pytest
from playwright.sync_api import expect

from tests.integrations.smtp_support import register_redirect_uri
from tests.sandbox.m365 import Control, trusted_session

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def smtp_oauth_page(browser, live_server):
    """A page whose context also accepts the sandbox's local CA (its sign-in page)."""
    context = browser.new_context(
        base_url=live_server.url,
        ignore_https_errors=True,
        permissions=["clipboard-read", "clipboard-write"],
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


def test_admin_authorizes_delegated_smtp_and_the_test_email_arrives(
    smtp_oauth_page, security_admin, sandbox, live_server, settings
):
    page = smtp_oauth_page
    seed = sandbox.seed
    settings.SITE_URL = live_server.url
    callback = f"{live_server.url}/integrations/oauth/callback/"
    with trusted_session(sandbox.ca_path) as http:
        register_redirect_uri(Control(sandbox, http), callback)

    page.goto("/accounts/login/")
    page.get_by_label("User name").fill(security_admin.username)
    page.get_by_label("Password").fill(security_admin.raw_password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()

    page.goto("/integrations/notification-tools/")
    card = page.locator("li.tool-card", has_text="SMTP")
    card.get_by_role("link", name="Activate").click()
    drawer = page.get_by_role("dialog", name="SMTP settings")
    expect(drawer.get_by_label("SMTP host")).to_have_value("smtp.office365.com")
    expect(drawer.get_by_label("SMTP port")).to_have_value("587")
    drawer.get_by_label("Authentication type").select_option("oauth_delegated")
    drawer.get_by_label("From address").fill(seed["user"])
    drawer.get_by_label("To", exact=True).fill(seed["recipient"])
    drawer.get_by_label("Username").fill(seed["user"])
    drawer.get_by_label("Tenant ID").fill(seed["tenant_id"])
    drawer.get_by_label("Client ID").fill(seed["client_id"])
    drawer.get_by_label("Client Secret", exact=True).fill(seed["client_secret"])
    expect(drawer.get_by_label("Scope")).to_have_value(
        "https://outlook.office.com/SMTP.Send"
    )
    expect(drawer.get_by_label("Redirect URL")).to_have_value(callback)
    expect(drawer.get_by_label("Redirect URL")).not_to_be_editable()
    drawer.get_by_role("button", name="Copy").click()
    expect(drawer.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == callback
    expect(drawer.get_by_role("button", name="Validate and Save")).to_be_hidden()

    with page.context.expect_page() as new_tab:
        drawer.get_by_role("button", name="Save & Authorize").click()
    sign_in_tab = new_tab.value
    sign_in_tab.wait_for_load_state()
    sign_in_tab.get_by_label("User name").fill(seed["user"])
    sign_in_tab.get_by_label("Password").fill(seed["password"])
    sign_in_tab.get_by_role("button", name="Accept").click()
    expect(sign_in_tab.get_by_text("SMTP Settings Authorized")).to_be_visible()
    sign_in_tab.close()

    page.goto("/integrations/notification-tools/smtp/")
    drawer = page.get_by_role("dialog", name="SMTP settings")
    expect(drawer.get_by_text(f"Authorized as {seed['user']}")).to_be_visible()
    drawer.get_by_label("Test email address").fill(seed["recipient"])
    drawer.get_by_role("button", name="Test", exact=True).click()
    expect(drawer.get_by_text("Connection successful")).to_be_visible(timeout=25_000)

    [message] = sandbox.messages(to=seed["recipient"])
    assert message["from"] == seed["user"]
    assert message["authenticated_as"]["kind"] == "user"
    page.goto("/integrations/notification-tools/")
    expect(page.locator("li.tool-card", has_text="SMTP")).to_contain_text("Active")
