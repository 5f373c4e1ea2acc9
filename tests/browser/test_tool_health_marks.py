"""The card shows a tool's health checks as marks (✓ and ✕, with the date and, on
failure, the step and the reason), and the tool's drawer lists the history."""

import re

import pytest
from playwright.sync_api import expect

from integrations.providers import identity
from notifications.services.health_checks import health_checks_run
from tests.tools import activate_azure_mail

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

TOOLS = "/integrations/notification-tools/"


def test_card_marks_and_drawer_history(page, sign_in, security_admin, sandbox):
    seed = sandbox.seed
    tool = activate_azure_mail(seed)
    assert health_checks_run() == 1  # passes
    app = f"/tenants/{seed['tenant_id']}/apps/{seed['client_id']}"
    sandbox.control("PATCH", app, json={"application_permissions": ["SMTP.SendAsApp"]})
    identity.forget_apps()
    tool.token_cache = ""
    tool.save(update_fields=["token_cache"])
    assert health_checks_run() == 1  # fails at the permission step

    sign_in(security_admin.username, security_admin.raw_password)
    page.goto(TOOLS)
    card = page.locator("#tool-microsoft_azure_mail")
    marks = card.get_by_role("list", name="Health").get_by_role("listitem")
    expect(marks).to_have_count(2)
    expect(marks.nth(0)).to_have_attribute("title", re.compile(r"Health check passed$"))
    failed = marks.nth(1)
    expect(failed).to_contain_text("✕")
    expect(failed).to_have_attribute(
        "title",
        re.compile(
            r"Health check failed at “Mail\.Send application permission present”: "
            r"Application permission not granted$"
        ),
    )
    expect(card).to_contain_text("Needs attention")

    page.goto(TOOLS + "microsoft_azure_mail/")
    drawer = page.get_by_role("dialog", name="Microsoft Azure Mail settings")
    history = drawer.get_by_role("region", name="Health history")
    rows = history.get_by_role("row")
    expect(rows).to_have_count(3)  # the header and two results, newest first
    expect(rows.nth(1)).to_contain_text("Failed")
    expect(rows.nth(1)).to_contain_text("Mail.Send application permission present")
    expect(rows.nth(1)).to_contain_text("Application permission not granted")
    expect(rows.nth(2)).to_contain_text("Passed")
