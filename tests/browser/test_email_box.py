"""A security admin switches Microsoft Azure Mail's Email box on in the browser; Test
Connection shows "Mailbox readable"; a test notification to an address that does not
exist comes back as Exchange's non-delivery report, which a real `db_worker` reads
on its periodic job, and the delivery log shows Bounced with the reason in words."""

import os
import time

import pytest
from playwright.sync_api import expect

from tests.processes import run, start_worker, stop
from tests.tools import grant_application_permissions

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

GHOST = "ghost@contoso.onmicrosoft.com"


@pytest.fixture
def worker_env(sandbox, settings, tmp_path):
    """The live server's database, keys and sandbox, for a real worker process."""
    from django.db import connection

    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_READ_DOT_ENV_FILE="False",
        DEBUG="True",
        VAR_DIR=str(tmp_path / "var"),
        SECRET_KEY=settings.SECRET_KEY,
        FIELD_ENCRYPTION_KEYS=",".join(settings.FIELD_ENCRYPTION_KEYS),
        DATABASE_URL=f"sqlite:///{connection.settings_dict['NAME']}",
        TASKS_BACKEND="django_tasks_db.DatabaseBackend",
        SITE_URL=settings.SITE_URL,
        M365_AUTHORITY_HOST=sandbox.authority_host,
        M365_GRAPH_HOST=sandbox.graph_host,
        M365_SMTP_HOST=sandbox.smtp_host,
        M365_SMTP_PORT=str(sandbox.smtp_port),
        M365_IMAP_HOST=sandbox.imap_host,
        M365_IMAP_PORT=str(sandbox.imap_port),
        M365_CA_BUNDLE=str(sandbox.ca_path),
        NOTIFICATIONS_MAILBOX_READ_SECONDS="1",
        LOG_LEVEL="WARNING",
    )
    return env


@pytest.fixture
def admin_project(security_admin):
    from projects.models import Membership, Project, Role

    project = Project.objects.create(name="Storefront", slug="storefront")
    Membership.objects.create(project=project, user=security_admin, role=Role.OWNER)
    return project


def test_email_box_test_connection_and_a_bounce_in_the_delivery_log(
    page, sign_in, security_admin, sandbox, worker_env, admin_project
):
    from integrations.models import Integration
    from integrations.providers import identity
    from notifications.models import ToolLink

    identity.forget_apps()
    seed = sandbox.seed
    grant_application_permissions(sandbox, "Mail.Read")
    sign_in(security_admin.username, security_admin.raw_password)
    page.goto("/integrations/notification-tools/microsoft_azure_mail/")
    drawer = page.get_by_role("dialog", name="Microsoft Azure Mail settings")
    drawer.get_by_label("Tenant ID").fill(seed["tenant_id"])
    drawer.get_by_label("Client ID").fill(seed["client_id"])
    drawer.get_by_label("Client Secret", exact=True).fill(seed["client_secret"])
    drawer.get_by_label("From", exact=True).fill(seed["sender"])
    drawer.get_by_label("To", exact=True).fill(seed["recipient"])
    drawer.get_by_label("Email box").check()

    drawer.get_by_role("button", name="Test Connection").click()
    expect(drawer.get_by_text("Connection successful")).to_be_visible(timeout=25_000)
    expect(drawer).to_contain_text("Mailbox readable — passed")
    drawer.get_by_role("button", name="Save").click()
    card = page.locator("li.tool-card", has_text="Microsoft Azure Mail")
    expect(card).to_contain_text("Active")
    tool = Integration.objects.get(provider="microsoft_azure_mail")
    assert tool.config["email_box"] is True

    ToolLink.objects.create(project=admin_project, integration=tool, recipients=[GHOST])
    run(worker_env, "manage.py", "run_periodic", "--book")
    worker = start_worker(worker_env)
    try:
        page.goto(f"/projects/{admin_project.slug}/settings/notification-tools/")
        page.get_by_role("button", name="Send test notification").click()
        expect(page.get_by_role("status")).to_contain_text("Test notification queued")

        # The worker sends it, Exchange (the sandbox) bounces it into the sender's
        # inbox, and the worker's next read of the Email box finds the report.
        deadline = time.monotonic() + 90
        bounced = page.locator("tr.delivery-bounced")
        while time.monotonic() < deadline:
            page.goto(f"/projects/{admin_project.slug}/deliveries/?status=bounced")
            if bounced.count():
                break
            assert worker.poll() is None, worker.stderr.read()[-3000:]
            time.sleep(0.5)
        expect(bounced).to_have_count(1)
        expect(bounced).to_contain_text("Bounced")
        expect(bounced).to_contain_text(f"Bounced for {GHOST}: 5.1.10")
        expect(bounced).to_contain_text("does not exist")
    finally:
        stop(worker)
