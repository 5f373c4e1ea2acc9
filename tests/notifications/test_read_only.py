"""Project › Settings › Notification Tools says why it is read-only for a member."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

REASON = "Only project owners can change this."


def tools_page(client, user, project):
    client.force_login(user)
    response = client.get(
        reverse("projects:notification_tools", kwargs={"slug": project.slug})
    )
    assert response.status_code == 200
    return response.content.decode()


def test_a_member_sees_why_the_link_form_is_read_only(client, member, project, link):
    body = tools_page(client, member, project)
    assert REASON in body
    assert 'class="read-only"' in body


def test_a_member_sees_why_a_tool_cannot_be_linked(client, member, project, graph_tool):
    body = tools_page(client, member, project)
    assert REASON in body and ">Link</button>" not in body


def test_an_owner_is_not_told_the_page_is_read_only(client, owner, project, link):
    body = tools_page(client, owner, project)
    assert REASON not in body


def test_a_refused_change_shows_the_reason_on_the_403_page(
    client, member, project, link
):
    client.force_login(member)
    response = client.post(
        reverse("projects:notification_tool_unlink", args=[project.slug, link.pk])
    )
    assert response.status_code == 403
    assert REASON in response.content.decode()
