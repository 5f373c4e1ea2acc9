"""The generated OpenAPI description (/api/v1/openapi.json) against the real API.

Real answers of the API, successes and errors, are validated against the document
with openapi-core, so the document cannot drift from what the code answers.
"""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http.request import RawPostDataException
from openapi_core import OpenAPI
from openapi_core.contrib.django import DjangoOpenAPIRequest, DjangoOpenAPIResponse
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec

from projects.models import Finding, Scan, ScanStatus
from projects.scan_queue import scan_import_queued
from projects.services import api_token_create, scan_import
from tests.projects.sarif_documents import sarif_bytes, sarif_result

pytestmark = pytest.mark.django_db

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture
def document(client):
    return client.get("/api/v1/openapi.json").json()


@pytest.fixture
def openapi(document):
    return OpenAPI.from_dict(document)


@pytest.fixture
def token(project, owner):
    _token, raw = api_token_create(project=project, name="CI", actor=owner)
    return raw


@pytest.fixture
def finding(project):
    scan_import(
        project=project,
        sarif=sarif_bytes(
            [sarif_result("B602"), sarif_result("B105", level="note", line=3)]
        ),
        source="api",
    )
    return Finding.objects.get(project=project, rule_id="B602")


class AnsweredRequest(DjangoOpenAPIRequest):
    """The request as the view saw it. The scans view streams the body, after which
    Django refuses `request.body`; validating the response does not need it."""

    @property
    def body(self):
        try:
            return super().body
        except RawPostDataException:
            return b""


def assert_documented(openapi, response):
    """The response's status is documented for its operation, and its content type
    and JSON match what is documented for that status."""
    openapi.validate_response(
        AnsweredRequest(response.wsgi_request), DjangoOpenAPIResponse(response)
    )


def error_schema_validator(document):
    """A validator for the Error component, its references resolved in the document."""
    return OAS31Validator(
        {"$ref": "#/components/schemas/Error", "components": document["components"]}
    )


@pytest.fixture
def call(client, finding, token):
    """call(method, "/findings/{id}", ...): the API under /api/v1/projects/<slug>,
    with the project's token unless `authorization` says otherwise ("" for none).
    `{id}` is the finding's id, or `id` when given (a scan's)."""

    def call(method, path, *, slug="shop", authorization=None, id=None, **kwargs):
        url = f"/api/v1/projects/{slug}" + path.format(
            id=finding.pk if id is None else id
        )
        if authorization is None:
            authorization = f"Bearer {token}"
        headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
        return getattr(client, method)(url, **kwargs, **headers)

    return call


def sarif_upload():
    return {"file": SimpleUploadedFile("bandit.sarif", sarif_bytes([sarif_result()]))}


def large_sarif() -> bytes:
    """A report over SARIF_ASYNC_THRESHOLD_BYTES (lowered by `queue_small`)."""
    return sarif_bytes([sarif_result()]) + b" " * 2048


@pytest.fixture(autouse=True)
def queue_small(settings, tmp_path):
    """Reports over 1 KiB are queued for the worker (`large_sarif`); the others are
    imported at once."""
    settings.SARIF_ASYNC_THRESHOLD_BYTES = 1024
    settings.MEDIA_ROOT = str(tmp_path / "media")


def queued_scan(call) -> int:
    response = call("post", "/scans", data=large_sarif(), content_type=JSON)
    assert response.status_code == 202
    return response.json()["scan"]["id"]


JSON = "application/json"

ANSWERS = {
    # Successes.
    "list findings": (lambda call: call("get", "/findings"), 200),
    "list findings filtered, one page": (
        lambda call: call(
            "get", "/findings", data={"severity": "high", "limit": "1", "offset": "0"}
        ),
        200,
    ),
    "one finding": (lambda call: call("get", "/findings/{id}"), 200),
    "import a SARIF body": (
        lambda call: call(
            "post", "/scans", data=sarif_bytes([sarif_result()]), content_type=JSON
        ),
        201,
    ),
    "import a SARIF file": (
        lambda call: call("post", "/scans", data=sarif_upload()),
        201,
    ),
    "queue a large SARIF body": (
        lambda call: call("post", "/scans", data=large_sarif(), content_type=JSON),
        202,
    ),
    "queue a large SARIF file": (
        lambda call: call(
            "post",
            "/scans",
            data={"file": SimpleUploadedFile("big.sarif", large_sarif())},
        ),
        202,
    ),
    "one scan, queued": (
        lambda call: call("get", "/scans/{id}", id=queued_scan(call)),
        200,
    ),
    "one scan, imported": (
        lambda call: call("get", "/scans/{id}", id=Scan.objects.earliest("pk").pk),
        200,
    ),
    "change a status": (
        lambda call: call(
            "patch", "/findings/{id}", data={"status": "confirmed"}, content_type=JSON
        ),
        200,
    ),
    # Errors.
    "no token": (lambda call: call("get", "/findings", authorization=""), 401),
    "unknown token": (
        lambda call: call("get", "/findings", authorization="Bearer m365as_wrong"),
        401,
    ),
    "another project's slug": (
        lambda call: call("post", "/scans", slug="payroll", data={}),
        404,
    ),
    "not a finding id": (lambda call: call("get", "/findings/abc"), 404),
    "not a scan id": (lambda call: call("get", "/scans/abc"), 404),
    "no such scan": (lambda call: call("get", "/scans/99999"), 404),
    "no such finding": (
        lambda call: call(
            "patch", "/findings/99999", data={"status": "confirmed"}, content_type=JSON
        ),
        404,
    ),
    "bad filter": (lambda call: call("get", "/findings", data={"status": "x"}), 400),
    "bad pagination": (
        lambda call: call("get", "/findings", data={"offset": "-1"}),
        400,
    ),
    "not SARIF": (
        lambda call: call("post", "/scans", data=b"{not json", content_type=JSON),
        400,
    ),
    "multipart without the file": (
        lambda call: call("post", "/scans", data={"other": "x"}),
        400,
    ),
    "body not JSON": (
        lambda call: call("patch", "/findings/{id}", data=b"{oops", content_type=JSON),
        400,
    ),
    "move not allowed": (
        lambda call: call(
            "patch", "/findings/{id}", data={"status": "reopened"}, content_type=JSON
        ),
        400,
    ),
}


@pytest.mark.parametrize("what", ANSWERS)
def test_real_answers_match_the_document(openapi, call, what):
    request, status = ANSWERS[what]
    response = request(call)
    assert response.status_code == status
    assert_documented(openapi, response)


def test_too_large_sarif_matches_the_document(openapi, call, settings):
    settings.SARIF_MAX_BYTES = 100
    response = call("post", "/scans", data=b" " * 101, content_type=JSON)
    assert response.status_code == 413
    assert_documented(openapi, response)


def test_document_is_valid_openapi_3_1(document):
    validate_spec(document)
    assert document["openapi"].startswith("3.1")
    assert document["servers"] == [{"url": "/api/v1"}]


def test_every_documented_operation_answers(document, openapi, call):
    """Each documented path and method is served, and answers as documented."""
    requests = {
        "importScan": {"data": sarif_bytes([sarif_result()]), "content_type": JSON},
        "listFindings": {},
        "getFinding": {},
        "changeFindingStatus": {"data": {"status": "confirmed"}, "content_type": JSON},
        "getScan": {"id": Scan.objects.earliest("pk").pk},
    }
    documented = {
        operation["operationId"]: (method, path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }
    assert set(documented) == set(requests), "add the new operation's request here"
    for operation_id, (method, path) in documented.items():
        relative = path.removeprefix("/projects/{slug}")
        response = call(method, relative, **requests[operation_id])
        assert response.status_code < 300, (operation_id, response.content)
        assert_documented(openapi, response)


def test_error_shape_is_documented(document):
    schemas = document["components"]["schemas"]
    assert schemas["Error"]["required"] == ["error"]
    assert schemas["Error"]["properties"]["error"] == {
        "$ref": "#/components/schemas/ErrorDetail"
    }
    assert schemas["ErrorDetail"]["required"] == ["code", "message"]
    assert {
        name: field["type"]
        for name, field in schemas["ErrorDetail"]["properties"].items()
    } == {"code": "string", "message": "string"}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            # Every operation takes a project token and a project slug.
            assert {"401", "404"} <= set(responses), (method, path)
            assert operation["security"] == [{"ProjectToken": []}]
            for status, response in responses.items():
                if status.startswith("4"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}
    assert document["components"]["securitySchemes"]["ProjectToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A project API token (starts with `m365as_`).",
    }


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", "/api/v1/projects/shop/scans", 405),
        ("delete", "/api/v1/projects/shop/findings/1", 405),
        ("post", "/api/v1/openapi.json", 405),
        ("get", "/api/v1/", 404),
        ("post", "/api/v1/projects/shop/nothing-here", 404),
        ("get", "/api/v1/projects/shop/findings/1/", 404),
    ],
)
def test_answers_outside_the_operations_have_the_documented_error_shape(
    client, document, token, method, path, status
):
    """A wrong method or an unknown address has no operation to be documented
    under, but answers with the same Error schema."""
    response = getattr(client, method)(path, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == status
    assert response["Content-Type"] == JSON
    error_schema_validator(document).validate(response.json())


def test_a_failed_and_a_completed_queued_scan_match_the_document(openapi, call):
    """Every state a polled scan goes through answers as documented."""
    for data, status in [
        (large_sarif(), ScanStatus.COMPLETE),
        (b'{"version": "2.0.0", "runs": []}' + b" " * 2048, ScanStatus.FAILED),
    ]:
        response = call("post", "/scans", data=data, content_type=JSON)
        assert response.status_code == 202
        assert_documented(openapi, response)
        scan_id = response.json()["scan"]["id"]
        scan_import_queued(scan_id=scan_id)
        response = call("get", "/scans/{id}", id=scan_id)
        assert response.json()["scan"]["status"] == status
        assert_documented(openapi, response)
