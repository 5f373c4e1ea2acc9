"""Tool health in a real browser (issue 14): the card shows the days until the
client secret expires, and Re-authorize from the health email's link (taken from
the message the sandbox received) completes through the sandbox's sign-in popup,
after which the card is Active again."""

import datetime
import re

import pytest
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect

from integrations.models import Integration, IntegrationState
from notifications.services.grant_keepalive import grant_keepalive_run
from tests.integrations.smtp_support import (
    authorize,
    drawer_data,
    register_redirect_uri,
)
from tests.notifications.conftest import settle
from tests.sandbox.m365 import Control, trusted_session
from tests.tools import activate_azure_mail

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NEW_PASSWORD = "Changed-Passw0rd!"


@pytest.fixture
def health_page(browser, live_server):
    """A page whose context accepts the sandbox's local CA (its sign-in page)."""
    context = browser.new_context(base_url=live_server.url, ignore_https_errors=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


def test_card_shows_days_to_expiry_and_reauthorize_from_the_email_completes(
    health_page, security_admin, sandbox, live_server, settings
):
    page, seed = health_page, sandbox.seed
    expires_on = timezone.localdate() + datetime.timedelta(days=20)
    activate_azure_mail(seed, secret_expires_on=expires_on)
    # SMTP with delegated OAuth, signed in beforehand (the drawer's own sign-in is
    # tests/browser/test_smtp_delegated.py's subject).
    settings.SITE_URL = live_server.url
    with trusted_session(sandbox.ca_path) as http:
        register_redirect_uri(
            Control(sandbox, http), f"{live_server.url}/integrations/oauth/callback/"
        )
        client = Client()
        client.force_login(security_admin)
        authorize(client, http, sandbox, drawer_data(sandbox, "oauth_delegated"))
    assert Integration.objects.get(provider="smtp").state == IntegrationState.ACTIVE

    page.goto("/accounts/login/")
    page.get_by_label("User name").fill(security_admin.username)
    page.get_by_label("Password").fill(security_admin.raw_password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    page.goto("/integrations/notification-tools/")
    graph_card = page.locator("li.tool-card", has_text="Microsoft Azure Mail")
    expiry = graph_card.locator("[data-credential-expiry]")
    expect(expiry).to_contain_text(
        f"Client secret expires in 20 days ({expires_on.isoformat()})"
    )
    expect(expiry).to_have_class(re.compile(r"\battention\b"))

    # The signed-in user changes their password: the keep-alive's refresh is
    # refused (AADSTS50173) and the recipients are told, through the other tool.
    sandbox.control(
        "PATCH",
        f"/tenants/{seed['tenant_id']}/users/{seed['user']}",
        json={"password": NEW_PASSWORD},
    )
    summary = grant_keepalive_run(now=timezone.now() + datetime.timedelta(days=15))
    assert summary.reauthorization == 1
    settle()
    [email] = [
        m
        for m in sandbox.messages(to=security_admin.email)
        if "needs re-authorization" in m["subject"]
    ]
    links = re.findall(r'href="([^"]+)"', email["html"])
    link = next(url for url in links if url.endswith("/notification-tools/smtp/"))
    assert link.startswith(live_server.url)

    page.goto("/integrations/notification-tools/")
    smtp_card = page.locator("li.tool-card", has_text="SMTP")
    expect(smtp_card).to_contain_text("Needs re-authorization")

    page.goto(link)
    drawer = page.get_by_role("dialog", name="SMTP settings")
    with page.expect_popup() as opened:
        drawer.get_by_role("button", name="Re-authorize").click()
    popup = opened.value
    popup.wait_for_load_state()
    popup.get_by_label("User name").fill(seed["user"])
    popup.get_by_label("Password").fill(NEW_PASSWORD)
    with popup.expect_event("close"):
        popup.get_by_role("button", name="Accept").click()
    drawer = page.get_by_role("dialog", name="SMTP settings")
    expect(drawer.get_by_text(f"Authorized as {seed['user']} on")).to_be_visible()

    page.goto("/integrations/notification-tools/")
    smtp_card = page.locator("li.tool-card", has_text="SMTP")
    expect(smtp_card.locator(".badge")).to_have_text("Active")
