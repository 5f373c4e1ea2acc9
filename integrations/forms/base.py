"""
Drawer forms. Each provider declares its form; the shared base validates what every
tool needs: no CR or LF anywhere, bounded lengths, and write-only secret fields (never
rendered back, blank keeps the saved value).
"""

import re
import uuid

from django import forms
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _

_DOMAIN = re.compile(
    r"^(?=.{4,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{1,62}$",
    re.IGNORECASE,
)
_LIST_SEPARATORS = re.compile(r"[,;\s]+")
MAX_RECIPIENTS = 50


def reject_line_breaks(value):
    if isinstance(value, str) and ("\r" in value or "\n" in value):
        raise ValidationError(_("Line breaks are not allowed here."), code="line_break")


def validate_guid(value):
    try:
        uuid.UUID(value)
    except ValueError:
        raise ValidationError(
            _("Enter a GUID such as 00000000-0000-0000-0000-000000000000."),
            code="guid",
        )
    if not re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", value):
        raise ValidationError(
            _("Enter the GUID in its usual 8-4-4-4-12 form."), code="guid"
        )


class GuidField(forms.CharField):
    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 36)
        super().__init__(**kwargs)

    def validate(self, value):
        super().validate(value)
        if value:
            validate_guid(value)


class TenantField(forms.CharField):
    """A tenant GUID or one of its domains (contoso.onmicrosoft.com)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 253)
        super().__init__(**kwargs)

    def to_python(self, value):
        return super().to_python(value).lower()

    def validate(self, value):
        super().validate(value)
        if not value:
            return
        if re.fullmatch(r"[0-9a-f-]{36}", value):
            validate_guid(value)
        elif not _DOMAIN.match(value):
            raise ValidationError(
                _(
                    "Enter the Directory (tenant) ID, a GUID, or a domain of the "
                    "tenant such as contoso.onmicrosoft.com."
                ),
                code="tenant",
            )


class EmailAddressField(forms.CharField):
    """One address, nothing else (no display name, no list)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 254)
        super().__init__(**kwargs)

    def validate(self, value):
        super().validate(value)
        if value:
            if _LIST_SEPARATORS.search(value):
                raise ValidationError(_("Enter a single email address."), code="single")
            validate_email(value)


class EmailListField(forms.CharField):
    """One or more addresses separated by commas or semicolons."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 2000)
        kwargs.setdefault("help_text", _("One or more addresses, separated by commas."))
        super().__init__(**kwargs)

    def prepare_value(self, value):
        # Saved settings hold a list; the text box shows it comma-separated.
        if isinstance(value, (list, tuple)):
            return ", ".join(value)
        return value

    def clean(self, value):
        value = super().clean(value)
        if not value:
            return []
        addresses = [a for a in _LIST_SEPARATORS.split(value) if a]
        if len(addresses) > MAX_RECIPIENTS:
            raise ValidationError(
                _("Enter at most %(max)d addresses."), params={"max": MAX_RECIPIENTS}
            )
        bad = []
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                bad.append(address)
        if bad:
            raise ValidationError(
                _("These are not valid email addresses: %(bad)s"),
                params={"bad": ", ".join(bad[:5])},
                code="invalid",
            )
        return list(dict.fromkeys(a.lower() for a in addresses))


class SecretField(forms.CharField):
    """Write-only: never rendered back. Blank means "keep the saved value"."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 1024)
        kwargs.setdefault("required", False)
        kwargs.setdefault(
            "widget",
            forms.PasswordInput(
                render_value=False, attrs={"autocomplete": "new-password"}
            ),
        )
        kwargs.setdefault("strip", True)
        super().__init__(**kwargs)


class ProviderForm(forms.Form):
    """Base of every drawer form.

    `saved_secrets` names the secret fields that already have a stored value; a
    blank secret field is then valid and keeps it.
    """

    #: Secret fields that must have a value, entered now or saved before.
    required_secrets: tuple[str, ...] = ()

    def __init__(self, *args, saved_secrets=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.saved_secrets = set(saved_secrets)
        for name, field in self.fields.items():
            # PEM text (certificates, keys) is the one kind of value with lines.
            if not getattr(field, "multiline", False):
                field.validators.append(reject_line_breaks)
            if isinstance(field, SecretField) and name in self.saved_secrets:
                field.widget.attrs["placeholder"] = _(
                    "Saved (hidden). Leave blank to keep it."
                )
                field.saved = True

    def clean(self):
        cleaned = super().clean()
        for name in self.required_secrets_now(cleaned):
            if not cleaned.get(name) and name not in self.saved_secrets:
                self.add_error(name, _("This field is required."))
        return cleaned

    def required_secrets_now(self, cleaned) -> tuple[str, ...]:
        """Secret fields required given the other values (hook for subclasses)."""
        return self.required_secrets
