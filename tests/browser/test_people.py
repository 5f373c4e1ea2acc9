"""People in the browser: a security admin creates a user and copies the set-password
link; the new user sets a password through it and signs in; the admin makes them a
security admin; the project member field suggests them as a name is typed."""

import pytest

pytestmark = pytest.mark.browser

NEW_PASSWORD = "Newcomer-pw-Strong-42"


@pytest.fixture
def people_project(transactional_db):
    from projects.models import Project

    return Project.objects.create(name="Storefront", slug="storefront")


def test_admin_creates_a_user_who_sets_a_password_and_becomes_a_security_admin(
    page, browser, live_server, settings, sign_in, security_admin, people_project
):
    from playwright.sync_api import expect

    # Links are absolute, on the product's address: here, the test server's.
    settings.SITE_URL = live_server.url
    page.context.grant_permissions(
        ["clipboard-read", "clipboard-write"], origin=live_server.url
    )
    sign_in(security_admin.username, security_admin.raw_password)
    page.get_by_role("navigation", name="Main").get_by_role(
        "link", name="People"
    ).click()
    expect(page.get_by_role("heading", name="People", level=1)).to_be_visible()

    # A bad email first: a clear error, nobody created.
    page.get_by_label("User name").fill("nina")
    page.get_by_label("Email").fill("nina-at-contoso")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_role("alert")).to_contain_text("valid email address")

    page.get_by_label("Email").fill("nina@contoso.com")
    page.get_by_role("button", name="Create user").click()
    notice = page.locator(".token-once")
    expect(notice).to_contain_text("Copy the set-password link for nina now.")
    link_field = page.get_by_role("textbox", name="Set-password link")
    link = link_field.input_value()
    assert link.startswith(f"{live_server.url}/accounts/set-password/?")
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_text("Copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == link
    row = page.locator("tr[data-user='nina']")
    expect(row).to_contain_text("No password set yet")

    # The new user, in a browser of their own.
    newcomer = browser.new_context(base_url=live_server.url)
    newcomer.set_default_timeout(15_000)
    theirs = newcomer.new_page()
    try:
        theirs.goto(link)
        # The link's parts left the address bar.
        assert theirs.url == f"{live_server.url}/accounts/set-password/"
        expect(theirs.get_by_role("heading", name="Set your password")).to_be_visible()
        theirs.get_by_label("New password", exact=True).fill("short")
        theirs.get_by_label("New password again").fill("short")
        theirs.get_by_role("button", name="Set password").click()
        expect(theirs.get_by_role("alert").first).to_contain_text("too short")
        theirs.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        theirs.get_by_label("New password again").fill(NEW_PASSWORD)
        theirs.get_by_role("button", name="Set password").click()
        expect(theirs.get_by_role("status")).to_contain_text("Your password is set")
        theirs.get_by_label("User name").fill("nina")
        theirs.get_by_label("Password").fill(NEW_PASSWORD)
        theirs.get_by_role("button", name="Sign in").click()
        expect(theirs.get_by_role("heading", name="Projects")).to_be_visible()
        main_nav = theirs.get_by_role("navigation", name="Main")
        expect(main_nav.get_by_role("link", name="People")).to_have_count(0)

        # The link works once.
        theirs.goto(link)
        expect(theirs.get_by_role("alert")).to_contain_text("does not work")

        # The admin makes nina a security admin; her next page shows it.
        page.reload()
        expect(row.locator("td").nth(4)).not_to_have_text("never")
        page.get_by_role("button", name="Make nina a security admin").click()
        expect(page.get_by_role("status")).to_contain_text(
            "nina is now a security admin."
        )
        expect(page.locator("tr[data-user='nina'] td").nth(2)).to_have_text("Yes")
        theirs.goto("/projects/")
        expect(main_nav.get_by_role("link", name="People")).to_be_visible()
    finally:
        newcomer.close()

    # Adding a member: typing the start of a name offers the matching users.
    page.goto(f"/projects/{people_project.slug}/settings/")
    page.get_by_label("User name").press_sequentially("ni")
    suggestions = page.locator("#member-suggestions option")
    expect(suggestions).to_have_count(1)
    expect(suggestions).to_have_attribute("value", "nina")
    page.get_by_label("User name").fill("nina")
    page.get_by_role("button", name="Save member").click()
    expect(page.get_by_role("status")).to_contain_text("nina is now Member.")
