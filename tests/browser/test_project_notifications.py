"""A project owner links Microsoft Azure Mail to a project in the browser, sends a test
notification, and it arrives in the sandbox's mailbox."""

import time

import pytest

from tests.tools import activate_azure_mail

pytestmark = pytest.mark.browser


@pytest.fixture
def notifications_owner(transactional_db):
    from django.contrib.auth.models import User

    user = User.objects.create_user("browser-owner", password="Browser-owner-pw-1!")
    user.raw_password = "Browser-owner-pw-1!"
    return user


@pytest.fixture
def notifications_project(notifications_owner):
    from projects.models import Membership, Project, Role

    project = Project.objects.create(name="Storefront", slug="storefront")
    Membership.objects.create(
        project=project, user=notifications_owner, role=Role.OWNER
    )
    return project


@pytest.fixture
def notifications_tool(transactional_db, sandbox):
    from integrations.providers import identity

    identity.forget_apps()
    return activate_azure_mail(sandbox.seed)


def test_owner_links_a_tool_and_sends_a_test_notification(
    page,
    sign_in,
    sandbox,
    notifications_owner,
    notifications_project,
    notifications_tool,
):
    from playwright.sync_api import expect

    sign_in(notifications_owner.username, notifications_owner.raw_password)
    page.goto(f"/projects/{notifications_project.slug}/settings/")
    page.get_by_role("link", name="Choose which events reach whom by email").click()
    expect(page.get_by_role("heading", name="Notification tools")).to_be_visible()

    page.get_by_role("button", name="Link Microsoft Azure Mail").click()
    expect(page.get_by_role("status")).to_contain_text("Linked")

    # A list for this project instead of the tool's To, and a digest per scan.
    page.get_by_label("A list for this project").check()
    recipient = sandbox.seed["recipient"]
    page.get_by_label("Project recipients").fill(recipient)
    page.get_by_label("One digest per scan").check()
    page.get_by_label("Minimum severity").select_option("medium")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_contain_text("Notification settings saved")
    expect(page.get_by_label("Project recipients")).to_have_value(recipient)

    page.get_by_role("button", name="Send test notification").click()
    expect(page.get_by_role("status")).to_contain_text("Test notification queued")

    deadline = time.monotonic() + 15
    messages = []
    while time.monotonic() < deadline and not messages:
        messages = sandbox.messages(subject="Test notification for Storefront")
        time.sleep(0.1)
    assert len(messages) == 1
    assert messages[0]["to"] == [recipient]
    assert messages[0]["message_id"].startswith("<delivery-")

    page.get_by_role("link", name="Delivery log").click()
    expect(page.get_by_role("cell", name="Sent", exact=True)).to_be_visible()
    expect(page.get_by_role("cell", name=recipient)).to_be_visible()
