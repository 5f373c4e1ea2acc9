"""Every page fits a phone, and none has a serious accessibility problem (issue 15,
item 4 and the accessibility scan).

Each page a security admin, a project owner and a member see is opened at 390x844 (a
phone held upright) and at 1280x800; on each, the page must not scroll sideways
(`document.documentElement.scrollWidth <= window.innerWidth`; a wide table may scroll
inside its own wrapper) and axe-core must find no serious or critical violation,
also with each drawer and confirmation dialog open. A notification email's HTML, as
sent, must fit the phone's width too.
"""

import datetime

import pytest
from playwright.sync_api import expect

from tests.browser.axe import serious_violations, violations_report
from tests.projects.sarif_documents import sarif_bytes, sarif_result
from tests.tools import activate_azure_mail

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
VIEWPORTS = {"phone": PHONE, "desktop": DESKTOP}

OWNER_PASSWORD = "Phone-owner-pw-1!"
MEMBER_PASSWORD = "Phone-member-pw-1!"

# Long, unbroken values, as real scans and addresses have them: they must wrap.
LONG_PATH = (
    "services/storefront/checkout/payment_providers/"
    "legacy_gateway_adapter_with_a_very_long_module_name.py"
)
LONG_MESSAGE = (
    "subprocess call with shell=True identified, security issue: "
    "os.system('curl https://payments.internal.contoso.com/api/v2/refunds/"
    "process-all-pending-refunds-immediately?token=placeholder')"
)


@pytest.fixture
def world(sandbox, security_admin):
    """A project with an owner and a member, a scan with findings, Microsoft Azure
    Mail linked to it and deliveries in its log."""
    from django.contrib.auth.models import User

    from notifications.models import Delivery
    from notifications.services.health_checks import integration_health_check
    from notifications.services.links import link_create, link_send_test
    from projects.models import Membership, Project, Role
    from projects.services import scan_import

    owner = User.objects.create_user("olivia-owner", password=OWNER_PASSWORD)
    member = User.objects.create_user("mike-member", password=MEMBER_PASSWORD)
    project = Project.objects.create(
        name="Storefront checkout and payments", slug="storefront"
    )
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    Membership.objects.create(project=project, user=member, role=Role.MEMBER)
    tool = activate_azure_mail(
        sandbox.seed,
        secret_expires_on=datetime.date.today() + datetime.timedelta(days=20),
    )
    # A health check, so the card shows its marks and the drawer its history.
    integration_health_check(integration=tool)
    link = link_create(project=project, integration=tool, actor=owner)
    link_send_test(link=link, actor=owner)
    scan = scan_import(
        project=project,
        sarif=sarif_bytes(
            [
                sarif_result("B602", uri=LONG_PATH, line=120, message=LONG_MESSAGE),
                sarif_result("B105", uri="app/settings.py", line=7, level="warning"),
                sarif_result("B311", uri="app/random_ids.py", line=3, level="note"),
            ]
        ),
        actor=owner,
    )
    finding = project.findings.get(path=LONG_PATH)
    delivery = Delivery.objects.filter(link__project=project).order_by("pk").last()
    return {
        "admin": security_admin,
        "owner": owner,
        "member": member,
        "project": project,
        "scan": scan,
        "finding": finding,
        "delivery": delivery,
    }


def project_pages(world) -> dict[str, str]:
    slug = world["project"].slug
    base = f"/projects/{slug}"
    return {
        "projects list": "/projects/",
        "project detail and findings": f"{base}/",
        "finding detail": f"{base}/findings/{world['finding'].pk}/",
        "scan": f"{base}/scans/{world['scan'].pk}/",
        "project settings": f"{base}/settings/",
        "project notification tools": f"{base}/settings/notification-tools/",
        "project delivery log": f"{base}/deliveries/",
        "message as sent (project)": f"{base}/deliveries/{world['delivery'].uuid}/",
        "your settings": "/accounts/settings/",
        "404 page": f"{base}/findings/999999999/",
    }


def admin_pages(world) -> dict[str, str]:
    return {
        **project_pages(world),
        "notification tools": "/integrations/notification-tools/",
        "delivery log": "/notifications/deliveries/",
        "message as sent": f"/notifications/deliveries/{world['delivery'].uuid}/",
        "audit log": "/integrations/audit-log/",
        "operations": "/operations/",
        "sign-in lockouts": "/accounts/lockouts/",
        "people": "/people/",
        "deactivate question, without JavaScript": (
            "/integrations/notification-tools/microsoft_azure_mail/deactivate/"
        ),
    }


def overflow(page) -> str:
    """Empty when the page does not scroll sideways; else the widths and the
    elements that stick out past the viewport's right edge."""
    return page.evaluate(
        """() => {
          const root = document.documentElement;
          if (root.scrollWidth <= window.innerWidth) return "";
          const out = [];
          for (const el of document.body.querySelectorAll("*")) {
            const box = el.getBoundingClientRect();
            if (box.right > window.innerWidth + 0.5 && box.width > 0) {
              const name = el.tagName.toLowerCase()
                + (el.id ? "#" + el.id : "")
                + (el.classList.length ? "." + [...el.classList].join(".") : "");
              out.push(`${name} (right edge ${Math.round(box.right)})`);
            }
            if (out.length >= 8) break;
          }
          return `scrollWidth ${root.scrollWidth} > innerWidth ${window.innerWidth}: `
            + out.join(", ");
        }"""
    )


def topbar_spill(page) -> str:
    """Empty when everything in the top bar lies inside its background."""
    return page.evaluate(
        """() => {
          const bar = document.querySelector("header.topbar");
          if (!bar) return "";
          const outer = bar.getBoundingClientRect();
          const out = [];
          for (const el of bar.querySelectorAll("a, button, nav, form")) {
            const box = el.getBoundingClientRect();
            if (box.right > outer.right + 0.5 || box.bottom > outer.bottom + 0.5) {
              out.push(`${el.tagName.toLowerCase()} "${el.textContent.trim()}"`);
            }
          }
          return out.join(", ");
        }"""
    )


class Checks:
    """Collects every page's problems, so that one run lists them all."""

    def __init__(self, page, viewport: str):
        self.page = page
        self.viewport = viewport
        self.problems: list[str] = []
        self.checked: list[str] = []

    def here(self, where: str) -> None:
        """Check the page as it is now: no sideways scroll, no serious violation."""
        where = f"{where} ({self.viewport})"
        self.checked.append(where)
        wide = overflow(self.page)
        if wide:
            self.problems.append(f"{where} scrolls sideways: {wide}")
        spill = topbar_spill(self.page)
        if spill:
            self.problems.append(f"{where}: outside the top bar's background: {spill}")
        violations = serious_violations(self.page)
        if violations:
            self.problems.append(violations_report(violations, where))

    def visit(self, where: str, path: str, status: int = 200) -> None:
        response = self.page.goto(path)
        assert response is not None and response.status == status, (
            f"{where}: {path} answered {response and response.status}, not {status}"
        )
        self.here(where)

    def done(self) -> None:
        assert self.checked
        assert not self.problems, "\n\n".join(self.problems)


def upload_a_broken_file(checks: Checks, world) -> None:
    """The upload page, as it answers a file that is not SARIF."""
    page = checks.page
    page.goto(f"/projects/{world['project'].slug}/")
    upload = page.locator("#upload")
    upload.locator("input[type=file]").set_input_files(
        files=[{"name": "scan.sarif", "mimeType": "application/json", "buffer": b"{"}]
    )
    upload.get_by_role("button", name="Import").click()
    expect(page.get_by_role("alert")).to_be_visible()
    checks.here("upload, with an error")


def signed_in(page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_security_admin_s_pages_and_drawers_fit_and_pass_the_scan(
    page, world, viewport
):
    page.set_viewport_size(VIEWPORTS[viewport])
    checks = Checks(page, viewport)
    checks.visit("sign-in", "/accounts/login/")
    signed_in(page, world["admin"].username, world["admin"].raw_password)
    for where, path in admin_pages(world).items():
        checks.visit(where, path, 404 if where.startswith("404") else 200)
    upload_a_broken_file(checks, world)

    # Microsoft Azure Mail's drawer (activated: with Deactivate and its question).
    checks.visit(
        "Microsoft Azure Mail drawer",
        "/integrations/notification-tools/microsoft_azure_mail/",
    )
    drawer = page.get_by_role("dialog", name="Microsoft Azure Mail settings")
    expect(drawer).to_be_visible()
    if viewport == "phone":
        box = drawer.bounding_box()
        assert box["x"] <= 0.5 and box["width"] >= PHONE["width"] - 0.5, box
    drawer.get_by_role("link", name="Deactivate").click()
    confirm = page.get_by_role("dialog", name="Deactivate Microsoft Azure Mail?")
    expect(confirm).to_be_visible()
    checks.here("Deactivate question")
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()

    # SMTP's drawer, in each authentication type.
    checks.visit("SMTP drawer", "/integrations/notification-tools/smtp/")
    drawer = page.get_by_role("dialog", name="SMTP settings")
    expect(drawer).to_be_visible()
    auth = drawer.get_by_label("Authentication type")
    for value in auth.locator("option").evaluate_all(
        "options => options.map(o => o.value)"
    ):
        auth.select_option(value)
        checks.here(f"SMTP drawer, authentication {value}")
    checks.done()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_an_owner_s_pages_fit_and_pass_the_scan(page, world, viewport):
    page.set_viewport_size(VIEWPORTS[viewport])
    checks = Checks(page, viewport)
    signed_in(page, world["owner"].username, OWNER_PASSWORD)
    for where, path in project_pages(world).items():
        checks.visit(where, path, 404 if where.startswith("404") else 200)
    upload_a_broken_file(checks, world)
    checks.visit("403 page", "/integrations/notification-tools/", 403)
    checks.done()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_member_s_pages_fit_and_pass_the_scan(page, world, viewport):
    page.set_viewport_size(VIEWPORTS[viewport])
    checks = Checks(page, viewport)
    signed_in(page, world["member"].username, MEMBER_PASSWORD)
    for where, path in project_pages(world).items():
        status = 404 if where.startswith("404") else 200
        checks.visit(where, path, status)
    checks.visit("403 page", "/operations/", 403)
    checks.done()


@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_a_notification_email_fits_a_phone(page, world, viewport):
    from notifications.emails import email_for
    from notifications.models import Delivery

    page.set_viewport_size(VIEWPORTS[viewport])
    checks = Checks(page, viewport)
    deliveries = Delivery.objects.filter(link__project=world["project"])
    assert deliveries.count() >= 2  # the test notification and the scan's
    for delivery in deliveries.order_by("pk"):
        email = email_for(delivery)
        page.set_content(email.html)
        checks.here(f"email {email.subject!r}")
    checks.done()


def test_the_scan_names_the_rule_the_element_and_the_help_page(page):
    """The scan is not vacuous: an image without a text alternative and a button
    without a name are reported, with what to fix."""
    from tests.browser.axe import assert_no_serious_violations

    page.set_content(
        '<!doctype html><html lang="en"><title>t</title><main>'
        '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">'
        '<button id="nameless"></button></main></html>'
    )
    with pytest.raises(AssertionError) as failure:
        assert_no_serious_violations(page, "a broken page")
    report = str(failure.value)
    assert "on a broken page" in report
    assert "image-alt (critical)" in report
    assert "button-name (critical)" in report
    assert "#nameless" in report
    assert "https://dequeuniversity.com/rules/axe/" in report
