"""A security admin activates Microsoft Azure Mail in a real browser."""

import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_admin_tests_and_saves_azure_mail_and_the_email_arrives(
    page, sign_in, security_admin, sandbox
):
    seed = sandbox.seed
    sign_in(security_admin.username, security_admin.raw_password)

    page.goto("/integrations/notification-tools/")
    card = page.locator("li.tool-card", has_text="Microsoft Azure Mail")
    expect(card).to_contain_text("Not activated")
    card.get_by_role("link", name="Activate").click()

    drawer = page.get_by_role("dialog", name="Microsoft Azure Mail settings")
    drawer.get_by_label("Tenant ID").fill(seed["tenant_id"])
    drawer.get_by_label("Client ID").fill(seed["client_id"])
    drawer.get_by_label("Client Secret", exact=True).fill(seed["client_secret"])
    drawer.get_by_label("From", exact=True).fill(seed["sender"])
    drawer.get_by_label("To", exact=True).fill(seed["recipient"])
    expect(drawer.get_by_label("Cloud")).to_have_value("global")

    drawer.get_by_role("button", name="Test Connection").click()
    success = drawer.get_by_text("Connection successful")
    expect(success).to_be_visible(timeout=25_000)
    expect(success).to_have_css("color", re.compile(r"rgb\(18, 115, 58\)"))

    drawer.get_by_role("button", name="Save").click()
    card = page.locator("li.tool-card", has_text="Microsoft Azure Mail")
    expect(card).to_contain_text("Active")
    expect(card.get_by_role("link", name="Settings")).to_be_visible()

    [message] = sandbox.messages(to=seed["recipient"])
    assert message["from"] == seed["sender"]
    assert message["subject"] == "Test email from M365 AppSec Mail"


def test_a_wrong_secret_shows_the_failed_step_and_the_fix(
    page, sign_in, security_admin, sandbox
):
    seed = sandbox.seed
    sign_in(security_admin.username, security_admin.raw_password)
    page.goto("/integrations/notification-tools/microsoft_azure_mail/")
    drawer = page.get_by_role("dialog", name="Microsoft Azure Mail settings")
    drawer.get_by_label("Tenant ID").fill(seed["tenant_id"])
    drawer.get_by_label("Client ID").fill(seed["client_id"])
    drawer.get_by_label("Client Secret", exact=True).fill(seed["client_secret_id"])
    drawer.get_by_label("From", exact=True).fill(seed["sender"])
    drawer.get_by_label("To", exact=True).fill(seed["recipient"])
    drawer.get_by_role("button", name="Test Connection").click()

    # The Secret ID has the shape of a GUID: the words say so, and where the Value is.
    expect(
        drawer.get_by_text("This looks like the Secret ID, not the secret's Value")
    ).to_be_visible(timeout=25_000)
    expect(drawer).to_contain_text("Certificates & secrets")
    expect(drawer).to_contain_text("Value column")
    expect(drawer.locator("#test-result")).not_to_contain_text(seed["client_secret_id"])
    assert sandbox.messages() == []


def test_progress_shows_while_the_test_runs_and_a_hung_service_times_out(
    page, sign_in, security_admin, sandbox, settings
):
    import requests

    seed = sandbox.seed
    settings.TEST_CONNECTION_TIMEOUT = 2
    requests.post(
        f"{sandbox.base_url}/_sandbox/faults",
        json={"target": "graph", "delay": 6},
        verify=str(sandbox.ca_path),
    ).raise_for_status()
    sign_in(security_admin.username, security_admin.raw_password)
    page.goto("/integrations/notification-tools/microsoft_azure_mail/")
    drawer = page.get_by_role("dialog", name="Microsoft Azure Mail settings")
    drawer.get_by_label("Tenant ID").fill(seed["tenant_id"])
    drawer.get_by_label("Client ID").fill(seed["client_id"])
    drawer.get_by_label("Client Secret", exact=True).fill(seed["client_secret"])
    drawer.get_by_label("From", exact=True).fill(seed["sender"])
    drawer.get_by_label("To", exact=True).fill(seed["recipient"])
    button = drawer.get_by_role("button", name="Test Connection")
    button.click()

    expect(drawer.get_by_text("Testing connection…")).to_be_visible()
    expect(button).to_be_disabled()
    expect(drawer.get_by_text("The service did not answer in time")).to_be_visible(
        timeout=10_000
    )
    expect(drawer).to_contain_text("Token acquired for Microsoft Graph — passed")
    expect(button).to_be_enabled()
