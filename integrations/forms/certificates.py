"""
Certificate credentials for app registrations: a PEM certificate and its private key,
pasted in place of a client secret.

The key is stored encrypted (`Integration.secrets["private_key"]`); the certificate,
its thumbprint (SHA-1 hex, as the Entra admin center shows it) and its expiry are
plain settings. msal signs the client assertion with them.

https://learn.microsoft.com/entra/identity-platform/certificate-credentials
"""

import datetime
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from integrations.forms.base import SecretField

#: A certificate or key longer than this is not what an app registration uses.
MAX_PEM_BYTES = 16 * 1024


class SecretTextarea(forms.Textarea):
    """A textarea that never renders a value back (a private key)."""

    def format_value(self, value):
        return None


@dataclass(frozen=True)
class CertificateInfo:
    certificate_pem: str
    thumbprint: str
    expires_on: datetime.datetime
    subject: str


def parse_certificate(pem: str) -> x509.Certificate:
    if len(pem.encode()) > MAX_PEM_BYTES:
        raise ValidationError(_("The certificate is too large."), code="too_large")
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise ValidationError(
            _("This is not a PEM certificate (-----BEGIN CERTIFICATE----- …)."),
            code="certificate",
        )


def parse_private_key(pem: str):
    if len(pem.encode()) > MAX_PEM_BYTES:
        raise ValidationError(_("The private key is too large."), code="too_large")
    try:
        return serialization.load_pem_private_key(pem.encode(), password=None)
    except TypeError:
        raise ValidationError(
            _("The private key is encrypted. Paste it without a passphrase."),
            code="encrypted_key",
        )
    except (ValueError, Exception):
        raise ValidationError(
            _("This is not a PEM private key (-----BEGIN PRIVATE KEY----- …)."),
            code="private_key",
        )


def public_bytes(key) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def certificate_info(certificate_pem: str, private_key_pem: str = "") -> CertificateInfo:
    """Validate a certificate (and the key, when given): parseable, matching, current."""
    certificate = parse_certificate(certificate_pem)
    if private_key_pem:
        key = parse_private_key(private_key_pem)
        if public_bytes(key.public_key()) != public_bytes(certificate.public_key()):
            raise ValidationError(
                _("The private key does not belong to this certificate."),
                code="key_mismatch",
            )
    now = datetime.datetime.now(datetime.timezone.utc)
    expires_on = certificate.not_valid_after_utc
    if expires_on <= now:
        raise ValidationError(
            _("This certificate expired on %(date)s. Create a new one."),
            params={"date": expires_on.date().isoformat()},
            code="expired",
        )
    if certificate.not_valid_before_utc > now:
        raise ValidationError(_("This certificate is not valid yet."), code="not_yet")
    return CertificateInfo(
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        thumbprint=certificate.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303
        expires_on=expires_on,
        subject=certificate.subject.rfc4514_string(),
    )


class PemField(forms.CharField):
    """PEM text: lines allowed (the only such field), size bounded."""

    multiline = True


class SecretPemField(SecretField):
    """A write-only PEM private key."""

    multiline = True


class CertificateCredentialMixin(forms.Form):
    """Adds **Certificate** and **Private key** as an alternative to a client secret.

    The form must also declare `client_secret`; one of the two credentials is then
    required. Adds `certificate_thumbprint` and `certificate_expires_on` to
    `cleaned_data` so they are saved with the settings.
    """

    certificate = PemField(
        label=_("Certificate (PEM)"),
        required=False,
        max_length=MAX_PEM_BYTES,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text=_(
            "Instead of a client secret: the certificate uploaded to the app "
            "registration's Certificates & secrets."
        ),
    )
    private_key = SecretPemField(
        label=_("Private key (PEM)"),
        max_length=MAX_PEM_BYTES,
        strip=True,
        widget=SecretTextarea(
            attrs={"rows": 4, "spellcheck": "false", "autocomplete": "off"}
        ),
        help_text=_("The certificate's private key, unencrypted. Stored encrypted."),
    )

    def certificate_applies(self, cleaned) -> bool:
        return True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        thumbprint = self.initial.get("certificate_thumbprint")
        if thumbprint:
            expires = (self.initial.get("certificate_expires_on") or "")[:10]
            self.fields["certificate"].help_text = _(
                "Thumbprint %(thumbprint)s, expires %(expires)s."
            ) % {"thumbprint": thumbprint, "expires": expires}

    def _clean_certificate_credential(self, cleaned):
        certificate = (cleaned.get("certificate") or "").strip()
        key = cleaned.get("private_key") or ""
        if not self.certificate_applies(cleaned):
            return
        if key and not certificate:
            self.add_error("certificate", _("Paste the certificate that goes with the private key."))
            return
        if not certificate:
            cleaned["certificate_thumbprint"] = ""
            cleaned["certificate_expires_on"] = ""
            return
        changed = certificate != (self.initial.get("certificate") or "").strip()
        if not key and (changed or "private_key" not in self.saved_secrets):
            self.add_error("private_key", _("Paste the private key of this certificate."))
            return
        try:
            info = certificate_info(certificate, key)
        except ValidationError as error:
            key_codes = ("key_mismatch", "private_key", "encrypted_key")
            field = "private_key" if error.code in key_codes else "certificate"
            self.add_error(field, error)
            return
        cleaned["certificate"] = info.certificate_pem
        cleaned["certificate_thumbprint"] = info.thumbprint
        cleaned["certificate_expires_on"] = info.expires_on.isoformat()

    def has_certificate(self, cleaned) -> bool:
        return bool(cleaned.get("certificate_thumbprint"))
