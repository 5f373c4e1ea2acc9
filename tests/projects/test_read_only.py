"""Project pages say why a form is missing or read-only for the viewer."""

import pytest
from django.urls import reverse

from projects.models import Finding
from projects.services import scan_import
from tests.projects.sarif_documents import sarif_bytes, sarif_result

pytestmark = pytest.mark.django_db

MEMBERS = "Only security admins can add or remove project members."
TOKENS = "Only project owners can create or revoke API tokens."
UPLOAD = "Only project owners can upload scans."
STATUS = "Only project owners can change a finding's status."


def page(client, user, name, **kwargs):
    client.force_login(user)
    response = client.get(reverse(name, kwargs=kwargs))
    assert response.status_code == 200
    return response.content.decode()


def test_a_member_is_told_who_manages_members_and_tokens(client, member, project):
    body = page(client, member, "projects:settings", slug=project.slug)
    assert MEMBERS in body and TOKENS in body


def test_an_owner_manages_tokens_but_not_members(client, owner, project):
    body = page(client, owner, "projects:settings", slug=project.slug)
    assert MEMBERS in body and TOKENS not in body


def test_a_security_admin_sees_no_read_only_note(client, security_admin, project):
    body = page(client, security_admin, "projects:settings", slug=project.slug)
    assert MEMBERS not in body and TOKENS not in body


def test_a_member_is_told_who_uploads_and_changes_statuses(
    client, member, owner, project
):
    scan_import(
        project=project, sarif=sarif_bytes([sarif_result("B602")]), source="api"
    )
    finding = Finding.objects.get(project=project)
    assert UPLOAD in page(client, member, "projects:detail", slug=project.slug)
    body = page(
        client, member, "projects:finding", slug=project.slug, finding_id=finding.pk
    )
    assert STATUS in body

    assert UPLOAD not in page(client, owner, "projects:detail", slug=project.slug)
    body = page(
        client, owner, "projects:finding", slug=project.slug, finding_id=finding.pk
    )
    assert STATUS not in body
