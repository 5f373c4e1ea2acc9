"""Project pages: who sees what, who changes what, and hostile text shown safely."""

from urllib.parse import quote

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import Resolver404, resolve, reverse

from notifications.models import Event, EventKind
from projects.models import ApiToken, Finding, Membership, Project, Role, Scan
from projects.services import api_token_create, scan_import
from tests.projects.sarif_documents import (
    sarif_bytes,
    sarif_result,
    sarif_run,
    sarif_runs_bytes,
)

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert("x")</script>\r\nSet-Cookie: evil=1'


@pytest.fixture
def finding(project):
    scan_import(
        project=project,
        sarif=sarif_bytes(
            [sarif_result("B602", message=HOSTILE, uri="<img src=x onerror=1>.py")]
        ),
        source="api",
    )
    return Finding.objects.get(project=project)


def login(client, user):
    client.force_login(user)
    return client


def upload(name="scan.sarif", data=None):
    return SimpleUploadedFile(
        name, data or sarif_bytes([sarif_result()]), "application/json"
    )


# -- anonymous --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["projects:detail", "projects:settings"])
def test_anonymous_is_sent_to_sign_in(client, project, name):
    url = reverse(name, args=[project.slug])
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_anonymous_list_is_sent_to_sign_in(client, db):
    response = client.get(reverse("projects:list"))
    assert response.status_code == 302 and reverse("login") in response["Location"]


# -- list and visibility ----------------------------------------------------------


def test_list_shows_only_my_projects(client, project, other_project, member):
    body = login(client, member).get(reverse("projects:list")).content.decode()
    assert "Shop" in body and "Payroll" not in body
    assert "New project" not in body


def test_security_admin_sees_all_and_can_create(
    client, project, other_project, security_admin
):
    login(client, security_admin)
    body = client.get(reverse("projects:list")).content.decode()
    assert "Shop" in body and "Payroll" in body and "New project" in body
    response = client.post(reverse("projects:list"), {"name": "Mobile app", "slug": ""})
    assert response.status_code == 302
    assert response["Location"] == reverse("projects:settings", args=["mobile-app"])
    assert Project.objects.filter(slug="mobile-app").exists()
    duplicate = client.post(reverse("projects:list"), {"name": "Shop", "slug": "shop"})
    assert (
        duplicate.status_code == 400 and "exists already" in duplicate.content.decode()
    )


def test_members_cannot_create_projects(client, member):
    response = login(client, member).post(reverse("projects:list"), {"name": "Sneaky"})
    assert response.status_code == 403
    assert not Project.objects.filter(name="Sneaky").exists()


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("projects:detail", []),
        ("projects:settings", []),
        ("projects:finding", ["FINDING"]),
    ],
)
def test_other_projects_are_404_like_unknown_ones(
    client, project, other_project, member, name, args
):
    scan_import(
        project=other_project, sarif=sarif_bytes([sarif_result()]), source="api"
    )
    other_finding = Finding.objects.get(project=other_project)
    args = [other_finding.pk if a == "FINDING" else a for a in args]
    login(client, member)
    assert (
        client.get(reverse(name, args=[other_project.slug, *args])).status_code == 404
    )
    assert client.get(reverse(name, args=["no-such-project", *args])).status_code == 404


def test_member_of_a_cannot_change_b(client, project, other_project, member):
    scan_import(
        project=other_project, sarif=sarif_bytes([sarif_result()]), source="api"
    )
    other_finding = Finding.objects.get(project=other_project)
    login(client, member)
    slug = other_project.slug
    posts = [
        (reverse("projects:scan_upload", args=[slug]), {"file": upload()}),
        (
            reverse("projects:finding", args=[slug, other_finding.pk]),
            {"status": "confirmed"},
        ),
        (reverse("projects:token_create", args=[slug]), {"name": "x"}),
        (
            reverse("projects:member_add", args=[slug]),
            {"username": "mike", "role": "owner"},
        ),
    ]
    for url, data in posts:
        assert client.post(url, data).status_code == 404, url
    # A finding of B through A's URL is a 404 too.
    url = reverse("projects:finding", args=[project.slug, other_finding.pk])
    assert client.post(url, {"status": "confirmed"}).status_code == 404
    other_finding.refresh_from_db()
    assert other_finding.status == "open"
    assert Scan.objects.filter(project=other_project).count() == 1
    assert not ApiToken.objects.exists()


# -- overview, filters, hostile text ------------------------------------------------


def test_overview_lists_and_filters_findings(client, project, member):
    scan_import(
        project=project,
        sarif=sarif_bytes(
            [
                sarif_result("HIGHRULE", level="error"),
                sarif_result("LOWRULE", level="note", line=2),
            ]
        ),
        source="api",
    )
    login(client, member)
    url = reverse("projects:detail", args=[project.slug])
    body = client.get(url).content.decode()
    assert "HIGHRULE" in body and "LOWRULE" in body
    body = client.get(url, {"severity": "low"}).content.decode()
    assert "HIGHRULE" not in body and "LOWRULE" in body
    body = client.get(url, {"status": "resolved"}).content.decode()
    assert "HIGHRULE" not in body and "No findings match these filters" in body
    # Unknown filter values are ignored rather than failing, each on its own.
    assert client.get(url, {"severity": "bogus"}).status_code == 200
    body = client.get(url, {"status": "resolved", "severity": "bogus"}).content
    assert b"HIGHRULE" not in body and b"No findings match these filters" in body
    body = client.get(url, {"status": "x" * 5000, "severity": "low"}).content
    assert b"HIGHRULE" not in body and b"LOWRULE" in body


def test_hostile_finding_text_is_stored_as_data_and_escaped(client, finding, member):
    # Stored as data: line breaks as newlines (CRLF too), the markup as it was.
    assert finding.message == HOSTILE.replace("\r\n", "\n")
    login(client, member)
    for url in (
        reverse("projects:detail", args=[finding.project.slug]),
        reverse("projects:finding", args=[finding.project.slug, finding.pk]),
    ):
        response = client.get(url)
        body = response.content.decode()
        assert "<script>alert" not in body and "<img src=x" not in body
        assert (
            "&lt;script&gt;alert" in body and "&lt;img src=x onerror=1&gt;.py" in body
        )
        assert "evil" not in response.cookies and "Set-Cookie" not in response.headers
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_members_do_not_see_owner_controls(client, project, member):
    login(client, member)
    body = client.get(reverse("projects:detail", args=[project.slug])).content.decode()
    assert "Upload a scan" not in body
    body = client.get(
        reverse("projects:settings", args=[project.slug])
    ).content.decode()
    assert "Create token" not in body and "Save member" not in body
    assert "olivia" in body  # the member list is readable


# -- uploads ------------------------------------------------------------------------


def test_owner_uploads_a_scan(client, project, owner):
    login(client, owner)
    response = client.post(
        reverse("projects:scan_upload", args=[project.slug]), {"file": upload()}
    )
    assert response.status_code == 302
    scan = Scan.objects.get()
    assert (scan.source, scan.created_by, scan.new_count) == ("upload", owner, 1)
    follow = client.get(response["Location"]).content.decode()
    assert "Scan imported: 1 new" in follow


def test_upload_with_a_category(client, project, owner):
    login(client, owner)
    page = client.get(reverse("projects:detail", args=[project.slug]))
    assert 'name="category"' in page.content.decode()
    response = client.post(
        reverse("projects:scan_upload", args=[project.slug]),
        {"file": upload(), "category": " codeql-python "},
    )
    assert response.status_code == 302
    assert Scan.objects.get().category == "codeql-python"
    assert Finding.objects.get().category == "codeql-python"


@pytest.mark.parametrize("category", ["x" * 256, "line\nbreak", "\u202e"])
def test_upload_with_an_invalid_category_says_so(client, project, owner, category):
    login(client, owner)
    response = client.post(
        reverse("projects:scan_upload", args=[project.slug]),
        {"file": upload(), "category": category},
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert "printable characters" in body or "at most 255 characters" in body
    assert not Scan.objects.exists()


def test_bad_upload_shows_what_to_fix_and_writes_nothing(client, project, owner):
    login(client, owner)
    url = reverse("projects:scan_upload", args=[project.slug])
    response = client.post(
        url, {"file": upload(data=b'{"version": "2.0.0", "runs": []}')}
    )
    assert response.status_code == 400
    assert (
        "SARIF version &quot;2.0.0&quot; is not supported" in response.content.decode()
    )
    assert not Scan.objects.exists() and not Event.objects.exists()


def test_oversized_upload_is_refused(client, project, owner, settings):
    settings.SARIF_MAX_BYTES = 50
    login(client, owner)
    response = client.post(
        reverse("projects:scan_upload", args=[project.slug]), {"file": upload()}
    )
    assert response.status_code == 400 and "the limit is" in response.content.decode()
    assert not Scan.objects.exists()


def test_members_cannot_upload(client, project, member):
    login(client, member)
    response = client.post(
        reverse("projects:scan_upload", args=[project.slug]), {"file": upload()}
    )
    assert response.status_code == 403
    assert not Scan.objects.exists()


# -- statuses -----------------------------------------------------------------------


def test_owner_changes_status(client, finding, owner):
    login(client, owner)
    url = reverse("projects:finding", args=[finding.project.slug, finding.pk])
    assert 'value="confirmed"' in client.get(url).content.decode()
    response = client.post(url, {"status": "confirmed"})
    assert response.status_code == 302
    finding.refresh_from_db()
    assert finding.status == "confirmed"
    event = Event.objects.get(kind=EventKind.STATUS_CHANGED)
    assert event.actor == owner
    assert "olivia" in client.get(url).content.decode()  # in the history


def test_owner_cannot_make_a_disallowed_move(client, finding, owner):
    login(client, owner)
    url = reverse("projects:finding", args=[finding.project.slug, finding.pk])
    response = client.post(url, {"status": "reopened"})
    assert response.status_code == 400
    finding.refresh_from_db()
    assert finding.status == "open"


def test_members_cannot_change_status(client, finding, member):
    login(client, member)
    url = reverse("projects:finding", args=[finding.project.slug, finding.pk])
    assert "Change status" not in client.get(url).content.decode()
    assert client.post(url, {"status": "confirmed"}).status_code == 403
    finding.refresh_from_db()
    assert (
        finding.status == "open"
        and not Event.objects.filter(kind="status_changed").exists()
    )


# -- settings: tokens and members -----------------------------------------------------


def test_token_is_shown_once_then_only_its_prefix(client, project, owner):
    login(client, owner)
    response = client.post(
        reverse("projects:token_create", args=[project.slug]), {"name": "CI"}
    )
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    token = ApiToken.objects.get()
    body = response.content.decode()
    raw = body.split('class="token-value" type="text" readonly value="')[1].split('"')[
        0
    ]
    assert raw.startswith(token.prefix) and len(raw) > 40
    later = client.get(
        reverse("projects:settings", args=[project.slug])
    ).content.decode()
    assert raw not in later and token.prefix in later


def test_owner_revokes_a_token(client, project, owner):
    token, _raw = api_token_create(project=project, name="CI", actor=owner)
    login(client, owner)
    response = client.post(
        reverse("projects:token_revoke", args=[project.slug, token.pk])
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_members_cannot_create_or_revoke_tokens(client, project, owner, member):
    token, _raw = api_token_create(project=project, name="CI", actor=owner)
    login(client, member)
    assert (
        client.post(
            reverse("projects:token_create", args=[project.slug]), {"name": "x"}
        ).status_code
        == 403
    )
    assert (
        client.post(
            reverse("projects:token_revoke", args=[project.slug, token.pk])
        ).status_code
        == 403
    )
    token.refresh_from_db()
    assert token.revoked_at is None and ApiToken.objects.count() == 1


def test_security_admin_assigns_owners_and_removes_members(
    client, project, security_admin, outsider, member
):
    login(client, security_admin)
    url = reverse("projects:member_add", args=[project.slug])
    assert client.post(url, {"username": "otto", "role": "owner"}).status_code == 302
    assert Membership.objects.get(project=project, user=outsider).role == Role.OWNER
    unknown = client.post(url, {"username": "nobody", "role": "owner"})
    assert (
        unknown.status_code == 400
        and "No active user is called" in unknown.content.decode()
    )
    membership = Membership.objects.get(project=project, user=member)
    remove = reverse("projects:member_remove", args=[project.slug, membership.pk])
    assert client.post(remove).status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()


def test_owners_cannot_manage_members(client, project, owner, outsider):
    login(client, owner)
    url = reverse("projects:member_add", args=[project.slug])
    assert client.post(url, {"username": "otto", "role": "owner"}).status_code == 403
    assert not Membership.objects.filter(user=outsider, project=project).exists()


def test_settings_links_notification_tools_only_when_that_page_exists(
    client, project, owner
):
    url = f"/projects/{project.slug}/settings/notification-tools/"
    try:
        resolve(url)
        exists = True
    except Resolver404:
        exists = False
    body = (
        login(client, owner)
        .get(reverse("projects:settings", args=[project.slug]))
        .content.decode()
    )
    assert (f'href="{url}"' in body) is exists


# -- hostile ids and query parameters -------------------------------------------------

HOSTILE_IDS = [
    "²",  # str.isdigit() says yes, int() says no
    "٣",  # Arabic-Indic three
    "１",  # fullwidth one
    "9" * 19,  # past 18 digits
    "9" * 30,  # past 64 bits
    "9" * 5000,  # past int()'s digit limit
    "999999999999999999",  # 18 digits: an id, but no such row
    "-1",
    "abc",
    "1.0",
]


@pytest.mark.parametrize("bad_id", HOSTILE_IDS)
def test_hostile_ids_in_page_addresses_are_404(client, project, security_admin, bad_id):
    login(client, security_admin)
    base = f"/projects/{project.slug}"
    finding = f"{base}/findings/{quote(bad_id)}/"
    assert client.get(finding).status_code == 404
    for path in (
        finding,
        f"{base}/settings/members/{quote(bad_id)}/remove/",
        f"{base}/settings/tokens/{quote(bad_id)}/revoke/",
    ):
        assert client.post(path, {"status": "confirmed"}).status_code == 404
    assert Membership.objects.filter(project=project).count() == 2


def test_another_projects_ids_are_404_even_for_a_security_admin(
    client, project, other_project, outsider, security_admin
):
    """A security admin sees both projects: the project in the address still scopes
    the finding, membership and token ids."""
    scan_import(
        project=other_project, sarif=sarif_bytes([sarif_result()]), source="api"
    )
    theirs = Finding.objects.get(project=other_project)
    membership = Membership.objects.get(project=other_project)
    token, _raw = api_token_create(project=other_project, name="CI", actor=outsider)
    login(client, security_admin)
    slug = project.slug
    assert (
        client.get(reverse("projects:finding", args=[slug, theirs.pk])).status_code
        == 404
    )
    for name, pk in [
        ("projects:finding", theirs.pk),
        ("projects:member_remove", membership.pk),
        ("projects:token_revoke", token.pk),
    ]:
        response = client.post(reverse(name, args=[slug, pk]), {"status": "confirmed"})
        assert response.status_code == 404
    theirs.refresh_from_db()
    token.refresh_from_db()
    assert theirs.status == "open" and token.revoked_at is None
    assert Membership.objects.filter(pk=membership.pk).exists()


@pytest.mark.parametrize(
    "params",
    [
        {"page": ""},
        {"page": "²"},
        {"page": "٣"},
        {"page": "-1"},
        {"page": "9" * 30},
        {"page": "9" * 5000},
        {"status": ""},
        {"status": "x" * 5000},
        {"severity": "ｈｉｇｈ"},
        {"status": ["open", "resolved"], "severity": ["high", "urgent"]},
    ],
)
def test_hostile_query_parameters_still_show_the_overview(
    client, project, member, params
):
    scan_import(project=project, sarif=sarif_bytes([sarif_result()]), source="api")
    login(client, member)
    response = client.get(reverse("projects:detail", args=[project.slug]), params)
    assert response.status_code == 200


# -- scan summaries and findings without a rule --------------------------------------


def test_findings_without_a_rule_show_no_rule(client, project, member):
    result = sarif_result(None, uri="lib/a.py", line=3, message="Odd thing")
    del result["ruleId"]
    result["locations"][0]["physicalLocation"]["region"]["startColumn"] = 9
    scan_import(project=project, sarif=sarif_bytes([result, result]), source="api")
    finding = Finding.objects.get()
    login(client, member)
    listing = client.get(reverse("projects:detail", args=[project.slug]))
    body = listing.content.decode()
    assert "No rule" in body and "lib/a.py:3:9" in body
    assert "(reported 2 times)" in body
    page = client.get(reverse("projects:finding", args=[project.slug, finding.pk]))
    body = page.content.decode()
    assert "<title>No rule ·" in body and "No rule" in body
    assert "line 3, column 9" in body and "Reported 2 times" in body


def test_scan_list_shows_category_incomplete_run_and_duplicates(
    client, project, member
):
    run = sarif_run(
        [sarif_result(), sarif_result(), sarif_result()],
        automation_id="backend/nightly",
        successful=False,
        notifications=["Analysis timed out"],
    )
    scan_import(project=project, sarif=sarif_runs_bytes(run), source="api")
    login(client, member)
    body = client.get(reverse("projects:detail", args=[project.slug])).content.decode()
    assert "<td>backend</td>" in body
    assert "Incomplete:" in body and "resolved no findings" in body
    assert "Bandit: Analysis timed out" in body
    assert "2 results were identical to others and counted once." in body
