"""The form of one linked tool in Project › Settings › Notification Tools."""

from urllib.parse import urlencode

from django import forms
from django.core.validators import validate_email
from django.db import models
from django.utils.translation import gettext_lazy as _

from integrations.forms.base import EmailListField
from notifications.models import DeliveryMode, DeliveryStatus
from projects.models import FindingStatus, Severity


class RecipientsChoice(models.TextChoices):
    TOOL = "tool", _("The tool's To")
    PROJECT = "project", _("A list for this project")


class ToolLinkForm(forms.Form):
    enabled = forms.BooleanField(label=_("Enabled"), required=False)
    notify_new_vulnerabilities = forms.BooleanField(
        label=_("New vulnerabilities"), required=False
    )
    minimum_severity = forms.ChoiceField(
        label=_("Minimum severity"), choices=Severity.choices
    )
    notify_scan_completed = forms.BooleanField(
        label=_("Scan completed"), required=False
    )
    notify_status_changed = forms.BooleanField(
        label=_("Status changed"), required=False
    )
    status_transitions = forms.MultipleChoiceField(
        label=_("When a finding becomes"),
        choices=FindingStatus.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("None ticked means every status change."),
    )
    recipients_choice = forms.ChoiceField(
        label=_("Recipients"),
        choices=RecipientsChoice.choices,
        widget=forms.RadioSelect,
        initial=RecipientsChoice.TOOL,
    )
    recipients = EmailListField(label=_("Project recipients"), required=False)
    delivery_mode = forms.ChoiceField(
        label=_("Delivery"), choices=DeliveryMode.choices, widget=forms.RadioSelect
    )

    def __init__(self, *args, link=None, **kwargs):
        if link is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "enabled": link.enabled,
                "notify_new_vulnerabilities": link.notify_new_vulnerabilities,
                "minimum_severity": link.minimum_severity,
                "notify_scan_completed": link.notify_scan_completed,
                "notify_status_changed": link.notify_status_changed,
                "status_transitions": link.status_transitions,
                "recipients_choice": (
                    RecipientsChoice.PROJECT
                    if link.recipients
                    else RecipientsChoice.TOOL
                ),
                "recipients": ", ".join(link.recipients),
                "delivery_mode": link.delivery_mode,
            }
        if link is not None:
            kwargs.setdefault("prefix", f"link-{link.pk}")
        super().__init__(*args, **kwargs)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("recipients_choice") == RecipientsChoice.PROJECT:
            if not cleaned.get("recipients"):
                self.add_error(
                    "recipients", _("Enter at least one address, or use the tool's To.")
                )
        else:
            cleaned["recipients"] = []
        return cleaned


class DeliveryFilterForm(forms.Form):
    """The delivery log's `?status=` filter (blank: every delivery)."""

    status = forms.ChoiceField(
        label=_("Status"),
        choices=[("", _("Any status")), *DeliveryStatus.choices],
        required=False,
    )

    def query_string(self) -> str:
        """`status=...&` for page links, when the filter is valid and set."""
        if self.is_valid() and self.cleaned_data.get("status"):
            return urlencode({"status": self.cleaned_data["status"]}) + "&"
        return ""


class BouncedRecipientClearForm(forms.Form):
    """An owner clears a bounced address of a link."""

    address = forms.CharField(max_length=320, validators=[validate_email])

    def clean_address(self):
        return self.cleaned_data["address"].strip().lower()
