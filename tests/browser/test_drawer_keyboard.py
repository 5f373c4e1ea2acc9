"""The settings drawer is a dialog for a keyboard user (issue 15, item 3): on open,
focus goes to the first field; Tab and Shift+Tab stay inside; Escape and ✕ close it
and give focus back to the card's link that opened it. The same inside the
Deactivate confirmation. Keyboard only: Tab, Shift+Tab, Enter and Escape."""

import pytest
from playwright.sync_api import expect

from tests.tools import activate_azure_mail

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TOOLS = "/integrations/notification-tools/"
IN_DRAWER = "document.querySelector('.drawer').contains(document.activeElement)"


def tab_to(page, locator, *, limit=40):
    """Press Tab until `locator` has the focus (a keyboard user's way there)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if locator.evaluate("element => element === document.activeElement"):
            return
    raise AssertionError(f"Tab never reached {locator}")


def focused_name(page) -> str:
    return page.evaluate(
        "(() => { const e = document.activeElement;"
        " return e.name || e.getAttribute('aria-label') || e.textContent.trim(); })()"
    )


def test_the_drawer_takes_focus_keeps_it_and_gives_it_back(
    page, sign_in, security_admin
):
    sign_in(security_admin.username, security_admin.raw_password)
    page.goto(TOOLS)
    card = page.locator("li.tool-card", has_text="Microsoft Azure Mail")
    activate = card.get_by_role("link", name="Activate")
    tab_to(page, activate)
    page.keyboard.press("Enter")

    drawer = page.get_by_role("dialog", name="Microsoft Azure Mail settings")
    expect(drawer).to_be_visible()
    expect(drawer.get_by_label("Tenant ID")).to_be_focused()

    # Tab goes round the drawer's controls and never leaves it.
    names = []
    for _ in range(40):
        page.keyboard.press("Tab")
        assert page.evaluate(IN_DRAWER), f"focus left the drawer after {names}"
        names.append(focused_name(page))
    assert "Close" in names  # round again, past the end, to ✕
    assert "tenant_id" in names
    # Shift+Tab too: from the first field to ✕, then round to the last control.
    drawer.get_by_label("Tenant ID").focus()
    page.keyboard.press("Shift+Tab")
    expect(drawer.get_by_role("link", name="Close")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(drawer.get_by_role("button", name="Save")).to_be_focused()
    page.keyboard.press("Tab")
    expect(drawer.get_by_role("link", name="Close")).to_be_focused()

    # Escape closes it; focus is back on the link that opened it.
    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()
    assert page.url.split("#")[0].endswith(TOOLS)
    expect(activate).to_be_focused()

    # ✕ (Enter on it) does the same.
    page.keyboard.press("Enter")
    expect(drawer.get_by_label("Tenant ID")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(drawer.get_by_role("link", name="Close")).to_be_focused()
    page.keyboard.press("Enter")
    expect(drawer).to_be_hidden()
    expect(activate).to_be_focused()


def test_an_active_tool_gives_focus_back_to_its_settings_link_and_its_confirmation_traps_tab(
    page, sign_in, security_admin, sandbox
):
    activate_azure_mail(sandbox.seed)
    sign_in(security_admin.username, security_admin.raw_password)
    page.goto(TOOLS)
    card = page.locator("li.tool-card", has_text="Microsoft Azure Mail")
    settings_link = card.get_by_role("link", name="Settings")
    tab_to(page, settings_link)
    page.keyboard.press("Enter")

    drawer = page.get_by_role("dialog", name="Microsoft Azure Mail settings")
    expect(drawer.get_by_label("Tenant ID")).to_be_focused()
    # The last control of an active tool's drawer is Deactivate.
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    deactivate = drawer.get_by_role("link", name="Deactivate")
    expect(deactivate).to_be_focused()

    # The confirmation keeps Tab and Shift+Tab to its two buttons.
    page.keyboard.press("Enter")
    confirm = page.get_by_role("dialog", name="Deactivate Microsoft Azure Mail?")
    cancel = confirm.get_by_role("button", name="Cancel")
    really = confirm.get_by_role("button", name="Deactivate")
    expect(cancel).to_be_focused()
    page.keyboard.press("Tab")
    expect(really).to_be_focused()
    page.keyboard.press("Tab")
    expect(cancel).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(really).to_be_focused()
    # Escape closes the question only, and focus is back on Deactivate.
    page.keyboard.press("Escape")
    expect(confirm).to_be_hidden()
    expect(deactivate).to_be_focused()
    expect(drawer).to_be_visible()

    # A second Escape closes the drawer: focus on the card's Settings link.
    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()
    expect(settings_link).to_be_focused()


def test_a_drawer_with_errors_puts_focus_on_the_first_wrong_field(
    page, sign_in, security_admin
):
    sign_in(security_admin.username, security_admin.raw_password)
    page.goto(TOOLS + "microsoft_azure_mail/")
    drawer = page.get_by_role("dialog", name="Microsoft Azure Mail settings")
    expect(drawer.get_by_label("Tenant ID")).to_be_focused()
    page.keyboard.type("b5a0c1e2-3f47-4d8a-9c6b-2e1f0a9d8c7b")
    page.keyboard.press("Tab")
    page.keyboard.type("not-a-guid")
    save = drawer.get_by_role("button", name="Save")
    tab_to(page, save)
    page.keyboard.press("Enter")

    drawer = page.get_by_role("dialog", name="Microsoft Azure Mail settings")
    expect(drawer.get_by_label("Client ID")).to_be_focused()
    expect(drawer.get_by_label("Client ID")).to_have_attribute("aria-invalid", "true")
