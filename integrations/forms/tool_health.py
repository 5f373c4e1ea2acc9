"""The Notification Tools page's "Tool health emails go to" form."""

from django import forms
from django.utils.translation import gettext_lazy as _

from integrations.forms.base import EmailListField


class ToolHealthRecipientsForm(forms.Form):
    # Its field shares the page with the drawer's To (`recipients`): the prefix
    # keeps their ids (and the labels that point at them) apart.
    prefix = "health"

    recipients = EmailListField(
        label=_("Tool health emails go to"),
        required=False,
        help_text=_(
            "Who is told when a tool breaks, recovers or its credential is about to "
            "expire: one or more addresses, separated by commas. Blank: every "
            "security admin's address."
        ),
    )
