"""A refused Client Secret with the shape of a GUID is named as the Secret ID, with
where to find the Value (issue 15, item 11); the value itself is never echoed."""

import logging

import pytest
from django.urls import reverse

from integrations.models import AuditAction, AuditEntry
from integrations.services import (
    client_secret_looks_like_id,
    integration_test_connection,
)
from tests.tools import GRAPH_PROVIDER, azure_mail_values

pytestmark = pytest.mark.django_db

TEST = reverse("integrations:test", args=[GRAPH_PROVIDER])
TOOL = reverse("integrations:tool", args=[GRAPH_PROVIDER])


@pytest.mark.parametrize(
    "value, expected",
    [
        ("0f6c3d2e-1b4a-4c5d-8e9f-a0b1c2d3e4f5", True),
        (" 0F6C3D2E-1B4A-4C5D-8E9F-A0B1C2D3E4F5 ", True),
        ("{0f6c3d2e-1b4a-4c5d-8e9f-a0b1c2d3e4f5}", True),
        ("0f6c3d2e1b4a4c5d8e9fa0b1c2d3e4f5", True),
        ("Sbx8Q~sandbox.client-secret.value_0123456789", False),
        ("0f6c3d2e-1b4a-4c5d-8e9f-a0b1c2d3e4f5x", False),
        ("not-the-secret", False),
        ("", False),
        (None, False),
    ],
)
def test_the_shape_of_a_secret_id(value, expected):
    assert client_secret_looks_like_id({"client_secret": value}) is expected


def test_a_pasted_secret_id_is_named_with_where_the_value_is(
    sandbox, admin_user, caplog
):
    secret_id = sandbox.seed["client_secret_id"]
    with caplog.at_level(logging.DEBUG):
        report = integration_test_connection(
            provider_key=GRAPH_PROVIDER,
            cleaned_data={
                **azure_mail_values(sandbox.seed),
                "client_secret": secret_id,
            },
            actor=admin_user,
        )

    assert report.failed_step.key == "token"
    assert report.error.code == "secret_id_pasted"
    words = report.error.troubleshooting
    assert str(words.title) == "This looks like the Secret ID, not the secret's Value"
    assert "AADSTS7000215" in str(words.text)
    steps = " ".join(str(step) for step in words.steps)
    assert "App registrations › your app › Certificates & secrets" in steps
    assert "Value column" in steps and "right after the secret is created" in steps
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.error_code) == (AuditAction.TESTED, "secret_id_pasted")
    assert secret_id not in caplog.text and secret_id not in entry.detail


def test_any_other_wrong_secret_keeps_the_general_words(sandbox, admin_user):
    report = integration_test_connection(
        provider_key=GRAPH_PROVIDER,
        cleaned_data={**azure_mail_values(sandbox.seed), "client_secret": "wrong"},
        actor=admin_user,
    )
    assert report.error.code == "secret_invalid"


def test_the_drawer_shows_the_hint_without_the_value(
    admin_client, sandbox, graph_values
):
    secret_id = sandbox.seed["client_secret_id"]
    graph_values["client_secret"] = secret_id
    html = admin_client.post(
        TEST, graph_values, HTTP_X_REQUESTED_WITH="fetch"
    ).content.decode()
    assert "This looks like the Secret ID, not the secret&#x27;s Value" in html
    assert "Value column" in html
    assert secret_id not in html


def test_saving_a_secret_id_warns_where_to_find_the_value(
    admin_client, sandbox, graph_values
):
    secret_id = sandbox.seed["client_secret_id"]
    graph_values["client_secret"] = secret_id
    response = admin_client.post(TOOL, graph_values, follow=True)
    html = response.content.decode()
    assert "Microsoft Azure Mail is active." in html
    assert "the Client Secret looks like the Secret ID (a GUID)" in html
    assert "Certificates &amp; secrets, copy the Value column" in html
    assert secret_id not in html


def test_saving_a_real_value_gives_no_warning(admin_client, sandbox, graph_values):
    html = admin_client.post(TOOL, graph_values, follow=True).content.decode()
    assert "Microsoft Azure Mail is active." in html
    assert "looks like the Secret ID" not in html
