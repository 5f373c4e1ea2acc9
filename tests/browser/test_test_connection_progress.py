"""Test Connection shows every step at once and ticks them off as they pass, keeps
the running step and the result in view (clear of the sticky action bar), and says
it in a live region (issue 15, item 2). A sandbox `delay` fault holds a step long
enough to see the test half way."""

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Whether an element is inside the drawer's visible part, above the sticky actions.
IN_VIEW = """element => {
  const drawer = element.closest('.drawer').getBoundingClientRect();
  const actions = element.closest('.drawer').querySelector('.drawer-actions')
    .getBoundingClientRect();
  const box = element.getBoundingClientRect();
  return box.top >= drawer.top && box.bottom <= actions.top;
}"""


def fill_azure_mail(drawer, seed):
    drawer.get_by_label("Tenant ID").fill(seed["tenant_id"])
    drawer.get_by_label("Client ID").fill(seed["client_id"])
    drawer.get_by_label("Client Secret", exact=True).fill(seed["client_secret"])
    drawer.get_by_label("From", exact=True).fill(seed["sender"])
    drawer.get_by_label("To", exact=True).fill(seed["recipient"])


def test_the_steps_show_at_once_and_tick_off_in_view(
    page, sign_in, security_admin, sandbox
):
    page.set_viewport_size({"width": 1280, "height": 600})
    sandbox.add_fault(target="token", delay=2)
    sign_in(security_admin.username, security_admin.raw_password)
    page.goto("/integrations/notification-tools/microsoft_azure_mail/")
    drawer = page.get_by_role("dialog", name="Microsoft Azure Mail settings")
    fill_azure_mail(drawer, sandbox.seed)
    result = drawer.locator("#test-result")
    expect(result).to_have_attribute("role", "status")
    expect(result).to_have_attribute("aria-live", "polite")

    button = drawer.get_by_role("button", name="Test Connection")
    button.click()

    # Half way (the token request is held): every step listed, the first ticked,
    # the second running, the rest waiting, and the running one in view.
    expect(result.get_by_text("Testing connection…")).to_be_visible()
    expect(button).to_be_disabled()
    running = result.locator("li.step-running")
    expect(running).to_have_text("Token acquired for Microsoft Graph — running")
    expect(result.locator("li.step")).to_have_text(
        [
            "Tenant found — passed",
            "Token acquired for Microsoft Graph — running",
            "Mail.Send application permission present — pending",
            "Test email accepted — pending",
        ]
    )
    assert running.evaluate(IN_VIEW)
    assert drawer.evaluate("d => d.scrollTop") > 0  # it was below the fold

    success = result.get_by_text("Connection successful")
    expect(success).to_be_visible(timeout=15_000)
    expect(result.locator("li.step-passed")).to_have_count(4)
    expect(result).to_contain_text("Test email accepted — passed")
    assert success.evaluate(IN_VIEW)
    expect(button).to_be_enabled()
    expect(button).to_be_focused()  # the button kept the focus while it ran

    [message] = sandbox.messages(to=sandbox.seed["recipient"])
    assert message["subject"] == "Test email from M365 AppSec Mail"


def test_a_failure_half_way_stays_in_view_with_the_steps_it_passed(
    page, sign_in, security_admin, sandbox
):
    page.set_viewport_size({"width": 1280, "height": 600})
    sandbox.add_fault(
        target="graph", delay=1.5, status=503, error_code="ServiceUnavailable"
    )
    sign_in(security_admin.username, security_admin.raw_password)
    page.goto("/integrations/notification-tools/microsoft_azure_mail/")
    drawer = page.get_by_role("dialog", name="Microsoft Azure Mail settings")
    fill_azure_mail(drawer, sandbox.seed)
    drawer.get_by_role("button", name="Test Connection").click()

    result = drawer.locator("#test-result")
    expect(result.locator("li.step-running")).to_have_text(
        "Test email accepted — running"
    )
    failure = result.locator(".result.failure")
    expect(failure).to_contain_text(
        "Connection failed at step Test email accepted", timeout=15_000
    )
    expect(result).to_contain_text("Mail.Send application permission present — passed")
    expect(result).to_contain_text("Test email accepted — failed")
    assert failure.evaluate(IN_VIEW)
