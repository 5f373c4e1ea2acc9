"""Malformed SARIF values through every door: refused with their JSON path by the
API (the documented JSON error) and the upload page (a form error), writing nothing.
(`import_sarif` is tested in tests/projects/management/.)"""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from notifications.models import Event
from projects.models import Finding, Scan
from projects.services import api_token_create

pytestmark = pytest.mark.django_db


def odd_documents():
    """Each: (SARIF document, the JSON path its error must name)."""
    result = {"ruleId": "R1", "message": {"text": "m"}}
    run = {"tool": {"driver": {"name": "X"}}}
    deep = {"version": "2.1.0", "runs": [dict(run, results=[])]}
    nested = inner = {}
    for _ in range(400):
        inner["a"] = {}
        inner = inner["a"]
    deep["runs"][0]["properties"] = nested
    return [
        (
            {"version": "2.1.0", "runs": [dict(run, results=[dict(result, level=[])])]},
            "runs[0].results[0].level",
        ),
        (
            {"version": "2.1.0", "runs": [dict(run, results=[dict(result, ruleId=7)])]},
            "runs[0].results[0].ruleId",
        ),
        (deep, "runs[0].properties"),
    ]


def huge_number_document() -> bytes:
    return (
        b'{"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "X", '
        b'"version": ' + b"9" * 5000 + b'}}, "results": []}]}'
    )


@pytest.mark.parametrize("document, path", odd_documents())
def test_api_refuses_odd_values_naming_the_json_path(
    client, project, owner, document, path
):
    _token, raw = api_token_create(project=project, name="CI", actor=owner)
    response = client.post(
        f"/api/v1/projects/{project.slug}/scans",
        json.dumps(document),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_sarif"
    assert path in error["message"]
    assert not (Scan.objects.exists() or Finding.objects.exists())
    assert not Event.objects.exists()


def test_api_refuses_a_5000_digit_number(client, project, owner):
    _token, raw = api_token_create(project=project, name="CI", actor=owner)
    response = client.post(
        f"/api/v1/projects/{project.slug}/scans",
        huge_number_document(),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_sarif"
    assert not Scan.objects.exists()


@pytest.mark.parametrize(
    "data, path",
    [(json.dumps(d).encode(), p) for d, p in odd_documents()]
    + [(huge_number_document(), "4,300 digits")],
)
def test_upload_page_refuses_odd_values_with_a_form_error(
    client, project, owner, data, path
):
    client.force_login(owner)
    response = client.post(
        reverse("projects:scan_upload", args=[project.slug]),
        {"file": SimpleUploadedFile("scan.sarif", data)},
    )
    assert response.status_code == 400
    assert path in response.content.decode()
    assert not (Scan.objects.exists() or Event.objects.exists())
