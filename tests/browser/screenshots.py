"""The README's screenshots, taken from the product as it runs against the sandbox.

Not a test of its own (the name does not start with `test_`, so the suite skips it):
`bin/screenshots` runs it through pytest, which gives it the live server, the sandbox
and Chromium the browser tests use. It writes PNGs to `docs/screenshots/` (or to
`SCREENSHOTS_DIR`), replacing the ones there.
"""

import datetime
import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.fixtures.bandit import bandit_sarif
from tests.tools import activate_azure_mail

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def out_dir() -> Path:
    directory = Path(os.environ.get("SCREENSHOTS_DIR", ROOT / "docs" / "screenshots"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def storefront(sandbox, security_admin):
    """A project with a Bandit scan, Microsoft Azure Mail linked to it, and the
    notifications it sent (the test settings run tasks at once, through the
    sandbox)."""
    from django.contrib.auth.models import User

    from notifications.services.health_checks import integration_health_check
    from notifications.services.links import link_create, link_send_test
    from operations.heartbeat import worker_heartbeat
    from projects.models import Membership, Project, Role
    from projects.services import scan_import

    owner = User.objects.create_user("olivia", password="Screenshots-pw-1!")
    project = Project.objects.create(name="Storefront", slug="storefront")
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    tool = activate_azure_mail(
        sandbox.seed,
        secret_expires_on=datetime.date.today() + datetime.timedelta(days=21),
    )
    for _ in range(3):  # the card's health marks
        integration_health_check(integration=tool)
    link = link_create(project=project, integration=tool, actor=security_admin)
    link_send_test(link=link, actor=security_admin)
    scan_import(project=project, sarif=bandit_sarif(), actor=owner)
    worker_heartbeat(force=True)  # as bin/run's worker does: no "no worker" banner
    return project


def shoot(page, name: str, **kwargs) -> None:
    page.screenshot(path=str(out_dir() / f"{name}.png"), **kwargs)


def test_take_the_readme_screenshots(page, sign_in, security_admin, storefront):
    page.set_viewport_size(DESKTOP)
    sign_in(security_admin.username, security_admin.raw_password)

    page.goto("/integrations/notification-tools/")
    expect(page.locator("li.tool-card").first).to_be_visible()
    shoot(page, "notification-tools")

    # A tool's drawer, before it is activated.
    page.goto("/integrations/notification-tools/smtp/")
    expect(page.get_by_role("dialog", name="SMTP settings")).to_be_visible()
    shoot(page, "drawer")

    # Test Connection on the activated tool: every step and the result.
    page.goto("/integrations/notification-tools/microsoft_azure_mail/")
    drawer = page.get_by_role("dialog", name="Microsoft Azure Mail settings")
    drawer.get_by_role("button", name="Test Connection").click()
    expect(drawer.get_by_text("Connection successful")).to_be_visible(timeout=25_000)
    drawer.locator("#test-result").scroll_into_view_if_needed()
    shoot(page, "test-connection")

    slug = storefront.slug
    page.goto(f"/projects/{slug}/")
    shoot(page, "project")

    page.goto(f"/projects/{slug}/settings/notification-tools/")
    expect(page.get_by_role("heading", name="Notification tools")).to_be_visible()
    shoot(page, "project-notification-tools")

    page.goto("/notifications/deliveries/")
    shoot(page, "delivery-log")

    # On a phone: the cards in one column, and the drawer over the whole screen.
    page.set_viewport_size(PHONE)
    page.goto("/integrations/notification-tools/")
    shoot(page, "phone")
    page.goto("/integrations/notification-tools/microsoft_azure_mail/")
    expect(drawer).to_be_visible()
    shoot(page, "phone-drawer")
