"""The "Microsoft Azure Mail" drawer."""

from django import forms
from django.utils.translation import gettext_lazy as _

from integrations.forms.base import (
    EmailAddressField,
    EmailListField,
    GuidField,
    ProviderForm,
    SecretField,
    TenantField,
)
from integrations.forms.certificates import CertificateCredentialMixin
from integrations.providers.clouds import Cloud


class MicrosoftAzureMailForm(CertificateCredentialMixin, ProviderForm):
    """Client secret, or a certificate and its private key: one of them is required."""

    required_secrets = ("client_secret",)

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
    ]

    def clean(self):
        self._clean_certificate_credential(self.cleaned_data)
        return super().clean()

    def required_secrets_now(self, cleaned):
        if self.has_certificate(cleaned) or self.has_certificate_errors():
            return ()
        return self.required_secrets
