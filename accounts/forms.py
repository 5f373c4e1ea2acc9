from django import forms
from django.core.validators import validate_ipv46_address
from django.utils.translation import gettext_lazy as _

from accounts.selectors import LockoutKind


class UnlockForm(forms.Form):
    """Which lockout to end: a user name, or a client address."""

    kind = forms.ChoiceField(
        choices=[
            (LockoutKind.USER, _("User name")),
            (LockoutKind.ADDRESS, _("Address")),
        ]
    )
    value = forms.CharField(max_length=255, strip=False)

    def clean(self):
        cleaned = super().clean()
        kind, value = cleaned.get("kind"), cleaned.get("value")
        if kind == LockoutKind.ADDRESS and value is not None:
            try:
                validate_ipv46_address(value.strip())
            except forms.ValidationError:
                self.add_error("value", _("Enter a valid IPv4 or IPv6 address."))
        elif kind == LockoutKind.USER and value is not None and not value.strip():
            self.add_error("value", _("Enter the user name."))
        return cleaned


class PersonCreateForm(forms.Form):
    """A new user: the service (accounts.services.user_create) checks the rest."""

    username = forms.CharField(
        label=_("User name"),
        max_length=150,
        help_text=_("What they type to sign in: letters, digits and @ . + - _"),
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    email = forms.EmailField(
        label=_("Email"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
    )
