"""The HTTP API: tokens, project scoping, hostile input, errors in JSON."""

import json
import logging
from urllib.parse import quote

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.urls import reverse

from notifications.models import Event, EventKind
from projects.models import ApiToken, Finding, Scan
from projects.services import api_token_create, api_token_revoke, scan_import
from tests.projects.sarif_documents import sarif_bytes, sarif_result

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(project, owner):
    _token, raw = api_token_create(project=project, name="CI", actor=owner)
    return raw


@pytest.fixture
def other_token(other_project, outsider):
    _token, raw = api_token_create(project=other_project, name="CI", actor=outsider)
    return raw


def auth(raw):
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def post_scan(client, slug, data, raw, content_type="application/json"):
    return client.post(
        f"/api/v1/projects/{slug}/scans", data, content_type=content_type, **auth(raw)
    )


def seed(project, results=None):
    scan_import(
        project=project,
        sarif=sarif_bytes(
            results
            or [sarif_result("B602"), sarif_result("B105", level="note", line=3)]
        ),
        source="api",
    )


def error_of(response):
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]


# -- authentication -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "token_missing"),
        ({"HTTP_AUTHORIZATION": "Token abc"}, "token_missing"),
        ({"HTTP_AUTHORIZATION": "Bearer m365as_wrong"}, "token_invalid"),
    ],
)
def test_missing_or_wrong_token_is_401(client, project, headers, code):
    response = client.get("/api/v1/projects/shop/findings", **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert error_of(response)["code"] == code


def test_revoked_token_is_401(client, project, owner):
    token, raw = api_token_create(project=project, name="CI", actor=owner)
    api_token_revoke(token=token)
    response = client.get("/api/v1/projects/shop/findings", **auth(raw))
    assert response.status_code == 401
    assert "revoked" in error_of(response)["message"]


def test_session_login_is_not_enough(client, project, owner):
    client.force_login(owner)
    assert client.get("/api/v1/projects/shop/findings").status_code == 401


def test_last_used_at_is_recorded(client, project, token):
    assert (
        client.get("/api/v1/projects/shop/findings", **auth(token)).status_code == 200
    )
    assert ApiToken.objects.get().last_used_at is not None


def test_another_projects_slug_is_404_like_an_unknown_one(
    client, project, other_project, token
):
    seed(other_project)
    for slug in ("payroll", "no-such-project"):
        response = client.get(f"/api/v1/projects/{slug}/findings", **auth(token))
        assert response.status_code == 404
        assert error_of(response)["code"] == "not_found"
        response = post_scan(client, slug, sarif_bytes([sarif_result()]), token)
        assert response.status_code == 404
    assert Scan.objects.filter(project=other_project).count() == 1  # only the seed
    assert not Scan.objects.filter(project=project).exists()


def test_another_projects_finding_is_404(client, project, other_project, token):
    seed(other_project)
    theirs = Finding.objects.filter(project=other_project).first()
    url = f"/api/v1/projects/shop/findings/{theirs.pk}"
    assert client.get(url, **auth(token)).status_code == 404
    response = client.patch(
        url, {"status": "confirmed"}, content_type="application/json", **auth(token)
    )
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == "open"
    assert (
        client.get("/api/v1/projects/shop/findings/abc", **auth(token)).status_code
        == 404
    )


# -- scans ----------------------------------------------------------------------


def test_post_sarif_body_imports_a_scan(client, project, owner, token):
    response = post_scan(client, "shop", sarif_bytes([sarif_result()]), token)
    assert response.status_code == 201
    scan = response.json()["scan"]
    assert (
        scan["new"] == 1 and scan["source"] == "api" and scan["tool_name"] == "Bandit"
    )
    assert Scan.objects.get().created_by == owner
    again = post_scan(client, "shop", sarif_bytes([sarif_result()]), token).json()[
        "scan"
    ]
    assert (again["new"], again["seen_again"]) == (0, 1)


def test_post_multipart_file_imports_a_scan(client, project, token):
    upload = SimpleUploadedFile("bandit.sarif", sarif_bytes([sarif_result()]))
    response = client.post(
        "/api/v1/projects/shop/scans", {"file": upload}, **auth(token)
    )
    assert response.status_code == 201 and response.json()["scan"]["new"] == 1


def test_category_is_taken_from_the_query_string(client, project, token):
    codeql = sarif_bytes([sarif_result("js/xss")], tool="CodeQL")
    response = client.post(
        "/api/v1/projects/shop/scans?category=codeql-javascript",
        codeql,
        content_type="application/json",
        **auth(token),
    )
    assert response.status_code == 201
    assert response.json()["scan"]["category"] == "codeql-javascript"
    assert Finding.objects.get().category == "codeql-javascript"
    # Another category of the same tool resolves nothing of this one.
    response = client.post(
        "/api/v1/projects/shop/scans?category=codeql-python",
        sarif_bytes([], tool="CodeQL"),
        content_type="application/json",
        **auth(token),
    )
    assert response.json()["scan"]["resolved"] == 0
    assert Finding.objects.get().status == "open"


def test_category_is_taken_from_a_multipart_field(client, project, token):
    upload = SimpleUploadedFile("bandit.sarif", sarif_bytes([sarif_result()]))
    response = client.post(
        "/api/v1/projects/shop/scans",
        {"file": upload, "category": "backend"},
        **auth(token),
    )
    assert response.status_code == 201
    assert response.json()["scan"]["category"] == "backend"


def test_an_invalid_category_is_400(client, project, token):
    response = client.post(
        f"/api/v1/projects/shop/scans?category={quote('a' * 256)}",
        sarif_bytes([sarif_result()]),
        content_type="application/json",
        **auth(token),
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_category"
    assert not Scan.objects.exists()


def test_multipart_without_file_field_says_how(client, project, token):
    response = client.post("/api/v1/projects/shop/scans", {"other": "x"}, **auth(token))
    assert response.status_code == 400
    assert "multipart field named “file”" in error_of(response)["message"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"version": "2.0.0", "runs": []}', 'SARIF version "2.0.0" is not supported'),
        (b'{"version": "2.1.0", "runs": "x"}', '"runs" must be a list'),
        (b"", "empty"),
        (b"\x00\xff", "not UTF-8"),
    ],
)
def test_bad_sarif_is_400_with_what_to_fix(client, project, token, body, says):
    response = post_scan(client, "shop", body, token)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_sarif" and says in error["message"]
    assert not Scan.objects.exists() and not Event.objects.exists()


def test_oversized_body_is_413(client, project, token, settings):
    settings.SARIF_MAX_BYTES = 200
    response = post_scan(client, "shop", b" " * 201, token)
    assert response.status_code == 413
    assert error_of(response)["code"] == "sarif_too_large"
    upload = SimpleUploadedFile("big.sarif", b" " * 300)
    settings.SARIF_MAX_BYTES = 250
    response = client.post(
        "/api/v1/projects/shop/scans", {"file": upload}, **auth(token)
    )
    assert response.status_code == 413
    assert not Scan.objects.exists()


def test_body_over_djangos_form_limit_but_under_sarif_limit_is_accepted(
    client, project, token, settings
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = post_scan(client, "shop", sarif_bytes([sarif_result()]), token)
    assert response.status_code == 201


def test_hostile_text_is_stored_as_data(client, project, token):
    hostile = "<script>alert(1)</script>\r\nX-Injected: 1"
    post_scan(client, "shop", sarif_bytes([sarif_result(message=hostile)]), token)
    response = client.get("/api/v1/projects/shop/findings", **auth(token))
    assert response["Content-Type"] == "application/json"
    assert "X-Injected" not in response.headers
    # A CRLF is stored as a newline (projects/sarif_text.py), the rest as it was.
    assert response.json()["results"][0]["message"] == hostile.replace("\r\n", "\n")


def test_wrong_method_is_405_json(client, project, token):
    response = client.get("/api/v1/projects/shop/scans", **auth(token))
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert error_of(response)["code"] == "method_not_allowed"


def test_wrong_method_is_answered_before_the_token(client, project):
    response = client.delete("/api/v1/projects/shop/findings/1")
    assert response.status_code == 405 and response["Allow"] == "GET, PATCH"
    assert error_of(response)["message"] == "Use GET, PATCH on this URL."
    response = client.post("/api/v1/openapi.json")
    assert response.status_code == 405 and response["Allow"] == "GET"
    assert error_of(response)["code"] == "method_not_allowed"


# -- findings -------------------------------------------------------------------


def test_list_findings_with_filters_and_pagination(client, project, token):
    seed(project)
    url = "/api/v1/projects/shop/findings"
    body = client.get(url, **auth(token)).json()
    assert body["count"] == 2 and [f["rule_id"] for f in body["results"]] == [
        "B602",
        "B105",
    ]
    assert set(body["results"][0]) >= {
        "id",
        "severity",
        "status",
        "path",
        "start_line",
        "message",
    }
    assert client.get(url, {"severity": "low"}, **auth(token)).json()["count"] == 1
    assert client.get(url, {"status": "resolved"}, **auth(token)).json()["count"] == 0
    page = client.get(url, {"limit": 1, "offset": 1}, **auth(token)).json()
    assert (page["count"], page["limit"], page["offset"]) == (2, 1, 1)
    assert [f["rule_id"] for f in page["results"]] == ["B105"]


@pytest.mark.parametrize(
    "params",
    [
        {"severity": "urgent"},
        {"status": "done"},
        {"status": "x" * 5000},
        {"severity": "ｈｉｇｈ"},  # fullwidth letters
        {"status": "open\x00"},
    ],
)
def test_bad_filters_are_400(client, project, token, params):
    response = client.get("/api/v1/projects/shop/findings", params, **auth(token))
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_filter"


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "-1"},
        {"limit": "501"},
        {"limit": "²"},
        {"limit": "9" * 5000},  # past int()'s digit limit
        {"offset": "x"},
        {"offset": "-1"},
        {"offset": "+1"},
        {"offset": " 1"},
        {"offset": "1_0"},
        {"offset": "1.0"},
        {"offset": "1e3"},
        {"offset": "²"},  # str.isdigit() says yes, int() says no
        {"offset": "٣"},  # Arabic-Indic three: int() would read 3
        {"offset": "１"},  # fullwidth one
        {"offset": "9" * 30},  # past 64 bits: SQLite "datatype mismatch"
        {"offset": "9" * 5000},
        {"offset": "1000000001"},
    ],
)
def test_bad_pagination_is_400_with_the_range(client, project, token, params):
    response = client.get("/api/v1/projects/shop/findings", params, **auth(token))
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_pagination"
    (name,) = params
    assert f"“{name}” must be a whole number from 0 to" in error["message"]


def test_pagination_edges_are_accepted(client, project, token):
    seed(project)
    url = "/api/v1/projects/shop/findings"
    empty = client.get(url, {"limit": "", "offset": ""}, **auth(token)).json()
    assert (empty["limit"], empty["offset"], empty["count"]) == (50, 0, 2)
    far = client.get(url, {"limit": "500", "offset": "1000000000"}, **auth(token))
    assert far.status_code == 200
    assert far.json()["results"] == [] and far.json()["offset"] == 10**9
    assert client.get(url, {"limit": "0"}, **auth(token)).json()["results"] == []


@pytest.mark.parametrize(
    "finding_id",
    [
        "²",  # str.isdigit() says yes, int() says no
        "٣",  # Arabic-Indic three
        "１",  # fullwidth one
        "9" * 5000,  # past int()'s digit limit
        "9" * 19,  # past 18 digits
        "9" * 30,
        "999999999999999999",  # 18 digits: an id, but no such finding
        "abc",
        "-1",
        "+1",
        " 1",
        "1.0",
        "0x1",
        "1%00",
    ],
)
def test_hostile_finding_ids_are_a_json_404(client, project, token, finding_id):
    seed(project)
    url = "/api/v1/projects/shop/findings/" + quote(finding_id)
    for response in (
        client.get(url, **auth(token)),
        client.patch(
            url, {"status": "confirmed"}, content_type="application/json", **auth(token)
        ),
    ):
        assert response.status_code == 404
        assert error_of(response)["code"] == "not_found"
    assert not Finding.objects.exclude(status="open").exists()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/projects/shop/findings/",  # an empty id
        "/api/v1/projects/shop/findings/1/",
        "/api/v1/projects/shop/nothing-here",
        "/api/v1/",
    ],
)
def test_unknown_api_addresses_are_a_json_404(client, project, token, path):
    response = client.get(path, **auth(token))
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"
    assert "openapi.json" in error_of(response)["message"]
    assert client.post(path, {}, **auth(token)).status_code == 404


@pytest.fixture
def sql_logged():
    """SQL statements and their parameters logged (django.db.backends, DEBUG)."""
    connection.force_debug_cursor = True
    yield
    connection.force_debug_cursor = False


def test_raw_token_never_reaches_the_logs(
    client, project, owner, token, other_project, sql_logged, caplog
):
    """Used, refused, revoked or sent to the wrong project: logs (SQL included) show
    its prefix at most, never the token."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django")
    seed(project)
    finding = Finding.objects.filter(project=project).first()
    url = "/api/v1/projects/shop/findings"
    assert client.get(url, **auth(token)).status_code == 200
    assert client.get(f"{url}/{finding.pk}", **auth(token)).status_code == 200
    assert client.get(f"{url}/²", **auth(token)).status_code == 404
    assert client.get(url, {"offset": "9" * 30}, **auth(token)).status_code == 400
    assert post_scan(client, "shop", b"{not json", token).status_code == 400
    assert (
        client.get("/api/v1/projects/payroll/findings", **auth(token)).status_code
        == 404
    )
    assert client.get(url, **auth(token + "x")).status_code == 401
    assert client.get(url, HTTP_AUTHORIZATION=token).status_code == 401  # no scheme
    api_token_revoke(token=ApiToken.objects.get(project=project))
    assert client.get(url, **auth(token)).status_code == 401

    assert any(r.name == "django.request" for r in caplog.records)
    assert any(r.name == "django.db.backends" for r in caplog.records)
    logged = caplog.text + "\n".join(
        f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in caplog.records
    )
    secret_part = token[len(ApiToken.objects.get().prefix) :]
    assert token not in logged
    assert secret_part not in logged


def test_patch_changes_status_and_emits_event(client, project, owner, token):
    seed(project)
    finding = Finding.objects.get(rule_id="B602")
    url = f"/api/v1/projects/shop/findings/{finding.pk}"
    response = client.patch(
        url, {"status": "confirmed"}, content_type="application/json", **auth(token)
    )
    assert (
        response.status_code == 200
        and response.json()["finding"]["status"] == "confirmed"
    )
    event = Event.objects.get(kind=EventKind.STATUS_CHANGED)
    assert event.payload == {
        "finding_id": finding.pk,
        "from": "open",
        "to": "confirmed",
    }
    assert event.actor == owner


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{oops", "invalid_json"),
        (b"[]", "invalid_body"),
        (b'{"status": 3}', "invalid_body"),
        (b'{"status": "fixed"}', "invalid_status"),
        (b'{"status": "reopened"}', "invalid_status"),
        (b"", "invalid_body"),
        (b"null", "invalid_body"),
        (b"\xff", "invalid_json"),
    ],
)
def test_bad_patch_is_400(client, project, token, body, code):
    seed(project)
    finding = Finding.objects.get(rule_id="B602")
    url = f"/api/v1/projects/shop/findings/{finding.pk}"
    response = client.patch(url, body, content_type="application/json", **auth(token))
    assert response.status_code == 400 and error_of(response)["code"] == code
    finding.refresh_from_db()
    assert finding.status == "open"


def test_patch_body_over_djangos_limit_is_413(client, project, token, settings):
    seed(project)
    finding = Finding.objects.get(rule_id="B602")
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10
    response = client.patch(
        f"/api/v1/projects/shop/findings/{finding.pk}",
        {"status": "confirmed"},
        content_type="application/json",
        **auth(token),
    )
    assert response.status_code == 413 and error_of(response)["code"] == "too_large"


def test_openapi_description_is_served(client, db):
    body = client.get("/api/v1/openapi.json").json()
    assert body["openapi"].startswith("3.1")
    assert set(body["paths"]) >= {
        "/projects/{slug}/scans",
        "/projects/{slug}/findings",
        "/projects/{slug}/findings/{id}",
    }
    json.dumps(body)
    # The name the project settings page links with.
    assert reverse("api:openapi") == "/api/v1/openapi.json"


def test_api_needs_no_csrf_token_but_pages_do(project, owner, token):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    response = post_scan(strict, "shop", sarif_bytes([sarif_result()]), token)
    assert response.status_code == 201
    strict.force_login(owner)
    page = strict.post(f"/projects/{project.slug}/settings/tokens/", {"name": "x"})
    assert page.status_code == 403
