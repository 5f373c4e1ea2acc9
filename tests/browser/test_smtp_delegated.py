"""A security admin sets up SMTP with delegated OAuth 2.0 in a real browser: Save &
Authorize opens the sandbox's sign-in in a popup, the admin signs in and accepts, the
popup closes itself and the drawer's tab updates to "Authorized as ...", and a test
email reaches the sandbox mailbox. Editing the authorized tool: Save keeps the
authorization; Save & Authorize keeps it until the new sign-in completes."""

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

    sign_in_in_popup(page, drawer, seed)

    # The drawer's tab updated itself: no reload by hand.
    drawer = page.get_by_role("dialog", name="SMTP settings")
    expect(drawer.get_by_text(f"Authorized as {seed['user']} on")).to_be_visible()
    drawer.get_by_label("Test email address").fill(seed["recipient"])
    drawer.get_by_role("button", name="Test", exact=True).click()
    expect(drawer.get_by_text("Connection successful")).to_be_visible(timeout=25_000)

    [message] = sandbox.messages(to=seed["recipient"])
    assert message["from"] == seed["user"]
    assert message["authenticated_as"]["kind"] == "user"
    page.goto("/integrations/notification-tools/")
    expect(page.locator("li.tool-card", has_text="SMTP")).to_contain_text("Active")


def sign_in_in_popup(page, drawer, seed, *, button="Save & Authorize"):
    """Click Save & Authorize, sign in and accept in the popup it opens, and wait
    for the popup to close itself (the callback page does once it told the tab)."""
    with page.expect_popup() as opened:
        drawer.get_by_role("button", name=button).click()
    popup = opened.value
    popup.wait_for_load_state()
    popup.get_by_label("User name").fill(seed["user"])
    popup.get_by_label("Password").fill(seed["password"])
    with popup.expect_event("close"):
        popup.get_by_role("button", name="Accept").click()


def authorized_smtp_drawer(page, security_admin, sandbox, live_server, settings):
    """Sign in as the admin, activate SMTP with delegated OAuth through the popup,
    and return the drawer as the tab shows it afterwards."""
    seed = sandbox.seed
    settings.SITE_URL = live_server.url
    with trusted_session(sandbox.ca_path) as http:
        register_redirect_uri(
            Control(sandbox, http), f"{live_server.url}/integrations/oauth/callback/"
        )
    page.goto("/accounts/login/")
    page.get_by_label("User name").fill(security_admin.username)
    page.get_by_label("Password").fill(security_admin.raw_password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    page.goto("/integrations/notification-tools/smtp/")
    drawer = page.get_by_role("dialog", name="SMTP settings")
    drawer.get_by_label("Authentication type").select_option("oauth_delegated")
    drawer.get_by_label("From address").fill(seed["user"])
    drawer.get_by_label("To", exact=True).fill(seed["recipient"])
    drawer.get_by_label("Username").fill(seed["user"])
    drawer.get_by_label("Tenant ID").fill(seed["tenant_id"])
    drawer.get_by_label("Client ID").fill(seed["client_id"])
    drawer.get_by_label("Client Secret", exact=True).fill(seed["client_secret"])
    sign_in_in_popup(page, drawer, seed)
    drawer = page.get_by_role("dialog", name="SMTP settings")
    expect(drawer.get_by_text(f"Authorized as {seed['user']} on")).to_be_visible()
    return drawer


def send_through_saved_tool(to):
    from integrations.models import Integration
    from integrations.providers.base import OutgoingEmail
    from integrations.services import provider_for

    with provider_for(Integration.objects.get(provider="smtp")).open() as connection:
        connection.send(OutgoingEmail(to=(to,), subject="After Save", text="Body"))


def test_editing_to_only_saves_with_save_and_keeps_the_authorization(
    smtp_oauth_page, security_admin, sandbox, live_server, settings
):
    page, seed = smtp_oauth_page, sandbox.seed
    drawer = authorized_smtp_drawer(
        page, security_admin, sandbox, live_server, settings
    )
    expect(drawer.get_by_text("Token not refreshed since the sign-in")).to_be_visible()

    drawer.get_by_label("To", exact=True).fill(
        f"soc@contoso.onmicrosoft.com, {seed['recipient']}"
    )
    drawer.get_by_role("button", name="Save", exact=True).click()

    expect(
        page.get_by_text("SMTP settings saved; the authorization is kept.")
    ).to_be_visible()
    card = page.locator("li.tool-card", has_text="SMTP")
    expect(card.locator(".badge")).to_have_text("Active")
    expect(card.get_by_text(f"Authorized as {seed['user']} on")).to_be_visible()
    send_through_saved_tool(seed["recipient"])
    [message] = sandbox.messages(to=seed["recipient"], subject="After Save")
    assert message["authenticated_as"]["user"] == seed["user"]

    # A setting the grant depends on: Save refuses it, on the field.
    page.goto("/integrations/notification-tools/smtp/")
    drawer = page.get_by_role("dialog", name="SMTP settings")
    drawer.get_by_label("Client ID").fill("11111111-2222-4333-8444-555555555555")
    drawer.get_by_role("button", name="Save", exact=True).click()
    drawer = page.get_by_role("dialog", name="SMTP settings")
    expect(drawer.get_by_text("These changes need a new sign-in")).to_be_visible()
    expect(drawer.get_by_text("use Save & Authorize to change it")).to_be_visible()


def test_save_and_authorize_in_a_popup_updates_the_opener(
    smtp_oauth_page, security_admin, sandbox, live_server, settings
):
    page, seed = smtp_oauth_page, sandbox.seed
    drawer = authorized_smtp_drawer(
        page, security_admin, sandbox, live_server, settings
    )
    # An old result on the page: it goes when the new sign-in starts.
    drawer.get_by_label("Test email address").fill(seed["recipient"])
    drawer.get_by_role("button", name="Test", exact=True).click()
    expect(drawer.get_by_text("Connection successful")).to_be_visible(timeout=25_000)
    drawer.get_by_label("Communication type").select_option("api")

    with page.expect_popup() as opened:
        drawer.get_by_role("button", name="Save & Authorize").click()
    popup = opened.value
    popup.wait_for_load_state()
    expect(drawer.get_by_text("Connection successful")).to_be_hidden()
    expect(drawer.get_by_text("Waiting for the sign-in")).to_be_visible()
    # Until the new sign-in completes, the tool sends as before (over SMTP).
    page2 = page.context.new_page()
    page2.goto("/integrations/notification-tools/")
    expect(
        page2.locator("li.tool-card", has_text="SMTP").locator(".badge")
    ).to_have_text("Active")
    page2.close()

    popup.get_by_label("User name").fill(seed["user"])
    popup.get_by_label("Password").fill(seed["password"])
    with popup.expect_event("close"):
        popup.get_by_role("button", name="Accept").click()

    drawer = page.get_by_role("dialog", name="SMTP settings")
    expect(drawer.get_by_text(f"Authorized as {seed['user']} on")).to_be_visible()
    expect(drawer.get_by_label("Communication type")).to_have_value("api")
    card = page.locator("li.tool-card", has_text="SMTP")
    expect(card.get_by_text(f"Authorized as {seed['user']} on")).to_be_visible()
    send_through_saved_tool(seed["recipient"])
    [message] = sandbox.messages(to=seed["recipient"], subject="After Save")
    assert message["transport"] == "graph"


def test_a_cancelled_sign_in_in_the_popup_is_said_in_the_drawer(
    smtp_oauth_page, security_admin, sandbox, live_server, settings
):
    page, seed = smtp_oauth_page, sandbox.seed
    drawer = authorized_smtp_drawer(
        page, security_admin, sandbox, live_server, settings
    )
    drawer.get_by_label("Communication type").select_option("api")

    with page.expect_popup() as opened:
        drawer.get_by_role("button", name="Save & Authorize").click()
    popup = opened.value
    popup.wait_for_load_state()
    popup.get_by_label("User name").fill(seed["user"])
    popup.get_by_label("Password").fill(seed["password"])
    popup.get_by_role("button", name="Cancel").click()

    # The popup stays open to say why; the drawer says that it failed.
    expect(popup.get_by_text("Sign-in was cancelled or denied")).to_be_visible()
    expect(popup.get_by_text("Nothing was changed.")).to_be_visible()
    expect(drawer.get_by_text("The sign-in did not complete:")).to_be_visible()
    expect(drawer.get_by_text("Sign-in was cancelled or denied")).to_be_visible()
    page.goto("/integrations/notification-tools/smtp/")
    drawer = page.get_by_role("dialog", name="SMTP settings")
    expect(drawer.get_by_label("Communication type")).to_have_value("smtp")
    expect(drawer.get_by_text(f"Authorized as {seed['user']} on")).to_be_visible()
