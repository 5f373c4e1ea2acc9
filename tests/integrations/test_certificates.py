"""Certificate credentials instead of client secrets, for SMTP (application) and
Microsoft Azure Mail: validation, thumbprint and expiry, and a signed client
assertion accepted by the sandbox."""

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.test import Client
from django.urls import reverse

from integrations.forms.microsoft_azure_mail import MicrosoftAzureMailForm
from integrations.forms.smtp import SmtpForm
from integrations.models import Integration
from integrations.providers.microsoft_azure_mail import MicrosoftAzureMailProvider
from integrations.providers.smtp import SmtpProvider
from integrations.services import provider_for
from tests.integrations.smtp_support import drawer_data
from tests.sandbox.m365 import Control, trusted_session


def make_certificate(days=365, not_before_days=-1):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "appsec-mail")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=not_before_days))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()
    return cert_pem, key_pem, thumbprint


@pytest.fixture(scope="module")
def certificate():
    return make_certificate()


@pytest.fixture
def ctl(sandbox):
    with trusted_session(sandbox.ca_path) as http:
        yield Control(sandbox, http)


def smtp_form(sb, **overrides):
    data = drawer_data(sb, "oauth_app", client_secret="", **overrides)
    return SmtpForm(data)


# --- validation ----------------------------------------------------------------------


@pytest.mark.django_db
def test_certificate_replaces_the_client_secret_and_shows_its_thumbprint(
    sandbox, certificate
):
    cert_pem, key_pem, thumbprint = certificate
    form = smtp_form(sandbox, certificate=cert_pem, private_key=key_pem)

    assert form.is_valid(), form.errors
    assert form.cleaned_data["certificate_thumbprint"] == thumbprint
    assert form.cleaned_data["certificate_expires_on"][:4].isdigit()

    shown = SmtpForm(initial=form.cleaned_data)
    assert thumbprint in str(shown["certificate"].help_text)


@pytest.mark.django_db
def test_neither_secret_nor_certificate_is_refused(sandbox):
    form = smtp_form(sandbox)

    assert not form.is_valid()
    assert "client_secret" in form.errors


@pytest.mark.django_db
@pytest.mark.parametrize(
    "case, field, words",
    [
        ("mismatch", "private_key", "does not belong to this certificate"),
        ("expired", "certificate", "expired"),
        ("garbage", "certificate", "not a PEM certificate"),
        ("bad_key", "private_key", "not a PEM private key"),
        ("too_large", "certificate", "at most"),
        ("no_key", "private_key", "Paste the private key"),
    ],
)
def test_certificate_problems_are_explained(sandbox, certificate, case, field, words):
    cert_pem, key_pem, _ = certificate
    other_cert, other_key, _ = make_certificate()
    expired_cert, expired_key, _ = make_certificate(days=-1, not_before_days=-30)
    values = {
        "mismatch": (cert_pem, other_key),
        "expired": (expired_cert, expired_key),
        "garbage": (
            "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----",
            key_pem,
        ),
        "bad_key": (cert_pem, "not a key"),
        "too_large": (cert_pem + "A" * 17000, key_pem),
        "no_key": (cert_pem, ""),
    }[case]
    form = smtp_form(sandbox, certificate=values[0], private_key=values[1])

    assert not form.is_valid()
    assert words in " ".join(form.errors.get(field, [])), form.errors


@pytest.mark.django_db
def test_private_key_is_never_rendered_back(sandbox, certificate):
    cert_pem, key_pem, _ = certificate
    form = smtp_form(sandbox, certificate=cert_pem, private_key=key_pem, sender="bad")

    assert not form.is_valid()
    html = form.as_div()
    assert "PRIVATE KEY" not in html
    assert "BEGIN CERTIFICATE" in html


def test_microsoft_azure_mail_form_accepts_a_certificate_instead_of_a_secret(
    certificate,
):
    cert_pem, key_pem, thumbprint = certificate
    form = MicrosoftAzureMailForm(
        {
            "tenant_id": "b5a0c1e2-3f47-4d8a-9c6b-2e1f0a9d8c7b",
            "client_id": "4e9d2a71-8c3b-4f05-a6d2-91b7e0c3f58a",
            "client_secret": "",
            "certificate": cert_pem,
            "private_key": key_pem,
            "sender": "notifications@contoso.onmicrosoft.com",
            "recipients": "security-team@contoso.onmicrosoft.com",
            "cloud": "global",
        }
    )

    assert form.is_valid(), form.errors
    assert form.cleaned_data["certificate_thumbprint"] == thumbprint
    no_credential = MicrosoftAzureMailForm(
        {**form.data, "certificate": "", "private_key": ""}
    )
    assert not no_credential.is_valid()
    assert "client_secret" in no_credential.errors


# --- a signed client assertion, accepted by the sandbox --------------------------------


@pytest.mark.django_db
def test_smtp_application_with_a_certificate_sends(sandbox, ctl, certificate):
    cert_pem, key_pem, thumbprint = certificate
    assert (
        ctl.add_certificate(sandbox.seed["client_id"], cert_pem)["thumbprint"].upper()
        == thumbprint
    )
    form = smtp_form(sandbox, certificate=cert_pem, private_key=key_pem)
    assert form.is_valid(), form.errors
    config = {
        k: v
        for k, v in form.cleaned_data.items()
        if k not in SmtpProvider.secret_fields
    }
    provider = SmtpProvider(config=config, secrets={"private_key": key_pem})

    report = provider.test_connection()

    assert report.ok, report.error
    (message,) = sandbox.messages(to=sandbox.seed["recipient"])
    assert message["authenticated_as"]["kind"] == "app"


@pytest.mark.django_db
def test_unregistered_certificate_is_refused_with_words(sandbox, certificate):
    cert_pem, key_pem, _ = make_certificate()
    form = smtp_form(sandbox, certificate=cert_pem, private_key=key_pem)
    assert form.is_valid(), form.errors
    config = {
        k: v
        for k, v in form.cleaned_data.items()
        if k not in SmtpProvider.secret_fields
    }

    report = SmtpProvider(
        config=config, secrets={"private_key": key_pem}
    ).test_connection()

    assert report.failed_step.key == "authenticate"
    assert report.error.code in ("certificate_invalid", "authentication_failed")


@pytest.mark.django_db
def test_azure_mail_with_a_certificate_sends_through_graph(sandbox, ctl, certificate):
    cert_pem, key_pem, thumbprint = certificate
    ctl.add_certificate(sandbox.seed["client_id"], cert_pem)
    provider = MicrosoftAzureMailProvider(
        config={
            "tenant_id": sandbox.seed["tenant_id"],
            "client_id": sandbox.seed["client_id"],
            "sender": sandbox.seed["sender"],
            "recipients": [sandbox.seed["recipient"]],
            "cloud": "global",
            "certificate": cert_pem,
            "certificate_thumbprint": thumbprint,
        },
        secrets={"private_key": key_pem},
    )

    report = provider.test_connection()

    assert report.ok, report.error
    assert sandbox.messages(to=sandbox.seed["recipient"])


@pytest.mark.django_db
def test_saved_key_is_encrypted_and_certificate_is_in_config(
    sandbox, ctl, certificate, django_user_model
):
    cert_pem, key_pem, thumbprint = certificate
    ctl.add_certificate(sandbox.seed["client_id"], cert_pem)
    admin = django_user_model.objects.create_superuser(
        "a", "a@contoso.onmicrosoft.com", "x-pass-123"
    )
    client = Client()
    client.force_login(admin)
    data = drawer_data(
        sandbox,
        "oauth_app",
        client_secret="",
        certificate=cert_pem,
        private_key=key_pem,
    )

    response = client.post(reverse("integrations:validate", args=["smtp"]), data)

    assert response.status_code == 302, response.content.decode()[:3000]
    row = Integration.objects.get(provider="smtp")
    assert row.config["certificate_thumbprint"] == thumbprint
    assert row.secrets["private_key"].startswith("-----BEGIN PRIVATE KEY")
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT secrets FROM integrations_integration WHERE id = %s", [row.pk]
        )
        raw = cursor.fetchone()[0]
    assert "PRIVATE KEY" not in raw
    drawer = client.get(reverse("integrations:tool", args=["smtp"])).content.decode()
    assert thumbprint in drawer
    assert "PRIVATE KEY-----" not in drawer.replace("Private key (PEM)", "")
    assert provider_for(row).test_connection().ok


# --- uploaded instead of pasted ----------------------------------------------------------


def pem_file(name, content):
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = content.encode() if isinstance(content, str) else content
    return SimpleUploadedFile(name, data, content_type="application/x-pem-file")


def graph_data(**overrides):
    data = {
        "tenant_id": "b5a0c1e2-3f47-4d8a-9c6b-2e1f0a9d8c7b",
        "client_id": "4e9d2a71-8c3b-4f05-a6d2-91b7e0c3f58a",
        "client_secret": "",
        "sender": "notifications@contoso.onmicrosoft.com",
        "recipients": "security-team@contoso.onmicrosoft.com",
        "cloud": "global",
    }
    data.update(overrides)
    return data


@pytest.mark.django_db
@pytest.mark.parametrize("form_for", ["smtp", "graph"])
def test_uploaded_certificate_and_key_replace_the_client_secret(
    sandbox, certificate, form_for
):
    cert_pem, key_pem, thumbprint = certificate
    files = {
        "certificate_file": pem_file("appsec.crt", cert_pem),
        "private_key_file": pem_file("appsec.key", key_pem),
    }
    form = (
        SmtpForm(drawer_data(sandbox, "oauth_app", client_secret=""), files)
        if form_for == "smtp"
        else MicrosoftAzureMailForm(graph_data(), files)
    )

    assert form.is_multipart()
    assert form.is_valid(), form.errors
    assert form.cleaned_data["certificate_thumbprint"] == thumbprint
    assert form.cleaned_data["private_key"] == key_pem.strip()
    # The uploads become the certificate and the key: nothing else is kept of them.
    assert "certificate_file" not in form.cleaned_data
    assert "private_key_file" not in form.cleaned_data


@pytest.mark.django_db
def test_pasted_certificate_with_an_uploaded_key_works(sandbox, certificate):
    cert_pem, key_pem, thumbprint = certificate
    form = SmtpForm(
        drawer_data(sandbox, "oauth_app", client_secret="", certificate=cert_pem),
        {"private_key_file": pem_file("appsec.key", key_pem)},
    )

    assert form.is_valid(), form.errors
    assert form.cleaned_data["certificate_thumbprint"] == thumbprint


@pytest.mark.django_db
def test_an_uploaded_certificate_wins_over_the_pasted_one(sandbox, certificate):
    cert_pem, key_pem, thumbprint = certificate
    old_cert, _, _ = make_certificate()
    form = SmtpForm(
        drawer_data(sandbox, "oauth_app", client_secret="", certificate=old_cert),
        {
            "certificate_file": pem_file("new.crt", cert_pem),
            "private_key_file": pem_file("new.key", key_pem),
        },
    )

    assert form.is_valid(), form.errors
    assert form.cleaned_data["certificate_thumbprint"] == thumbprint


def der_certificate(cert_pem):
    return x509.load_pem_x509_certificate(cert_pem.encode()).public_bytes(
        serialization.Encoding.DER
    )


@pytest.mark.django_db
@pytest.mark.parametrize("form_for", ["smtp", "graph"])
@pytest.mark.parametrize(
    "case, field, words",
    [
        ("binary_der", "certificate_file", "not in PEM format"),
        ("text_not_pem", "certificate_file", "not in PEM format"),
        ("broken_pem", "certificate_file", "not a PEM certificate"),
        ("oversized", "certificate_file", "too large"),
        ("oversized_key", "private_key_file", "too large"),
        ("key_not_pem", "private_key_file", "not in PEM format"),
        ("key_is_a_certificate", "private_key_file", "not a PEM private key"),
        ("mismatch", "private_key_file", "does not belong to this certificate"),
        ("expired", "certificate_file", "expired"),
    ],
)
def test_hostile_uploads_are_refused_at_the_file_field(
    sandbox, certificate, form_for, case, field, words
):
    cert_pem, key_pem, _ = certificate
    _, other_key, _ = make_certificate()
    expired_cert, expired_key, _ = make_certificate(days=-1, not_before_days=-30)
    cert, key = {
        "binary_der": (der_certificate(cert_pem), key_pem),
        "text_not_pem": (b"just some text, no certificate here\n", key_pem),
        "broken_pem": (
            "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n",
            key_pem,
        ),
        "oversized": (cert_pem + "A" * 17000, key_pem),
        "oversized_key": (cert_pem, key_pem + "\n" * 17000),
        "key_not_pem": (cert_pem, b"\x30\x82\x04\xa4\x02\x01\x00" + b"\x00" * 64),
        "key_is_a_certificate": (cert_pem, cert_pem),
        "mismatch": (cert_pem, other_key),
        "expired": (expired_cert, expired_key),
    }[case]
    files = {
        "certificate_file": pem_file("upload.crt", cert),
        "private_key_file": pem_file("upload.key", key),
    }
    form = (
        SmtpForm(drawer_data(sandbox, "oauth_app", client_secret=""), files)
        if form_for == "smtp"
        else MicrosoftAzureMailForm(graph_data(), files)
    )

    assert not form.is_valid()
    assert words in " ".join(form.errors.get(field, [])), form.errors
    # The admin chose a certificate: the error is about it, not a missing secret.
    assert "client_secret" not in form.errors
    assert key_pem.splitlines()[1] not in form.as_div()  # the key is never shown back


@pytest.mark.django_db
def test_drawers_upload_as_multipart(admin_client, sandbox):
    for key in ("microsoft_azure_mail", "smtp"):
        drawer = admin_client.get(
            reverse("integrations:tool", args=[key])
        ).content.decode()
        assert 'enctype="multipart/form-data"' in drawer
        assert 'type="file" name="certificate_file"' in drawer
        assert 'type="file" name="private_key_file"' in drawer


@pytest.mark.django_db
def test_azure_mail_saves_an_uploaded_certificate(
    admin_client, sandbox, ctl, certificate
):
    cert_pem, key_pem, thumbprint = certificate
    ctl.add_certificate(sandbox.seed["client_id"], cert_pem)
    data = graph_data(
        certificate_file=pem_file("appsec.pem", cert_pem),
        private_key_file=pem_file("appsec-key.pem", key_pem),
    )

    response = admin_client.post(
        reverse("integrations:tool", args=["microsoft_azure_mail"]), data
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    row = Integration.objects.get(provider="microsoft_azure_mail")
    assert row.config["certificate_thumbprint"] == thumbprint
    assert row.config["certificate"].startswith("-----BEGIN CERTIFICATE")
    assert "PRIVATE KEY" not in str(row.config)
    assert not {"certificate_file", "private_key_file"} & set(row.config)
    assert row.secrets["private_key"] == key_pem.strip()
    assert provider_for(row).test_connection().ok


@pytest.mark.django_db
def test_smtp_validates_and_saves_an_uploaded_certificate(
    admin_client, sandbox, ctl, certificate
):
    cert_pem, key_pem, thumbprint = certificate
    ctl.add_certificate(sandbox.seed["client_id"], cert_pem)
    data = drawer_data(
        sandbox,
        "oauth_app",
        client_secret="",
        certificate_file=pem_file("appsec.pem", cert_pem),
        private_key_file=pem_file("appsec-key.pem", key_pem),
    )

    response = admin_client.post(reverse("integrations:validate", args=["smtp"]), data)

    assert response.status_code == 302, response.content.decode()[:3000]
    row = Integration.objects.get(provider="smtp")
    assert row.config["certificate_thumbprint"] == thumbprint
    assert row.secrets["private_key"] == key_pem.strip()
    assert sandbox.messages(to="sec-admin@example.com")


@pytest.mark.django_db
def test_test_connection_uses_an_uploaded_certificate(
    admin_client, sandbox, ctl, certificate
):
    cert_pem, key_pem, _ = certificate
    ctl.add_certificate(sandbox.seed["client_id"], cert_pem)
    data = graph_data(
        certificate_file=pem_file("appsec.pem", cert_pem),
        private_key_file=pem_file("appsec-key.pem", key_pem),
    )

    response = admin_client.post(
        reverse("integrations:test", args=["microsoft_azure_mail"]),
        data,
        headers={"X-Requested-With": "fetch"},
    )

    assert "Connection successful" in response.content.decode(), (
        response.content.decode()
    )


@pytest.mark.django_db
def test_switching_back_to_a_secret_forgets_the_private_key(
    admin_client, sandbox, ctl, certificate
):
    cert_pem, key_pem, _thumbprint = certificate
    ctl.add_certificate(sandbox.seed["client_id"], cert_pem)
    url = reverse("integrations:tool", args=["microsoft_azure_mail"])
    response = admin_client.post(
        url,
        graph_data(
            tenant_id=sandbox.seed["tenant_id"],
            client_id=sandbox.seed["client_id"],
            sender=sandbox.seed["sender"],
            use_certificate="on",
            certificate=cert_pem,
            private_key=key_pem,
        ),
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Integration.objects.get(provider="microsoft_azure_mail").secrets[
        "private_key"
    ]

    response = admin_client.post(
        url,
        graph_data(
            tenant_id=sandbox.seed["tenant_id"],
            client_id=sandbox.seed["client_id"],
            sender=sandbox.seed["sender"],
            client_secret=sandbox.seed["client_secret"],
            certificate=cert_pem,  # still in the hidden field
        ),
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    row = Integration.objects.get(provider="microsoft_azure_mail")
    assert "private_key" not in row.secrets
    assert not row.config.get("certificate")
    assert not row.config.get("certificate_thumbprint")
    assert row.secrets["client_secret"] == sandbox.seed["client_secret"]
    assert provider_for(row).test_connection().ok
