"""Deactivate asks in a keyboard-usable dialog, naming the project links it pauses;
without JavaScript a confirmation page asks instead (issue 15, item 9)."""

import pytest
from playwright.sync_api import expect

from tests.tools import activate_azure_mail

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TOOL = "/integrations/notification-tools/microsoft_azure_mail/"
PAUSED = "Deactivating pauses notifications for: Billing, Web shop."


@pytest.fixture
def linked_tool(sandbox):
    from notifications.models import ToolLink
    from projects.models import Project

    tool = activate_azure_mail(sandbox.seed)
    for name in ["Web shop", "Billing"]:
        project = Project.objects.create(name=name, slug=name.lower().replace(" ", "-"))
        ToolLink.objects.create(project=project, integration=tool)
    return tool


def state_of(tool):
    tool.refresh_from_db()
    return tool.state


def test_the_dialog_takes_focus_closes_on_escape_and_gives_focus_back(
    page, sign_in, security_admin, linked_tool
):
    sign_in(security_admin.username, security_admin.raw_password)
    page.goto(TOOL)
    drawer = page.get_by_role("dialog", name="Microsoft Azure Mail settings")
    opener = drawer.get_by_role("link", name="Deactivate")

    # By keyboard: focus the link, Enter opens the dialog with focus inside it.
    opener.focus()
    page.keyboard.press("Enter")
    confirm = page.get_by_role("dialog", name="Deactivate Microsoft Azure Mail?")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text(PAUSED)
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    # Tab stays inside the modal dialog.
    page.keyboard.press("Tab")
    expect(confirm.get_by_role("button", name="Deactivate")).to_be_focused()

    page.keyboard.press("Escape")
    expect(confirm).to_be_hidden()
    expect(opener).to_be_focused()
    expect(drawer).to_be_visible()  # Escape closed the question only
    assert page.url.endswith(TOOL)

    # Cancel closes it too, and nothing changes.
    page.keyboard.press("Enter")
    expect(confirm).to_be_visible()
    page.keyboard.press("Enter")  # on Cancel, which has focus
    expect(confirm).to_be_hidden()
    expect(opener).to_be_focused()
    assert state_of(linked_tool) == "active"

    # Confirm.
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_contain_text(
        "Microsoft Azure Mail is deactivated. Notifications are paused for: "
        "Billing, Web shop."
    )
    assert state_of(linked_tool) == "inactive"


def test_without_javascript_a_page_asks_first(
    browser, live_server, security_admin, linked_tool
):
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        page.goto("/accounts/login/")
        page.get_by_label("User name").fill(security_admin.username)
        page.get_by_label("Password").fill(security_admin.raw_password)
        page.get_by_role("button", name="Sign in").click()

        page.goto(TOOL)
        page.get_by_role("link", name="Deactivate").click()
        expect(
            page.get_by_role("heading", name="Deactivate Microsoft Azure Mail?")
        ).to_be_visible()
        expect(page.locator("main")).to_contain_text(PAUSED)
        assert state_of(linked_tool) == "active"

        page.get_by_role("link", name="Cancel").click()
        expect(page.get_by_role("link", name="Deactivate")).to_be_visible()
        assert state_of(linked_tool) == "active"

        page.get_by_role("link", name="Deactivate").click()
        page.get_by_role("button", name="Deactivate").click()
        expect(page.get_by_role("status")).to_contain_text(
            "Microsoft Azure Mail is deactivated."
        )
        assert state_of(linked_tool) == "inactive"
    finally:
        context.close()
