"""When a tool's credential expires (issue 14): from the certificate itself, from the
app registration when the app holds Application.Read.All, else the typed date; on
the card and the Operations page. Against the sandbox over TLS."""

import datetime

import pytest
from django.urls import reverse
from django.utils import timezone

from integrations.models import Integration
from integrations.services.expiry import (
    credential_expiry_read,
    integration_credential_expiry_update,
    secret_end_from_registration,
)
from tests.integrations.test_certificates import make_certificate
from tests.tools import activate_azure_mail, grant_application_permissions

pytestmark = pytest.mark.django_db


def in_days(days: int) -> datetime.date:
    return timezone.localdate() + datetime.timedelta(days=days)


def set_secret_expiry(sandbox, days: int) -> None:
    """The seeded secret ends `days` from today (noon UTC), as Entra ID shows it."""
    seed = sandbox.seed
    end = f"{in_days(days).isoformat()}T12:00:00Z"
    sandbox.control(
        "PATCH",
        f"/tenants/{seed['tenant_id']}/apps/{seed['client_id']}"
        f"/secrets/{seed['client_secret_id']}",
        json={"expires_at": end},
    )


def row() -> Integration:
    return Integration.objects.get(provider="microsoft_azure_mail")


def test_certificate_expiry_comes_from_the_certificate(
    sandbox, admin_client, django_capture_on_commit_callbacks
):
    cert_pem, key_pem, thumbprint = make_certificate(days=20)
    seed = sandbox.seed
    sandbox.control(
        "POST",
        f"/tenants/{seed['tenant_id']}/apps/{seed['client_id']}/certificates",
        json={"certificate_pem": cert_pem},
    )
    not_after = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=20)
    with django_capture_on_commit_callbacks(execute=True):
        activate_azure_mail(
            seed,
            client_secret="",
            certificate=cert_pem,
            private_key=key_pem,
            certificate_thumbprint=thumbprint,
            certificate_expires_on=not_after.isoformat(),
            secret_expires_on=in_days(300),  # left over: not the credential in use
        )

    tool = row()
    assert tool.credential_expiry_source == "certificate"
    assert tool.credential_expires_on == timezone.localdate(not_after)
    html = admin_client.get(reverse("integrations:notification_tools")).content.decode()
    assert "Certificate expires in 19 days" in html or (
        "Certificate expires in 20 days" in html
    )
    assert "credential-expiry attention" in html  # under 30 days


def test_secret_expiry_is_read_from_the_app_registration_with_application_read_all(
    sandbox, admin_client, django_capture_on_commit_callbacks
):
    grant_application_permissions(sandbox, "Application.Read.All")
    set_secret_expiry(sandbox, 45)

    with django_capture_on_commit_callbacks(execute=True):
        activate_azure_mail(sandbox.seed, secret_expires_on=in_days(200))

    tool = row()
    assert tool.credential_expiry_source == "app_registration"
    assert tool.credential_expires_on == in_days(45)
    html = admin_client.get(reverse("integrations:notification_tools")).content.decode()
    assert f"Client secret expires in 45 days ({in_days(45).isoformat()})" in html
    assert "credential-expiry attention" not in html  # 30 days or more
    # A rotated end date is picked up by the next (daily) read.
    set_secret_expiry(sandbox, 12)
    integration_credential_expiry_update(integration=tool)
    assert row().credential_expires_on == in_days(12)
    operations = admin_client.get(reverse("operations:overview")).content.decode()
    assert "Microsoft Azure Mail" in operations
    assert '<td class="days-left"><span class="attention">12</span></td>' in operations


def test_typed_date_is_used_when_the_app_may_not_read_its_registration(
    sandbox, caplog, django_capture_on_commit_callbacks
):
    # The seeded app has no Application.Read.All: Graph answers 403.
    set_secret_expiry(sandbox, 45)
    with django_capture_on_commit_callbacks(execute=True):
        activate_azure_mail(sandbox.seed, secret_expires_on=in_days(200))

    tool = row()
    assert tool.credential_expiry_source == "typed"
    assert tool.credential_expires_on == in_days(200)
    assert "cannot read its app registration (permission_missing)" in caplog.text
    assert sandbox.seed["client_secret"] not in caplog.text


def test_no_date_is_known_without_the_permission_or_a_typed_date(sandbox):
    tool = activate_azure_mail(sandbox.seed)
    expiry = credential_expiry_read(tool)
    assert (expiry.credential, expiry.expires_on, expiry.source) == (
        "client_secret",
        None,
        "",
    )


def test_a_failed_read_keeps_the_date_read_before(sandbox):
    grant_application_permissions(sandbox, "Application.Read.All")
    set_secret_expiry(sandbox, 45)
    tool = activate_azure_mail(sandbox.seed)
    integration_credential_expiry_update(integration=tool)
    sandbox.add_fault(target="graph", status=503, count=3)

    integration_credential_expiry_update(integration=row())

    assert (row().credential_expires_on, row().credential_expiry_source) == (
        in_days(45),
        "app_registration",
    )


def test_the_secret_is_found_by_its_hint_and_the_latest_of_several_wins():
    credentials = [
        {"hint": "Abc", "endDateTime": "2030-01-01T00:00:00Z"},
        {"hint": "Xyz", "endDateTime": "2031-01-01T00:00:00Z"},
    ]
    assert secret_end_from_registration(credentials, "Abc~value") == datetime.date(
        2030, 1, 1
    )
    credentials.append({"hint": "Abc", "endDateTime": "2030-06-01T00:00:00Z"})
    assert secret_end_from_registration(credentials, "Abc~value") == datetime.date(
        2030, 6, 1
    )
    assert secret_end_from_registration(credentials, "Qrs~value") is None
    assert secret_end_from_registration([{"hint": "Abc"}], "Abc~value") is None
