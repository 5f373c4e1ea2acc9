"""The People page: security admins create users (with a one-time set-password link),
deactivate and reactivate them, and grant or remove the security-admin role; the
member field's user search. Every change is audited."""

import logging
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.contrib.auth.tokens import default_token_generator
from django.test import Client

from accounts import services
from accounts.exceptions import PeopleError
from integrations.models import AuditAction, AuditEntry
from integrations.permissions import SECURITY_ADMINS_GROUP, is_security_admin
from projects.models import Membership, Project, Role
from tests.accounts.conftest import sign_in, signed_in
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

PEOPLE_URL = "/people/"
CREATE_URL = "/people/create/"
SEARCH_URL = "/people/search/"
SET_PASSWORD_URL = "/accounts/set-password/"
GOOD_PASSWORD = "Correct-Horse-Battery-42"


def action_url(user, action):
    return f"/people/{user.pk}/{action}/"


def entries(action):
    return AuditEntry.objects.filter(action=action)


def make_admin(username):
    user = User.objects.create_user(username, password=f"pw-{username}-123456")
    user.groups.add(Group.objects.get_or_create(name=SECURITY_ADMINS_GROUP)[0])
    return user


@pytest.fixture
def admin_client(client, security_admin):
    return client_for(client, security_admin)


def create_through_page(admin_client, username="nina", email="nina@contoso.com"):
    """Create a user on the People page; return the response and the link shown."""
    response = admin_client.post(CREATE_URL, {"username": username, "email": email})
    assert response.status_code == 200, response.content.decode()[:2000]
    return response, response.context["link_url"]


def use_link(link, password=GOOD_PASSWORD, client=None):
    """Open a set-password link and submit a password, as the new user would."""
    client = client or Client()
    parts = urlsplit(link)
    opened = client.get(f"{parts.path}?{parts.query}")
    form_page = client.get(SET_PASSWORD_URL)
    posted = client.post(
        SET_PASSWORD_URL, {"new_password1": password, "new_password2": password}
    )
    return opened, form_page, posted


# --- creating a user -------------------------------------------------------------------


def test_user_create_makes_an_active_user_without_a_password_and_audits_it(
    security_admin,
):
    user, path = services.user_create(
        username="  nina ", email=" nina@contoso.com ", actor=security_admin
    )
    user.refresh_from_db()
    assert (user.username, user.email, user.is_active) == (
        "nina",
        "nina@contoso.com",
        True,
    )
    assert not user.has_usable_password()
    assert not is_security_admin(user)
    query = parse_qs(urlsplit(path).query)
    assert urlsplit(path).path == SET_PASSWORD_URL
    token = query["t"][0]
    assert default_token_generator.check_token(user, token)
    entry = entries(AuditAction.USER_CREATED).get()
    assert (entry.subject, entry.actor, entry.provider) == (
        "user:nina",
        security_admin,
        "",
    )
    assert token not in entry.detail and token not in entry.subject


@pytest.mark.parametrize(
    "username, why",
    [
        ("", "Enter a user name."),
        ("   ", "Enter a user name."),
        ("nina smith", "no spaces"),
        ("nina\nsmith", "no spaces"),
        ("<script>alert(1)</script>", "letters, digits"),
        ("robert');DROP TABLE auth_user;--", "letters, digits"),
        ("nul\x00byte", "letters, digits"),
        ("x" * 151, "at most 150 characters"),
    ],
)
def test_a_bad_user_name_is_refused_with_a_clear_error(security_admin, username, why):
    with pytest.raises(PeopleError) as caught:
        services.user_create(
            username=username, email="nina@contoso.com", actor=security_admin
        )
    assert why in caught.value.message
    assert caught.value.field == "username"
    assert not User.objects.filter(email="nina@contoso.com").exists()
    assert not entries(AuditAction.USER_CREATED).exists()


@pytest.mark.parametrize(
    "email",
    [
        "",
        "not-an-email",
        "nina@",
        "nina@contoso.com\r\nBcc: eve@evil.example",
        "nina@contoso.com>, eve@evil.example",
        "x" * 250 + "@contoso.com",
    ],
)
def test_a_bad_email_is_refused_with_a_clear_error(security_admin, email):
    with pytest.raises(PeopleError) as caught:
        services.user_create(username="nina", email=email, actor=security_admin)
    assert caught.value.field == "email"
    assert "email address" in caught.value.message
    assert not User.objects.filter(username="nina").exists()


def test_a_unicode_user_name_is_accepted(security_admin):
    user, _path = services.user_create(
        username="zoë.müller", email="zoe@contoso.com", actor=security_admin
    )
    assert user.username == "zoë.müller"


def test_user_names_and_emails_are_unique_in_any_case(security_admin, owner):
    owner.email = "olivia@contoso.com"
    owner.save()
    with pytest.raises(PeopleError, match="already exists") as caught:
        services.user_create(
            username="OLIVIA", email="new@contoso.com", actor=security_admin
        )
    assert caught.value.code == "username_taken"
    with pytest.raises(PeopleError, match="already has the email") as caught:
        services.user_create(
            username="olivia2", email="Olivia@Contoso.com", actor=security_admin
        )
    assert caught.value.code == "email_taken"


def test_the_page_creates_a_user_and_shows_the_link_once(admin_client, security_admin):
    response, link = create_through_page(admin_client)
    assert link.startswith(f"{settings.SITE_URL}{SET_PASSWORD_URL}?")
    page = response.content.decode()
    assert link.replace("&", "&amp;") in page
    assert "shown only this once" in page
    assert response["Cache-Control"] == "no-store"
    # Not kept anywhere: the next visit of the page does not show it.
    again = admin_client.get(PEOPLE_URL)
    token = parse_qs(urlsplit(link).query)["t"][0]
    assert token not in again.content.decode()
    assert "nina@contoso.com" in again.content.decode()


def test_the_page_shows_form_errors_and_creates_nothing(admin_client):
    response = admin_client.post(CREATE_URL, {"username": "bad name", "email": "nope"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "Enter a valid email address." in page
    assert not User.objects.filter(username="bad name").exists()
    response = admin_client.post(
        CREATE_URL, {"username": "bad name", "email": "ok@contoso.com"}
    )
    assert response.status_code == 400
    assert "no spaces" in response.content.decode()
    assert "link_url" not in response.context or not response.context["link_url"]


# --- the set-password link -------------------------------------------------------------


def test_the_link_works_once_through_the_real_page_and_the_user_signs_in(
    admin_client, caplog
):
    caplog.set_level(logging.DEBUG)
    _response, link = create_through_page(admin_client)
    token = parse_qs(urlsplit(link).query)["t"][0]
    newcomer = Client()
    opened, form_page, posted = use_link(link, client=newcomer)
    # The link's parts leave the address bar at once.
    assert opened.status_code == 302 and opened["Location"] == SET_PASSWORD_URL
    assert form_page.status_code == 200
    assert "Set your password" in form_page.content.decode()
    assert form_page["Cache-Control"].startswith("max-age=0")
    assert posted.status_code == 302 and posted["Location"] == "/accounts/login/"
    nina = User.objects.get(username="nina")
    assert nina.check_password(GOOD_PASSWORD)
    assert entries(AuditAction.PASSWORD_SET).get().actor == nina
    # Signing in with it works.
    assert signed_in_after(sign_in(Client(), "nina", GOOD_PASSWORD))
    # The link is dead now, in a new browser and in the same one.
    for client in (Client(), newcomer):
        again, page, post = use_link(
            link, password="Another-Pass-Word-77", client=client
        )
        assert page.status_code == 400
        assert "does not work" in page.content.decode()
        assert post.status_code == 400
    nina.refresh_from_db()
    assert nina.check_password(GOOD_PASSWORD)
    # Neither the link's token nor the password reached a log line or the audit log.
    for record in caplog.records:
        assert token not in record.getMessage()
        assert GOOD_PASSWORD not in record.getMessage()
    for entry in AuditEntry.objects.all():
        assert token not in f"{entry.subject} {entry.detail}"


def signed_in_after(response):
    return response.status_code == 302 and response["Location"] == "/projects/"


def test_a_weak_or_mismatched_password_is_refused_and_the_link_still_works(
    admin_client,
):
    _response, link = create_through_page(admin_client)
    client = Client()
    _opened, _page, posted = use_link(link, password="nina", client=client)
    assert posted.status_code == 400
    assert "too short" in posted.content.decode()
    mismatched = client.post(
        SET_PASSWORD_URL,
        {"new_password1": GOOD_PASSWORD, "new_password2": GOOD_PASSWORD + "x"},
    )
    assert mismatched.status_code == 400
    assert "didn’t match" in mismatched.content.decode()
    done = client.post(
        SET_PASSWORD_URL,
        {"new_password1": GOOD_PASSWORD, "new_password2": GOOD_PASSWORD},
    )
    assert done.status_code == 302
    assert User.objects.get(username="nina").check_password(GOOD_PASSWORD)


@pytest.mark.parametrize(
    "query",
    [
        "",
        "u=&t=",
        "u=MQ&t=bogus-token",
        "u=%00%00&t=x",
        "u=" + "A" * 5000 + "&t=x",
        "u=not-base64!!&t=abc-def",
        "u=OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5&t=abc-def",
    ],
)
def test_a_broken_link_says_it_does_not_work(security_admin, query):
    client = Client()
    client.get(f"{SET_PASSWORD_URL}?{query}")
    page = client.get(SET_PASSWORD_URL)
    assert page.status_code == 400
    assert "does not work" in page.content.decode()
    posted = client.post(
        SET_PASSWORD_URL,
        {"new_password1": GOOD_PASSWORD, "new_password2": GOOD_PASSWORD},
    )
    assert posted.status_code == 400
    assert not entries(AuditAction.PASSWORD_SET).exists()


def test_a_link_expires_after_password_reset_timeout(admin_client, monkeypatch):
    _response, link = create_through_page(admin_client)
    later = datetime.now() + timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT + 60)
    monkeypatch.setattr(default_token_generator, "_now", lambda: later)
    _opened, page, posted = use_link(link)
    assert page.status_code == 400 and posted.status_code == 400
    assert not User.objects.get(username="nina").has_usable_password()


def test_a_deactivated_users_link_does_not_work(admin_client, security_admin):
    _response, link = create_through_page(admin_client)
    services.user_deactivate(
        user=User.objects.get(username="nina"), actor=security_admin
    )
    _opened, page, _posted = use_link(link)
    assert page.status_code == 400


def test_a_new_link_replaces_a_lost_one(admin_client, security_admin):
    _response, first = create_through_page(admin_client)
    nina = User.objects.get(username="nina")
    response = admin_client.post(action_url(nina, "password-link"))
    assert response.status_code == 200
    second = response.context["link_url"]
    assert second != first
    assert response["Cache-Control"] == "no-store"
    assert entries(AuditAction.PASSWORD_LINK_CREATED).get().subject == "user:nina"
    _opened, page, _posted = use_link(first)
    assert page.status_code == 400
    _opened, page, posted = use_link(second)
    assert page.status_code == 200 and posted.status_code == 302


def test_no_new_link_for_someone_who_has_a_password(admin_client, owner):
    response = admin_client.post(action_url(owner, "password-link"))
    assert response.status_code == 400
    assert "has set a password already" in response.content.decode()
    assert owner.__class__.objects.get(pk=owner.pk).check_password("pw-olivia-123456")
    assert not entries(AuditAction.PASSWORD_LINK_CREATED).exists()


# --- deactivating and reactivating -------------------------------------------------------


def test_deactivating_ends_sign_in_and_sessions_and_is_audited(admin_client, owner):
    olivia = client_for(Client(), owner)
    assert olivia.get("/projects/").status_code == 200
    response = admin_client.post(action_url(owner, "deactivate"))
    assert response.status_code == 302 and response["Location"] == PEOPLE_URL
    owner.refresh_from_db()
    assert not owner.is_active
    # Her open session no longer works, nor does signing in.
    assert olivia.get("/projects/")["Location"].startswith("/accounts/login/")
    fresh = Client()
    sign_in(fresh, "olivia", "pw-olivia-123456")
    assert not signed_in(fresh)
    entry = entries(AuditAction.USER_DEACTIVATED).get()
    assert entry.subject == "user:olivia"
    # Twice changes nothing more.
    admin_client.post(action_url(owner, "deactivate"))
    assert entries(AuditAction.USER_DEACTIVATED).count() == 1
    # Reactivated, she signs in again.
    response = admin_client.post(action_url(owner, "reactivate"))
    assert response.status_code == 302
    owner.refresh_from_db()
    assert owner.is_active
    assert entries(AuditAction.USER_REACTIVATED).get().subject == "user:olivia"
    sign_in(fresh, "olivia", "pw-olivia-123456")
    assert signed_in(fresh)


def test_you_cannot_deactivate_yourself(admin_client, security_admin):
    response = admin_client.post(action_url(security_admin, "deactivate"))
    assert response.status_code == 400
    assert "You cannot deactivate yourself" in response.content.decode()
    security_admin.refresh_from_db()
    assert security_admin.is_active
    assert not entries(AuditAction.USER_DEACTIVATED).exists()
    with pytest.raises(PeopleError) as caught:
        services.user_deactivate(user=security_admin, actor=security_admin)
    assert caught.value.code == "self_deactivation"


def test_the_last_security_admin_cannot_be_deactivated(security_admin):
    with pytest.raises(PeopleError) as caught:
        services.user_deactivate(user=security_admin, actor=None)
    assert caught.value.code == "last_security_admin"
    other = make_admin("ada")
    assert services.user_deactivate(user=security_admin, actor=other)


def test_an_unknown_user_is_a_404(admin_client):
    for action in ("deactivate", "reactivate", "grant-admin", "remove-admin"):
        assert admin_client.post(f"/people/987654/{action}/").status_code == 404


# --- the security-admin role ------------------------------------------------------------


def test_granting_and_removing_the_role_is_audited(admin_client, owner):
    response = admin_client.post(action_url(owner, "grant-admin"))
    assert response.status_code == 302
    assert is_security_admin(User.objects.get(pk=owner.pk))
    granted = entries(AuditAction.ROLE_GRANTED).get()
    assert (granted.subject, granted.actor_name) == ("user:olivia", "sam")
    # She now opens the People page.
    assert client_for(Client(), owner).get(PEOPLE_URL).status_code == 200
    admin_client.post(action_url(owner, "grant-admin"))
    assert entries(AuditAction.ROLE_GRANTED).count() == 1
    response = admin_client.post(action_url(owner, "remove-admin"))
    assert response.status_code == 302
    assert not is_security_admin(User.objects.get(pk=owner.pk))
    assert entries(AuditAction.ROLE_REMOVED).get().subject == "user:olivia"
    assert client_for(Client(), owner).get(PEOPLE_URL).status_code == 403


def test_the_last_security_admin_cannot_remove_their_own_role(
    admin_client, security_admin
):
    response = admin_client.post(action_url(security_admin, "remove-admin"))
    assert response.status_code == 400
    assert "last security admin" in response.content.decode()
    assert is_security_admin(User.objects.get(pk=security_admin.pk))
    assert not entries(AuditAction.ROLE_REMOVED).exists()


def test_with_another_admin_you_may_remove_your_own_role(admin_client, security_admin):
    make_admin("ada")
    response = admin_client.post(action_url(security_admin, "remove-admin"))
    assert response.status_code == 302 and response["Location"] == "/"
    assert not is_security_admin(User.objects.get(pk=security_admin.pk))
    assert admin_client.get(PEOPLE_URL).status_code == 403


def test_a_deactivated_admin_does_not_count_as_another_admin(security_admin):
    ada = make_admin("ada")
    ada.is_active = False
    ada.save()
    with pytest.raises(PeopleError, match="last security admin"):
        services.user_role_remove(user=security_admin, actor=security_admin)
    with pytest.raises(PeopleError, match="reactivate them first"):
        services.user_role_grant(user=ada, actor=security_admin)
    # Taking the role from someone deactivated leaves the active admins as they are.
    assert services.user_role_remove(user=ada, actor=security_admin)


def test_a_superusers_role_cannot_be_removed_here(security_admin):
    root = User.objects.create_superuser("root", "root@contoso.com", "pw-root-123456")
    with pytest.raises(PeopleError) as caught:
        services.user_role_remove(user=root, actor=security_admin)
    assert caught.value.code == "superuser"
    assert not services.user_role_grant(user=root, actor=security_admin)


# --- the page -------------------------------------------------------------------------


def test_the_page_lists_people_with_their_role_state_and_last_sign_in(
    admin_client, security_admin, owner, member
):
    member.is_active = False
    member.save()
    sign_in(Client(), "olivia", "pw-olivia-123456")
    response = admin_client.get(PEOPLE_URL)
    assert response.status_code == 200
    rows = {person.username: person for person in response.context["users"]}
    assert rows["sam"].has_admin_role and not rows["olivia"].has_admin_role
    assert rows["olivia"].last_login is not None and rows["mike"].last_login is None
    page = response.content.decode()
    assert "Deactivated" in page and "never" in page
    assert 'href="/people/"' in page  # the navigation link
    # Your own row offers no Deactivate.
    assert f'action="/people/{security_admin.pk}/deactivate/"' not in page
    assert f'action="/people/{owner.pk}/deactivate/"' in page
    assert f'action="/people/{member.pk}/reactivate/"' in page


def test_the_people_link_is_only_in_a_security_admins_navigation(client, owner):
    page = client_for(client, owner).get("/projects/").content.decode()
    assert 'href="/people/"' not in page


def test_the_pages_are_for_security_admins_only(client, owner):
    assert client.get(PEOPLE_URL)["Location"].startswith("/accounts/login/")
    client_for(client, owner)
    assert client.get(PEOPLE_URL).status_code == 403
    for url in (CREATE_URL, action_url(owner, "grant-admin")):
        assert (
            client.post(url, {"username": "x", "email": "x@y.com"}).status_code == 403
        )
    assert not is_security_admin(User.objects.get(pk=owner.pk))
    assert not User.objects.filter(username="x").exists()


# --- the member field's search ------------------------------------------------------------


@pytest.fixture
def people(db):
    for n in range(12):
        User.objects.create_user(f"dev{n:02}", f"dev{n:02}@contoso.com")
    User.objects.create_user("gone", "devgone@contoso.com", is_active=False)
    User.objects.create_user("zed", "Developer.Zed@fabrikam.com")


def test_search_returns_at_most_ten_active_users_by_name_or_email_prefix(
    admin_client, people
):
    answer = admin_client.get(SEARCH_URL, {"q": "DEV"})
    assert answer.status_code == 200
    assert answer["Cache-Control"] == "private, no-store"
    users = answer.json()["users"]
    assert len(users) == 10
    assert users[0] == {"username": "dev00", "email": "dev00@contoso.com"}
    assert all(set(user) == {"username", "email"} for user in users)
    assert "gone" not in {user["username"] for user in users}
    by_email = admin_client.get(SEARCH_URL, {"q": "developer."}).json()["users"]
    assert by_email == [{"username": "zed", "email": "Developer.Zed@fabrikam.com"}]


@pytest.mark.parametrize("query", ["", "   ", "%", "_", "'", "nobody", "d%"])
def test_search_for_nothing_or_wildcards_finds_nobody(admin_client, people, query):
    answer = admin_client.get(SEARCH_URL, {"q": query})
    assert answer.status_code == 200
    assert answer.json() == {"users": []}


@pytest.mark.parametrize("query", ["x" * 255, "dev\n", "dev\x00"])
def test_search_refuses_bad_text_with_a_clear_error(admin_client, query):
    answer = admin_client.get(SEARCH_URL, {"q": query})
    assert answer.status_code == 400
    assert "beginning of a user name" in answer.json()["error"]


def test_search_is_for_security_admins_and_project_owners(
    client, project, owner, member, people
):
    assert client.get(SEARCH_URL, {"q": "dev"})["Location"].startswith(
        "/accounts/login/"
    )
    assert client_for(Client(), member).get(SEARCH_URL, {"q": "dev"}).status_code == 403
    assert client_for(Client(), owner).get(SEARCH_URL, {"q": "dev"}).status_code == 200
    # A former owner, now a member, no longer may.
    Membership.objects.filter(user=owner).update(role=Role.MEMBER)
    assert client_for(Client(), owner).get(SEARCH_URL, {"q": "dev"}).status_code == 403


def test_the_member_field_offers_suggestions(admin_client, project):
    page = admin_client.get(f"/projects/{project.slug}/settings/").content.decode()
    assert 'list="member-suggestions"' in page
    assert (
        '<datalist id="member-suggestions" data-search-url="/people/search/">' in page
    )
    assert "js/member_search.js" in page


def test_a_user_created_here_can_be_added_to_a_project(admin_client, project):
    create_through_page(admin_client)
    response = admin_client.post(
        f"/projects/{project.slug}/settings/members/",
        {"username": "nina", "role": Role.MEMBER},
    )
    assert response.status_code == 302
    assert (
        Project.objects.get(pk=project.pk)
        .memberships.filter(user__username="nina")
        .exists()
    )
