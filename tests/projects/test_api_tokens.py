"""API tokens act with their creator's current access, expire, and are audited;
every membership change is audited, wherever it is made (issue 11, item 3)."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from integrations.models import AuditAction, AuditEntry
from integrations.permissions import SECURITY_ADMINS_GROUP
from projects.models import ApiToken, Finding, Membership, Role
from projects.services import (
    api_token_create,
    api_token_revoke,
    membership_remove,
    membership_set,
    scan_import,
)
from tests.projects.sarif_documents import sarif_bytes, sarif_result

pytestmark = pytest.mark.django_db

FINDINGS = "/api/v1/projects/shop/findings"


@pytest.fixture
def finding(project):
    scan_import(project=project, sarif=sarif_bytes([sarif_result()]), source="api")
    return Finding.objects.get(project=project)


@pytest.fixture
def token(project, owner):
    row, raw = api_token_create(project=project, name="CI", actor=owner)
    return row, raw


def auth(raw):
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def error_of(response):
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]


def read(client, raw):
    return client.get(FINDINGS, **auth(raw))


def patch_status(client, raw, finding, status="confirmed"):
    return client.patch(
        f"{FINDINGS}/{finding.pk}",
        {"status": status},
        content_type="application/json",
        **auth(raw),
    )


def assert_refused(response, code, *words):
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == "Bearer"
    error = error_of(response)
    assert error["code"] == code, error
    for word in words:
        assert word in error["message"], error["message"]


def settings_page(client, user, project):
    client.force_login(user)
    response = client.get(reverse("projects:settings", args=[project.slug]))
    assert response.status_code == 200
    return response.content.decode()


def audit_entries(action):
    return list(
        AuditEntry.objects.filter(action=action).values_list(
            "actor_name", "subject", "detail"
        )
    )


# -- a token acts with its creator's current access -----------------------------------


def test_token_reads_and_changes_findings_while_its_creator_owns_the_project(
    client, finding, token
):
    _row, raw = token
    assert read(client, raw).status_code == 200
    assert patch_status(client, raw, finding).status_code == 200
    finding.refresh_from_db()
    assert finding.status == "confirmed"


def _remove(client, project, user, security_admin):
    client.force_login(security_admin)
    membership = Membership.objects.get(project=project, user=user)
    response = client.post(
        reverse("projects:member_remove", args=[project.slug, membership.pk])
    )
    assert response.status_code == 302


def _set_role(client, project, user, security_admin, role):
    client.force_login(security_admin)
    response = client.post(
        reverse("projects:member_add", args=[project.slug]),
        {"username": user.get_username(), "role": role},
    )
    assert response.status_code == 302, response.content.decode()[:2000]


@pytest.mark.parametrize(
    ("change", "restore", "words"),
    [
        (
            lambda c, p, u, a: _remove(c, p, u, a),
            lambda c, p, u, a: _set_role(c, p, u, a, Role.OWNER),
            ["olivia", "no longer a member"],
        ),
        (
            lambda c, p, u, a: _set_role(c, p, u, a, Role.MEMBER),
            lambda c, p, u, a: _set_role(c, p, u, a, Role.OWNER),
            ["olivia", "Owner", "is now a Member"],
        ),
        (
            lambda c, p, u, a: User.objects.filter(pk=u.pk).update(is_active=False),
            lambda c, p, u, a: User.objects.filter(pk=u.pk).update(is_active=True),
            ["olivia", "deactivated"],
        ),
    ],
    ids=["removed", "role_lowered", "deactivated"],
)
def test_membership_change_disables_the_token_at_once_and_restoring_enables_it(
    client, project, owner, security_admin, finding, token, change, restore, words
):
    row, raw = token
    assert read(client, raw).status_code == 200

    change(client, project, owner, security_admin)
    client.logout()
    assert_refused(read(client, raw), "token_disabled", *words)
    assert_refused(patch_status(client, raw, finding), "token_disabled", *words)
    finding.refresh_from_db()
    assert finding.status == "open"
    assert not finding.status_changes.exists()
    body = settings_page(client, security_admin, project)
    assert "Disabled" in body and words[-1] in body
    row.refresh_from_db()
    assert row.revoked_at is None  # nothing stored: decided at each request

    restore(client, project, owner, security_admin)
    client.logout()
    assert read(client, raw).status_code == 200
    assert patch_status(client, raw, finding).status_code == 200
    assert "Disabled" not in settings_page(client, security_admin, project)


def test_deleting_the_creators_account_disables_the_token(
    client, project, owner, security_admin, token
):
    _row, raw = token
    assert read(client, raw).status_code == 200
    owner.delete()
    assert_refused(read(client, raw), "token_disabled", "deleted")
    body = settings_page(client, security_admin, project)
    assert "Disabled" in body and "The account that created it was deleted." in body


def test_removing_the_owner_and_deactivating_the_account_stops_the_token(
    client, project, owner, security_admin, finding, token
):
    """The review's case: removed from the project and deactivated, the owner's
    token must no longer change findings recorded against them."""
    _row, raw = token
    membership_remove(project=project, user=owner, actor=security_admin)
    owner.is_active = False
    owner.save(update_fields=["is_active"])
    assert_refused(patch_status(client, raw, finding), "token_disabled")
    finding.refresh_from_db()
    assert finding.status == "open" and not finding.status_changes.exists()


def test_a_security_admins_token_follows_their_group(client, project, security_admin):
    _row, raw = api_token_create(project=project, name="Audit", actor=security_admin)
    assert read(client, raw).status_code == 200
    security_admin.groups.clear()
    assert_refused(read(client, raw), "token_disabled", "sam", "no longer a member")
    security_admin.groups.add(Group.objects.get(name=SECURITY_ADMINS_GROUP))
    assert read(client, raw).status_code == 200


def test_only_those_who_manage_the_project_can_create_tokens(project, member):
    from projects.exceptions import ProjectError

    with pytest.raises(ProjectError, match="Only an owner"):
        api_token_create(project=project, name="CI", actor=member)
    assert not ApiToken.objects.exists()


# -- expiry and last use --------------------------------------------------------------


def test_new_tokens_expire_after_the_default_days(project, owner):
    before = timezone.now()
    row, _raw = api_token_create(project=project, name="CI", actor=owner)
    assert before + timedelta(days=90) <= row.expires_at
    assert row.expires_at <= timezone.now() + timedelta(days=90)
    with override_settings(API_TOKEN_DEFAULT_DAYS=30):
        row, _raw = api_token_create(project=project, name="CI 2", actor=owner)
    assert row.expires_at - before < timedelta(days=30, minutes=1)
    row, _raw = api_token_create(
        project=project, name="CI 3", actor=owner, expires_in_days=0
    )
    assert row.expires_at is None


@pytest.mark.parametrize("days", [-1, 3651, "90"])
def test_an_expiry_out_of_range_is_refused(project, owner, days):
    from projects.exceptions import ProjectError

    with pytest.raises(ProjectError) as caught:
        api_token_create(project=project, name="CI", actor=owner, expires_in_days=days)
    assert caught.value.code == "invalid_expiry"
    assert not ApiToken.objects.exists()


def test_an_expired_token_is_refused_with_its_own_code(client, project, token):
    row, raw = token
    assert read(client, raw).status_code == 200
    # The clock passing its expiry.
    ApiToken.objects.filter(pk=row.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert_refused(read(client, raw), "token_expired", "expired", "Create a new one")


def test_a_token_without_expiry_keeps_working(client, project, owner):
    _row, raw = api_token_create(
        project=project, name="CI", actor=owner, expires_in_days=0
    )
    assert read(client, raw).status_code == 200


def test_last_used_at_is_written_at_most_once_a_minute(client, project, token):
    row, raw = token
    assert row.last_used_at is None
    assert read(client, raw).status_code == 200
    row.refresh_from_db()
    first = row.last_used_at
    assert first is not None
    assert read(client, raw).status_code == 200
    row.refresh_from_db()
    assert row.last_used_at == first
    earlier = timezone.now() - timedelta(minutes=2)
    ApiToken.objects.filter(pk=row.pk).update(last_used_at=earlier)
    assert read(client, raw).status_code == 200
    row.refresh_from_db()
    assert row.last_used_at > earlier + timedelta(minutes=1)


def test_refused_tokens_do_not_record_a_use(client, project, owner, token):
    row, raw = token
    membership_remove(project=project, user=owner)
    assert read(client, raw).status_code == 401
    row.refresh_from_db()
    assert row.last_used_at is None


# -- the settings page ----------------------------------------------------------------


def test_owner_chooses_the_expiry_when_creating_a_token(client, project, owner):
    client.force_login(owner)
    url = reverse("projects:token_create", args=[project.slug])
    page = client.get(reverse("projects:settings", args=[project.slug]))
    body = page.content.decode()
    for label in ("30 days", "90 days", "365 days", "No expiry"):
        assert label in body
    assert client.post(url, {"name": "Yearly", "expires_in_days": "365"}).status_code
    row = ApiToken.objects.get(name="Yearly")
    assert timedelta(days=364) < row.expires_at - timezone.now() <= timedelta(days=365)
    client.post(url, {"name": "Forever", "expires_in_days": "0"})
    assert ApiToken.objects.get(name="Forever").expires_at is None
    refused = client.post(url, {"name": "Odd", "expires_in_days": "7"})
    assert refused.status_code == 400
    assert "Select a valid choice" in refused.content.decode()
    assert not ApiToken.objects.filter(name="Odd").exists()


def test_token_list_shows_each_state_with_its_reason_expiry_and_last_use(
    client, project, owner, member, security_admin
):
    active, raw = api_token_create(project=project, name="Active one", actor=owner)
    assert read(client, raw).status_code == 200
    expired, _raw = api_token_create(project=project, name="Old one", actor=owner)
    ApiToken.objects.filter(pk=expired.pk).update(
        expires_at=timezone.now() - timedelta(days=1)
    )
    revoked, _raw = api_token_create(project=project, name="Gone one", actor=owner)
    api_token_revoke(token=revoked, actor=owner)
    never, _raw = api_token_create(
        project=project, name="Forever", actor=owner, expires_in_days=0
    )
    admin_token, _raw = api_token_create(
        project=project, name="Sam's", actor=security_admin
    )
    security_admin.groups.clear()

    body = settings_page(client, member, project)
    rows = {
        name: body.split(name, 1)[1].split("</tr>", 1)[0]
        for name in ("Active one", "Old one", "Gone one", "Forever", "Sam&#x27;s")
    }
    assert "Active" in rows["Active one"] and "never" not in rows["Active one"]
    assert "Expired" in rows["Old one"]
    assert "Revoked" in rows["Gone one"]
    assert "never" in rows["Forever"]  # no expiry, never used
    assert "Disabled" in rows["Sam&#x27;s"]
    assert "sam, who created it, is no longer a member" in rows["Sam&#x27;s"]


# -- audit ----------------------------------------------------------------------------


def test_creating_and_revoking_tokens_on_the_settings_page_is_audited(
    client, project, owner
):
    client.force_login(owner)
    client.post(
        reverse("projects:token_create", args=[project.slug]),
        {"name": "GitHub\r\nActions", "expires_in_days": "30"},
    )
    row = ApiToken.objects.get()
    detail = f"token {row.prefix} (GitHub Actions)"
    assert audit_entries(AuditAction.TOKEN_CREATED) == [
        ("olivia", "project:shop", detail)
    ]
    client.post(reverse("projects:token_revoke", args=[project.slug, row.pk]))
    client.post(reverse("projects:token_revoke", args=[project.slug, row.pk]))
    assert audit_entries(AuditAction.TOKEN_REVOKED) == [
        ("olivia", "project:shop", detail)
    ]
    entry = AuditEntry.objects.get(action=AuditAction.TOKEN_CREATED)
    assert entry.provider == "" and entry.succeeded


def test_membership_changes_on_the_settings_page_are_audited(
    client, project, outsider, security_admin
):
    client.force_login(security_admin)
    add = reverse("projects:member_add", args=[project.slug])
    client.post(add, {"username": "otto", "role": "member"})
    client.post(add, {"username": "otto", "role": "member"})  # no change
    client.post(add, {"username": "otto", "role": "owner"})
    membership = Membership.objects.get(project=project, user=outsider)
    client.post(reverse("projects:member_remove", args=[project.slug, membership.pk]))
    assert audit_entries(AuditAction.MEMBER_ADDED) == [
        ("sam", "project:shop", "otto: added as member")
    ]
    assert audit_entries(AuditAction.MEMBER_ROLE_CHANGED) == [
        ("sam", "project:shop", "otto: member → owner")
    ]
    assert audit_entries(AuditAction.MEMBER_REMOVED) == [
        ("sam", "project:shop", "otto: removed (was owner)")
    ]


def test_membership_services_audit_without_an_actor(project, outsider):
    membership_set(project=project, user=outsider, role=Role.OWNER)
    membership_remove(project=project, user=outsider)
    membership_remove(project=project, user=outsider)  # not a member: nothing
    assert audit_entries(AuditAction.MEMBER_ADDED) == [
        ("", "project:shop", "otto: added as owner")
    ]
    assert audit_entries(AuditAction.MEMBER_REMOVED) == [
        ("", "project:shop", "otto: removed (was owner)")
    ]


def _admin_change(client, project, rows):
    """POST the project's admin change form with its membership rows."""
    data = {
        "name": project.name,
        "slug": project.slug,
        "memberships-TOTAL_FORMS": str(len(rows)),
        "memberships-INITIAL_FORMS": str(sum(1 for r in rows if r.get("id"))),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    for i, row in enumerate(rows):
        for key, value in row.items():
            data[f"memberships-{i}-{key}"] = value
        data[f"memberships-{i}-project"] = project.pk
    response = client.post(f"/admin/projects/project/{project.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]


def test_membership_changes_in_the_admin_are_audited_and_disable_tokens(
    client, project, owner, member, outsider, token
):
    _row, raw = token
    root = User.objects.create_superuser("root", password="pw-root-123456")
    client.force_login(root)
    owner_row = Membership.objects.get(project=project, user=owner)
    member_row = Membership.objects.get(project=project, user=member)
    _admin_change(
        client,
        project,
        [
            {"id": owner_row.pk, "user": owner.pk, "role": "member"},
            {"id": member_row.pk, "user": member.pk, "role": "member", "DELETE": "on"},
            {"user": outsider.pk, "role": "owner"},
        ],
    )
    assert audit_entries(AuditAction.MEMBER_ROLE_CHANGED) == [
        ("root", "project:shop", "olivia: owner → member")
    ]
    assert audit_entries(AuditAction.MEMBER_REMOVED) == [
        ("root", "project:shop", "mike: removed (was member)")
    ]
    assert audit_entries(AuditAction.MEMBER_ADDED) == [
        ("root", "project:shop", "otto: added as owner")
    ]
    assert dict(
        Membership.objects.filter(project=project).values_list("user__username", "role")
    ) == {"olivia": "member", "otto": "owner"}
    client.logout()
    assert_refused(read(client, raw), "token_disabled", "olivia")


def test_the_admin_refuses_a_deactivated_user_as_a_form_error(
    client, project, outsider
):
    User.objects.filter(pk=outsider.pk).update(is_active=False)
    root = User.objects.create_superuser("root", password="pw-root-123456")
    client.force_login(root)
    response = client.post(
        f"/admin/projects/project/{project.pk}/change/",
        {
            "name": project.name,
            "slug": project.slug,
            "memberships-TOTAL_FORMS": "1",
            "memberships-INITIAL_FORMS": "0",
            "memberships-0-user": outsider.pk,
            "memberships-0-role": "owner",
        },
    )
    assert response.status_code == 200
    assert "otto is deactivated and cannot join a project." in response.content.decode()
    assert not Membership.objects.filter(user=outsider).exists()
    assert not AuditEntry.objects.exists()


def test_revoking_in_the_admin_is_audited(client, project, token):
    row, raw = token
    root = User.objects.create_superuser("root", password="pw-root-123456")
    client.force_login(root)
    response = client.post(
        "/admin/projects/apitoken/",
        {"action": "revoke", "_selected_action": [row.pk]},
    )
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert audit_entries(AuditAction.TOKEN_REVOKED) == [
        ("root", "project:shop", f"token {row.prefix} (CI)")
    ]
    client.logout()
    assert_refused(read(client, raw), "token_revoked")


def test_no_secret_in_audit_entries(client, project, owner):
    client.force_login(owner)
    response = client.post(
        reverse("projects:token_create", args=[project.slug]), {"name": "CI"}
    )
    raw = (
        response.content.decode()
        .split('class="token-value" type="text" readonly value="')[1]
        .split('"')[0]
    )
    row = ApiToken.objects.get()
    client.post(reverse("projects:token_revoke", args=[project.slug, row.pk]))
    secret_part = raw[len(row.prefix) :]
    for entry in AuditEntry.objects.all():
        assert secret_part not in entry.detail + entry.subject


def test_openapi_documents_the_expired_and_disabled_codes(client):
    document = client.get("/api/v1/openapi.json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            described = operation["responses"]["401"]["description"]
            assert "token_expired" in described, (method, path)
            assert "token_disabled" in described, (method, path)
