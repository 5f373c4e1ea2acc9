"""Deactivate asks first and names the project links it pauses (issue 15, item 9)."""

import pytest
from django.urls import reverse

from integrations.models import AuditAction, AuditEntry, Integration, IntegrationState
from notifications.models import ToolLink
from projects.models import Project
from tests.tools import GRAPH_PROVIDER, activate_azure_mail

DEACTIVATE = reverse("integrations:deactivate", args=[GRAPH_PROVIDER])
TOOL = reverse("integrations:tool", args=[GRAPH_PROVIDER])

pytestmark = pytest.mark.django_db


@pytest.fixture
def tool(sandbox):
    integration = activate_azure_mail(sandbox.seed)
    for name, enabled in [("Web shop", True), ("Billing", True), ("Legacy", False)]:
        project = Project.objects.create(name=name, slug=name.lower().replace(" ", "-"))
        ToolLink.objects.create(
            project=project, integration=integration, enabled=enabled
        )
    return integration


def test_the_drawer_asks_in_a_dialog_naming_the_paused_projects(admin_client, tool):
    html = admin_client.get(TOOL).content.decode()
    assert f'href="{DEACTIVATE}" data-confirm-dialog="deactivate-dialog"' in html
    assert '<dialog id="deactivate-dialog"' in html
    assert "Deactivating pauses notifications for: Billing, Web shop." in html
    assert "Legacy" not in html  # its link is switched off: nothing to pause


def test_without_javascript_a_page_asks_and_nothing_changes_yet(admin_client, tool):
    response = admin_client.get(DEACTIVATE)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Deactivate Microsoft Azure Mail?" in html
    assert "Deactivating pauses notifications for: Billing, Web shop." in html
    assert f'<form method="post" action="{DEACTIVATE}">' in html
    assert f'href="{TOOL}"' in html  # Cancel
    tool.refresh_from_db()
    assert tool.state == IntegrationState.ACTIVE
    assert not AuditEntry.objects.filter(action=AuditAction.DEACTIVATED).exists()


def test_confirming_deactivates_and_says_what_was_paused(admin_client, tool):
    response = admin_client.post(DEACTIVATE, follow=True)
    tool.refresh_from_db()
    assert tool.state == IntegrationState.INACTIVE
    assert (
        "Microsoft Azure Mail is deactivated. Notifications are paused for: "
        "Billing, Web shop." in response.content.decode()
    )
    assert ToolLink.objects.filter(integration=tool).count() == 3  # links are kept


def test_a_tool_no_project_uses_says_nothing_is_paused(admin_client, sandbox):
    activate_azure_mail(sandbox.seed)
    html = admin_client.get(DEACTIVATE).content.decode()
    assert "No project sends notifications through it, so nothing is paused." in html


def test_asking_about_an_inactive_tool_goes_back_to_the_cards(admin_client):
    response = admin_client.get(DEACTIVATE, follow=True)
    assert response.redirect_chain[-1][0] == reverse("integrations:notification_tools")
    assert "Microsoft Azure Mail is not active." in response.content.decode()
    assert not Integration.objects.exists()


def test_only_security_admins_are_asked(client, plain_user, tool):
    client.force_login(plain_user)
    assert client.get(DEACTIVATE).status_code == 403
    assert client.post(DEACTIVATE).status_code == 403
    tool.refresh_from_db()
    assert tool.state == IntegrationState.ACTIVE
