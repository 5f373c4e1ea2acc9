"""Forms for the projects pages. Parsing only; the services decide."""

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils.functional import lazy
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from projects.exceptions import ProjectError
from projects.models import FindingStatus, Role, Severity
from projects.services import MAX_CATEGORY, scan_category_clean

#: format_html, evaluated when rendered (in the language of the request).
_format_html_lazy = lazy(format_html, SafeString)


class ProjectCreateForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=200)
    slug = forms.SlugField(
        label=_("Slug"),
        max_length=100,
        required=False,
        help_text=_("Used in URLs and the API. Leave empty to make one from the name."),
    )


class MembershipForm(forms.Form):
    username = forms.CharField(
        label=_("User name"),
        max_length=150,
        # Suggestions as they type: static/js/member_search.js fills the datalist
        # the settings page puts next to the field.
        widget=forms.TextInput(
            attrs={"list": "member-suggestions", "autocomplete": "off"}
        ),
    )
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices, initial=Role.MEMBER)

    def clean_username(self):
        username = self.cleaned_data["username"].strip()
        user = (
            get_user_model().objects.filter(username=username, is_active=True).first()
        )
        if user is None:
            raise forms.ValidationError(
                _("No active user is called “%(username)s”. Check the spelling."),
                params={"username": username},
            )
        self.cleaned_data["user"] = user
        return username


def _expiry_choices() -> list[tuple[int, str]]:
    """30, 90 and 365 days (and the configured default, if another), or none."""
    days = sorted({30, 90, 365, settings.API_TOKEN_DEFAULT_DAYS} - {0})
    return [
        (n, ngettext_lazy("%(n)d day", "%(n)d days", n) % {"n": n}) for n in days
    ] + [(0, _("No expiry"))]


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        label=_("Token name"),
        max_length=100,
        help_text=_("What will use it, e.g. “GitHub Actions”."),
    )
    # Not required: a client that sends only the name gets API_TOKEN_DEFAULT_DAYS.
    expires_in_days = forms.TypedChoiceField(
        label=_("Expires after"),
        coerce=int,
        required=False,
        empty_value=None,
        help_text=_("Refused from then on; create a new token before."),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["expires_in_days"]
        field.choices = _expiry_choices()
        field.initial = settings.API_TOKEN_DEFAULT_DAYS


class ScanUploadForm(forms.Form):
    file = forms.FileField(
        label=_("SARIF file"),
        # The command is markup (<code>), the sentence is translated text.
        help_text=_format_html_lazy(
            _("A SARIF 2.1.0 JSON file, e.g. from {command}."),
            command=format_html("<code>{}</code>", "bandit -r . -f sarif"),
        ),
    )
    category = forms.CharField(
        label=_("Category"),
        max_length=MAX_CATEGORY,
        required=False,
        help_text=_(
            "Optional, e.g. “codeql-javascript”: the scan replaces only the earlier "
            "results of its tool and category. Empty: each run's own "
            "(runAutomationDetails.id)."
        ),
    )

    def clean_category(self):
        try:
            return scan_category_clean(category=self.cleaned_data["category"])
        except ProjectError as exc:
            raise forms.ValidationError(exc.message, code=exc.code) from None


class FindingFilterForm(forms.Form):
    status = forms.ChoiceField(
        label=_("Status"),
        choices=[("", _("Any status"))] + FindingStatus.choices,
        required=False,
    )
    severity = forms.ChoiceField(
        label=_("Severity"),
        choices=[("", _("Any severity"))] + Severity.choices,
        required=False,
    )


class FindingStatusForm(forms.Form):
    status = forms.ChoiceField(label=_("New status"))

    def __init__(self, *args, choices, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = choices
