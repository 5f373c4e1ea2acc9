"""Every answer under /api/ is JSON in the documented shape (docs/API.md):
`{"error": {"code": ..., "message": ...}}`, whatever goes wrong and wherever."""

import http.client
import json
import logging
from urllib.parse import urlsplit

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from projects import selectors
from projects.services import api_token_create, scan_import
from tests.projects.sarif_documents import sarif_bytes, sarif_result

pytestmark = pytest.mark.django_db

SENTINEL = "sentinel-7f3a-not-for-clients"


@pytest.fixture
def token(project, owner):
    _token, raw = api_token_create(project=project, name="CI", actor=owner)
    return raw


def auth(raw):
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def error_of(response, status):
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    return body["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/",
        "/api/v2/projects/shop/findings",
        "/api/nothing",
        "/api/v1/nothing",
        "/api/v1/projects/shop/nothing",
    ],
)
def test_unknown_addresses_anywhere_under_api_are_a_json_404(client, token, path):
    error = error_of(client.get(path, **auth(token)), 404)
    assert error["code"] == "not_found" and "/api/v1/openapi.json" in error["message"]


def test_unknown_objects_are_a_json_404(client, project, token):
    for path in (
        "/api/v1/projects/shop/findings/999999",
        "/api/v1/projects/shop/scans/999999",
        "/api/v1/projects/nope/findings",
    ):
        assert error_of(client.get(path, **auth(token)), 404)["code"] == "not_found"


def test_wrong_method_is_a_json_405_with_allow(client, token):
    response = client.delete("/api/v1/projects/shop/findings", **auth(token))
    assert error_of(response, 405)["code"] == "method_not_allowed"
    assert response["Allow"] == "GET"


def test_body_over_the_limit_is_a_json_413(client, project, token, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = client.patch(
        "/api/v1/projects/shop/findings/1",
        '{"status": "' + "x" * 200 + '"}',
        content_type="application/json",
        **auth(token),
    )
    assert error_of(response, 413)["code"] == "too_large"


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize(
    "body",
    [b"{bad", b"[" * 100_000, b"{" * 100_000, b"\xff\xfe{"],
    ids=["bad", "[", "{", "bytes"],
)
def test_malformed_or_too_deep_json_is_a_400_without_parser_text(
    client, project, token, settings, body, debug
):
    # 100,000 "[" make the JSON parser raise RecursionError, not ValueError.
    settings.DEBUG = debug
    scan_import(
        project=project, sarif=sarif_bytes([sarif_result("B602")]), source="api"
    )
    finding = project.findings.get()
    response = client.patch(
        f"/api/v1/projects/shop/findings/{finding.pk}",
        body,
        content_type="application/json",
        **auth(token),
    )
    error = error_of(response, 400)
    assert error["code"] == "invalid_json"
    assert "recursion" not in error["message"].lower()
    assert "Expecting" not in error["message"]


def test_an_unexpected_failure_is_a_json_500_without_its_text(
    client, project, token, monkeypatch, caplog
):
    def broken(**kwargs):
        raise RuntimeError(SENTINEL)

    monkeypatch.setattr(selectors, "findings_for_project", broken)
    client.raise_request_exception = False
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = client.get("/api/v1/projects/shop/findings", **auth(token))
    error = error_of(response, 500)
    assert error["code"] == "server_error"
    assert SENTINEL not in response.content.decode()
    assert "RuntimeError" not in response.content.decode()
    # ... but the operator gets the traceback, logged once.
    (logged,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert logged.exc_info and SENTINEL in str(logged.exc_info[1])
    assert logged.status_code == 500


def test_an_unexpected_failure_in_debug_still_hides_the_traceback(
    client, project, token, monkeypatch, settings
):
    settings.DEBUG = True

    def broken(**kwargs):
        raise RuntimeError(SENTINEL)

    monkeypatch.setattr(selectors, "findings_for_project", broken)
    client.raise_request_exception = False
    response = client.get("/api/v1/projects/shop/findings", **auth(token))
    assert error_of(response, 500)["code"] == "server_error"
    assert SENTINEL not in response.content.decode()


class ExplodingMiddleware:
    """Fails before any view runs, like a broken middleware or a lost database."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.headers.get("X-Explode"):
            raise RuntimeError(SENTINEL)
        return self.get_response(request)


@pytest.fixture
def exploding(settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}.ExplodingMiddleware"]


def test_a_failure_outside_the_api_views_is_still_json_under_api(
    client, token, exploding
):
    client.raise_request_exception = False
    response = client.get(
        "/api/v1/projects/shop/findings", HTTP_X_EXPLODE="1", **auth(token)
    )
    assert error_of(response, 500)["code"] == "server_error"
    assert SENTINEL not in response.content.decode()


def test_pages_keep_djangos_html_500(client, exploding):
    client.raise_request_exception = False
    response = client.get("/accounts/login/", HTTP_X_EXPLODE="1")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")
    assert SENTINEL not in response.content.decode()


def test_a_disallowed_host_under_api_is_a_json_400(client, token):
    response = client.get(
        "/api/v1/projects/shop/findings", HTTP_HOST="evil.example", **auth(token)
    )
    assert error_of(response, 400)["code"] == "bad_request"


# -- chunked bodies, through the real WSGI server -------------------------------------


def _send_chunked(url, path, headers, chunks):
    """A request with Transfer-Encoding: chunked and no Content-Length, which the
    Django test client cannot send."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.putrequest("POST", path)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
        try:
            connection.send(body + b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            # The server may answer 411 and close before the body is sent, as
            # any client may find: its answer is still there to read.
            pass
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _send(url, path, headers, body):
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_a_chunked_body_is_refused_with_a_json_411(live_server, project, owner):
    _token, raw = api_token_create(project=project, name="CI", actor=owner)
    sarif = sarif_bytes([sarif_result("B602")])
    headers = {"Authorization": f"Bearer {raw}", "Content-Type": "application/json"}
    path = "/api/v1/projects/shop/scans"

    status, answer_headers, body = _send_chunked(
        live_server.url, path, headers, [sarif[:100], sarif[100:]]
    )
    assert status == 411, body[:300]
    assert answer_headers["Content-Type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == "length_required" and "Content-Length" in error["message"]
    # Not taken as an empty file: nothing was imported.
    assert not project.scans.exists()

    # The same body with its length is imported.
    status, _headers, body = _send(live_server.url, path, headers, sarif)
    assert status == 201, body[:300]
    assert project.scans.get().status == "complete"


def test_a_chunked_body_to_an_unknown_address_is_a_json_411(live_server, db):
    status, headers, body = _send_chunked(
        live_server.url, "/api/v9/anything", {}, [b"{}"]
    )
    assert status == 411 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "length_required"


def test_deeply_nested_json_through_the_real_server_is_a_json_400(
    live_server, project, owner
):
    # As the hostile review sent it: PATCH, 100,000 "[", to a WSGI server.
    _token, raw = api_token_create(project=project, name="CI", actor=owner)
    scan_import(
        project=project, sarif=sarif_bytes([sarif_result("B602")]), source="api"
    )
    finding = project.findings.get()
    parts = urlsplit(live_server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(
            "PATCH",
            f"/api/v1/projects/shop/findings/{finding.pk}",
            body=b"[" * 100_000,
            headers={
                "Authorization": f"Bearer {raw}",
                "Content-Type": "application/json",
            },
        )
        response = connection.getresponse()
        status, content_type, body = (
            response.status,
            response.getheader("Content-Type"),
            response.read(),
        )
    finally:
        connection.close()
    assert status == 400 and content_type == "application/json", body[:300]
    assert json.loads(body)["error"]["code"] == "invalid_json"
    finding.refresh_from_db()
    assert finding.status == "open"


def test_a_request_django_finds_suspicious_is_a_json_400(
    client, project, token, settings
):
    # Two files where one is allowed: Django's TooManyFilesSent, read inside the view.
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 1
    sarif = sarif_bytes([sarif_result("B602")])
    response = client.post(
        "/api/v1/projects/shop/scans",
        {
            "file": SimpleUploadedFile("a.sarif", sarif),
            "other": SimpleUploadedFile("b.sarif", sarif),
        },
        **auth(token),
    )
    assert error_of(response, 400)["code"] == "bad_request"
    assert not project.scans.exists()
