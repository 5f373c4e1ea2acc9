"""Django admin: security admins create projects and assign owners there too."""

import pytest
from django.contrib.auth.models import User

from projects.models import Membership, Project

pytestmark = pytest.mark.django_db


def test_project_admin_creates_a_project_with_an_owner(client, owner):
    admin = User.objects.create_superuser("root", password="pw-root-123456")
    client.force_login(admin)
    assert client.get("/admin/projects/project/add/").status_code == 200
    response = client.post(
        "/admin/projects/project/add/",
        {
            "name": "Billing",
            "slug": "billing",
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "0",
            "memberships-0-user": owner.pk,
            "memberships-0-role": "owner",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    project = Project.objects.get(slug="billing")
    assert Membership.objects.get(project=project).user == owner


def test_token_admin_never_shows_the_hash(client, project, owner):
    from projects.services import api_token_create

    token, _raw = api_token_create(project=project, name="CI", actor=owner)
    admin = User.objects.create_superuser("root", password="pw-root-123456")
    client.force_login(admin)
    body = client.get(f"/admin/projects/apitoken/{token.pk}/change/").content.decode()
    assert token.prefix in body and token.token_hash not in body
