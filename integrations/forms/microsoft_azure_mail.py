"""The "Microsoft Azure Mail" drawer."""

from django import forms
from django.utils.translation import gettext_lazy as _

from integrations.forms.base import (
    EmailAddressField,
    EmailListField,
    GuidField,
    MessagesPerMinuteField,
    ProviderForm,
    RecipientDomainsField,
    SecretField,
    SecretInput,
    Section,
    TenantField,
    check_messages_per_minute,
    check_recipient_domains,
    show_when,
)
from integrations.forms.certificates import CertificateCredentialMixin
from integrations.forms.email_box import SHOW_WHEN_ON, EmailBoxField
from integrations.providers.clouds import Cloud
from integrations.providers.limits import GRAPH

#: Client Secret (and its expiry) show while "Use a certificate" is not ticked.
SECRET = "use_certificate!=on"
#: The certificate fields show while it is.
CERTIFICATE = "use_certificate=on"


class MicrosoftAzureMailForm(CertificateCredentialMixin, ProviderForm):
    """Client secret, or a certificate and its private key: one of them is required."""

    required_secrets = ("client_secret",)
    advanced_fields = ("messages_per_minute", "allowed_recipient_domains")
    sections = (
        Section(
            _("App registration"),
            (
                "tenant_id",
                "client_id",
                "use_certificate",
                "client_secret",
                "secret_expires_on",
                "certificate",
                "certificate_file",
                "private_key",
                "private_key_file",
                "cloud",
            ),
        ),
        Section(_("Sender and recipients"), ("sender", "recipients")),
        Section(_("Email box"), ("email_box", "mailbox_address")),
    )
    required_when = {
        "client_secret": SECRET,
        "certificate": CERTIFICATE,
        "private_key": CERTIFICATE,
    }

    tenant_id = TenantField(label=_("Tenant ID"))
    client_id = GuidField(label=_("Client ID"))
    client_secret = SecretField(
        label=_("Client Secret"),
        widget=SecretInput(show_when(SECRET)),
        help_text=_(
            "The secret's Value (not its Secret ID), from Certificates & secrets."
        ),
    )
    sender = EmailAddressField(
        label=_("From"),
        help_text=_(
            "A mailbox of your Microsoft 365 tenant, e.g. notifications@contoso.com."
        ),
    )
    recipients = EmailListField(label=_("To"))
    cloud = forms.ChoiceField(
        label=_("Cloud"), choices=Cloud.choices, initial=Cloud.GLOBAL
    )
    secret_expires_on = forms.DateField(
        label=_("Client secret expires"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date", **show_when(SECRET)}),
        help_text=_("Optional. You will be reminded before it expires."),
    )
    email_box = EmailBoxField(
        help_text=_(
            "Read the mailbox for delivery reports through Microsoft Graph, so that "
            "a notification that bounces shows as Bounced. Needs the Mail.Read "
            "application permission. Nothing is deleted or marked read."
        ),
    )
    mailbox_address = EmailAddressField(
        label=_("Mailbox (default: the From address)"),
        required=False,
        widget=forms.TextInput(attrs=show_when(SHOW_WHEN_ON)),
        help_text=_("The mailbox whose inbox receives the delivery reports."),
    )
    messages_per_minute = MessagesPerMinuteField(limits=GRAPH)
    allowed_recipient_domains = RecipientDomainsField()

    field_order = [
        "tenant_id",
        "client_id",
        "use_certificate",
        "client_secret",
        "secret_expires_on",
        "certificate",
        "certificate_file",
        "private_key",
        "private_key_file",
        "cloud",
        "sender",
        "recipients",
        "email_box",
        "mailbox_address",
        "messages_per_minute",
        "allowed_recipient_domains",
    ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in self.CERTIFICATE_FIELDS:
            self.fields[name].widget.attrs.update(show_when(CERTIFICATE))

    def clean(self):
        self._clean_certificate_credential(self.cleaned_data)
        cleaned = super().clean()
        check_messages_per_minute(
            self, cleaned.get("messages_per_minute"), GRAPH, "Microsoft Graph"
        )
        if not cleaned.get("email_box"):
            cleaned.pop("mailbox_address", None)  # not saved while off
        check_recipient_domains(self, cleaned)
        return cleaned

    def required_secrets_now(self, cleaned):
        if self.has_certificate(cleaned) or self.has_certificate_errors():
            return ()
        return self.required_secrets
