"""
Certificate credentials for app registrations: a PEM certificate and its private key,
pasted or uploaded in place of a client secret.

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


def certificate_info(
    certificate_pem: str, private_key_pem: str = ""
) -> CertificateInfo:
    """Validate a certificate (and the key, when given): parseable, matching, current."""
    certificate = parse_certificate(certificate_pem)
    if private_key_pem:
        key = parse_private_key(private_key_pem)
        if public_bytes(key.public_key()) != public_bytes(certificate.public_key()):
            raise ValidationError(
                _("The private key does not belong to this certificate."),
                code="key_mismatch",
            )
    now = datetime.datetime.now(datetime.UTC)
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
        thumbprint=certificate.fingerprint(hashes.SHA1()).hex().upper(),  # nosec B303  # Entra ID names a certificate by its SHA-1 thumbprint (x5t)
        expires_on=expires_on,
        subject=certificate.subject.rfc4514_string(),
    )


class PemField(forms.CharField):
    """PEM text: lines allowed (the only such field), size bounded."""

    multiline = True


class SecretPemField(SecretField):
    """A write-only PEM private key."""

    multiline = True


class PemFileField(forms.FileField):
    """An uploaded PEM file, cleaned to its text ("" when nothing was uploaded).

    Bounded like the pasted text; what the text holds is checked by the form, with the
    same checks as a pasted value.
    """

    multiline = True

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault(
            "widget", forms.FileInput(attrs={"accept": ".pem,.crt,.cer,.key,.txt"})
        )
        super().__init__(**kwargs)

    def clean(self, data, initial=None):
        upload = super().clean(data, initial)
        if not upload:
            return ""
        too_large = ValidationError(
            _("The file is too large (at most %(size)d KB)."),
            params={"size": MAX_PEM_BYTES // 1024},
            code="too_large",
        )
        if upload.size is not None and upload.size > MAX_PEM_BYTES:
            raise too_large
        upload.seek(0)
        raw = upload.read(MAX_PEM_BYTES + 1)
        if len(raw) > MAX_PEM_BYTES:
            raise too_large
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = ""
        if not text.isascii() or "-----BEGIN " not in text:
            raise ValidationError(
                _(
                    "This file is not in PEM format (text starting with -----BEGIN). "
                    "Convert a binary .cer or .pfx file to PEM first."
                ),
                code="not_pem",
            )
        return text.strip()


class CertificateCredentialMixin(forms.Form):
    """Adds **Certificate** and **Private key** as an alternative to a client secret,
    each pasted or uploaded as a file (an uploaded file wins over pasted text).

    The form must also declare `client_secret`; one of the two credentials is then
    required. Adds `certificate_thumbprint` and `certificate_expires_on` to
    `cleaned_data` so they are saved with the settings; the uploads end up in
    `certificate` and `private_key`, never saved as files.
    """

    FILE_FIELDS = {"certificate": "certificate_file", "private_key": "private_key_file"}
    #: The choice and the fields it shows (the drawer shows Client Secret otherwise).
    CERTIFICATE_FIELDS = (
        "certificate",
        "certificate_file",
        "private_key",
        "private_key_file",
    )

    use_certificate = forms.BooleanField(
        label=_("Use a certificate instead of a secret"),
        required=False,
        help_text=_(
            "Sign in with a certificate uploaded to the app registration's "
            "Certificates & secrets, and its private key, instead of a client secret."
        ),
    )
    certificate = PemField(
        label=_("Certificate (PEM)"),
        required=False,
        max_length=MAX_PEM_BYTES,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        help_text=_(
            "The certificate uploaded to the app registration's Certificates & secrets."
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
    certificate_file = PemFileField(
        label=_("Certificate file"),
        help_text=_("Or upload the certificate as a PEM file (.pem, .crt)."),
    )
    private_key_file = PemFileField(
        label=_("Private key file"),
        help_text=_("Or upload the private key as a PEM file (.pem, .key)."),
    )

    def certificate_applies(self, cleaned) -> bool:
        return True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A tool saved with a certificate opens with the choice ticked. The choice
        # is not a setting of its own: what is saved says it.
        self.fields["use_certificate"].initial = bool(
            self.initial.get("certificate_thumbprint")
            or self.initial.get("certificate")
        )
        thumbprint = self.initial.get("certificate_thumbprint")
        if thumbprint:
            expires = (self.initial.get("certificate_expires_on") or "")[:10]
            self.fields["certificate"].help_text = _(
                "Thumbprint %(thumbprint)s, expires %(expires)s."
            ) % {"thumbprint": thumbprint, "expires": expires}

    def _clean_certificate_credential(self, cleaned):
        # An upload replaces the pasted text; errors go to the field that was used.
        uploads = {name: cleaned.pop(f, "") for name, f in self.FILE_FIELDS.items()}
        if not cleaned.pop("use_certificate", False) and cleaned.get("client_secret"):
            # "Use a certificate" unticked and a secret typed: the certificate
            # fields, hidden but perhaps still filled, do not count (and a saved
            # certificate is replaced by the secret). Unticked with no secret typed
            # (a form posted without the choice) the certificate counts as before.
            cleaned["certificate"] = ""
            cleaned["private_key"] = ""
            uploads = dict.fromkeys(uploads, "")
            for name in self.CERTIFICATE_FIELDS:
                self._errors.pop(name, None)  # nor do their errors, out of sight
        if not self.certificate_applies(cleaned) or self.has_certificate_errors():
            return
        fields = {}
        for name, uploaded in uploads.items():
            fields[name] = self.FILE_FIELDS[name] if uploaded else name
            if uploaded:
                cleaned[name] = uploaded
        certificate = (cleaned.get("certificate") or "").strip()
        key = cleaned.get("private_key") or ""
        if key and not certificate:
            self.add_error(
                "certificate",
                _(
                    "Paste the certificate that goes with the private key, or upload it."
                ),
            )
            return
        if not certificate:
            cleaned["certificate_thumbprint"] = ""
            cleaned["certificate_expires_on"] = ""
            return
        changed = certificate != (self.initial.get("certificate") or "").strip()
        if not key and (changed or "private_key" not in self.saved_secrets):
            self.add_error(
                "private_key",
                _("Paste the private key of this certificate, or upload its file."),
            )
            return
        try:
            info = certificate_info(certificate, key)
        except ValidationError as error:
            key_codes = ("key_mismatch", "private_key", "encrypted_key")
            field = "private_key" if error.code in key_codes else "certificate"
            self.add_error(fields[field], error)
            return
        cleaned["certificate"] = info.certificate_pem
        cleaned["certificate_thumbprint"] = info.thumbprint
        cleaned["certificate_expires_on"] = info.expires_on.isoformat()

    def has_certificate_errors(self) -> bool:
        """Whether a certificate or key field, pasted or uploaded, has an error."""
        return any(
            self.has_error(name) for pair in self.FILE_FIELDS.items() for name in pair
        )

    def has_certificate(self, cleaned) -> bool:
        return bool(cleaned.get("certificate_thumbprint"))
