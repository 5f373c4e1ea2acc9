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
    TenantField,
    check_messages_per_minute,
    check_recipient_domains,
)
from integrations.forms.certificates import CertificateCredentialMixin
from integrations.providers.clouds import Cloud
from integrations.providers.limits import GRAPH


class MicrosoftAzureMailForm(CertificateCredentialMixin, ProviderForm):
    """Client secret, or a certificate and its private key: one of them is required."""

    required_secrets = ("client_secret",)
    advanced_fields = ("messages_per_minute", "allowed_recipient_domains")

    tenant_id = TenantField(label=_("Tenant ID"))
    client_id = GuidField(label=_("Client ID"))
    client_secret = SecretField(
        label=_("Client Secret"),
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
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("Optional. You will be reminded before it expires."),
    )
    messages_per_minute = MessagesPerMinuteField(limits=GRAPH)
    allowed_recipient_domains = RecipientDomainsField()

    field_order = [
        "tenant_id",
        "client_id",
        "client_secret",
        "certificate",
        "certificate_file",
        "private_key",
        "private_key_file",
        "sender",
        "recipients",
        "cloud",
        "secret_expires_on",
        "messages_per_minute",
        "allowed_recipient_domains",
    ]

    def clean(self):
        self._clean_certificate_credential(self.cleaned_data)
        cleaned = super().clean()
        check_messages_per_minute(
            self, cleaned.get("messages_per_minute"), GRAPH, "Microsoft Graph"
        )
        check_recipient_domains(self, cleaned)
        return cleaned

    def required_secrets_now(self, cleaned):
        if self.has_certificate(cleaned) or self.has_certificate_errors():
            return ()
        return self.required_secrets
