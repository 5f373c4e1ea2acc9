"""The drawer's "Email box": the switch that has a tool read its sender mailbox for
delivery status notifications (bounces), and the checks its IMAP fields share."""

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from integrations.providers import outbound

#: The show-rule of the fields the switch reveals (static/js/drawer.js).
SHOW_WHEN_ON = "email_box=on"


class EmailBoxField(forms.BooleanField):
    """The "Email box" switch. Off is stored as None, as tools saved before the
    switch existed hold it (no key): saving such a tool unchanged changes nothing,
    for the audit log and for the settings a delegated grant is bound to."""

    def __init__(self, **kwargs):
        kwargs.setdefault("label", _("Email box"))
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def clean(self, value):
        return True if super().clean(value) else None


def validate_imap_port(port):
    """IMAP ports: 993, 143, IMAP_ALLOWED_PORTS_EXTRA and M365_IMAP_PORT."""
    if port and not outbound.imap_port_allowed(port):
        raise ValidationError(
            _(
                "Port %(port)s is not allowed for IMAP: use 993 (SSL/TLS) or 143 "
                "(STARTTLS), or add it to IMAP_ALLOWED_PORTS_EXTRA on this server."
            ),
            params={"port": port},
            code="imap_port_not_allowed",
        )
