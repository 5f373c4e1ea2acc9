"""The "SMTP" drawer: any SMTP server, or Exchange Online with Basic or OAuth 2.0."""

import json

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from integrations.forms.base import (
    EmailAddressField,
    EmailListField,
    EndpointUrlField,
    HostField,
    MessagesPerMinuteField,
    ProviderForm,
    RecipientDomainsField,
    ScopeField,
    SecretField,
    SecretInput,
    TenantField,
    check_messages_per_minute,
    check_recipient_domains,
    validate_display_name,
    validate_guid,
    validate_outbound_host,
    validate_smtp_port,
    validate_token,
)
from integrations.forms.certificates import CertificateCredentialMixin
from integrations.providers.clouds import Cloud, preset
from integrations.providers.limits import EXCHANGE_SMTP, GRAPH
from integrations.providers.smtp_choices import (
    DEFAULT_SMTP_SCOPE,
    MICROSOFT_SMTP_HOSTS,
    OTHER_SERVER,
    AuthType,
    CommunicationType,
    MinimumTls,
    Security,
)
from integrations.selectors import oauth_redirect_url


def _show(rule: str) -> dict:
    return {"data_show_when": rule}


def _cloud_presets() -> str:
    return json.dumps(
        {
            cloud.value: {"smtp_host": preset(cloud).smtp_host, "smtp_port": "587"}
            for cloud in Cloud
        }
    )


class SmtpForm(CertificateCredentialMixin, ProviderForm):
    advanced_fields = ("messages_per_minute", "allowed_recipient_domains")

    cloud = forms.ChoiceField(
        label=_("Cloud"),
        choices=[*Cloud.choices, (OTHER_SERVER, _("Other SMTP server"))],
        initial=Cloud.GLOBAL,
        help_text=_("A Microsoft 365 cloud fills in its SMTP host and port 587."),
    )
    smtp_host = HostField(
        label=_("SMTP host"),
        required=False,
        initial="smtp.office365.com",
    )
    smtp_port = forms.IntegerField(
        label=_("SMTP port"), min_value=1, max_value=65535, initial=587, required=False
    )
    security = forms.ChoiceField(label=_("Security"), initial=Security.STARTTLS)
    minimum_tls = forms.ChoiceField(
        label=_("Minimum TLS version"),
        choices=MinimumTls.choices,
        initial=MinimumTls.TLS_1_2,
    )
    sender = EmailAddressField(
        label=_("From address"),
        help_text=_(
            "With OAuth 2.0 this must be the mailbox that signs in or is authorized."
        ),
    )
    sender_name = forms.CharField(
        label=_("Sender name"),
        max_length=100,
        required=False,
        validators=[validate_display_name],
    )
    recipients = EmailListField(label=_("To"))
    auth_type = forms.ChoiceField(
        label=_("Authentication type"),
        choices=AuthType.choices,
        initial=AuthType.OAUTH_APP,
    )
    communication_type = forms.ChoiceField(
        label=_("Communication type"),
        choices=CommunicationType.choices,
        initial=CommunicationType.SMTP,
        widget=forms.Select(attrs=_show("auth_type=oauth_delegated")),
        help_text=_(
            "API sends through Microsoft Graph (/me/sendMail, scope Mail.Send)."
        ),
    )
    username = forms.CharField(
        label=_("Username"),
        max_length=254,
        required=False,
        widget=forms.TextInput(attrs=_show("auth_type=basic|oauth_delegated")),
        help_text=_(
            "An email address (for OAuth 2.0 delegated, the From address); another "
            "SMTP server may use a plain user name."
        ),
    )
    password = SecretField(
        label=_("Password"), widget=SecretInput(_show("auth_type=basic"))
    )
    tenant_id = TenantField(
        label=_("Tenant ID"),
        required=False,
        widget=forms.TextInput(attrs=_show("auth_type=oauth_app|oauth_delegated")),
    )
    client_id = forms.CharField(
        label=_("Client ID"),
        max_length=255,
        required=False,
        validators=[validate_token],
        widget=forms.TextInput(attrs=_show("auth_type=oauth_app|oauth_delegated")),
        help_text=_(
            "A GUID for Microsoft 365; for a non-Microsoft server, its client ID."
        ),
    )
    client_secret = SecretField(
        label=_("Client Secret"),
        widget=SecretInput(_show("auth_type=oauth_app|oauth_delegated")),
        help_text=_("The secret's Value (not its Secret ID)."),
    )
    authorization_endpoint = EndpointUrlField(
        label=_("Authorization endpoint"),
        required=False,
        widget=forms.URLInput(attrs=_show("auth_type=oauth_delegated")),
        help_text=_(
            "Only for a non-Microsoft server; leave blank to use the Tenant ID. "
            "An https:// URL; internal hosts only where this server allows them."
        ),
    )
    token_endpoint = EndpointUrlField(
        label=_("Token endpoint"),
        required=False,
        widget=forms.URLInput(attrs=_show("auth_type=oauth_delegated")),
        help_text=_(
            "An https:// URL (the Client Secret is sent to it); internal hosts only "
            "where this server allows them (OUTBOUND_ALLOWED_HOSTS). Plain http:// "
            "only if OAUTH_ALLOW_INSECURE_ENDPOINTS is on."
        ),
    )
    scope = ScopeField(
        label=_("Scope"),
        required=False,
        initial=DEFAULT_SMTP_SCOPE,
        widget=forms.TextInput(
            attrs=_show("auth_type=oauth_delegated&communication_type=smtp")
        ),
        help_text=_("One or more scopes, separated by spaces."),
    )
    redirect_url = forms.CharField(
        label=_("Redirect URL"),
        required=False,
        disabled=True,
        widget=forms.TextInput(
            attrs={
                "readonly": True,
                "data_copy": "1",
                **_show("auth_type=oauth_delegated"),
            }
        ),
        help_text=_("Register this URL as a Web redirect URI of the app."),
    )
    test_email = EmailAddressField(
        label=_("Test email address"),
        required=False,
        help_text=_("Test sends a message here (default: the To addresses)."),
    )
    messages_per_minute = MessagesPerMinuteField(
        limits=EXCHANGE_SMTP,
        help_text=_(
            "Optional. How many messages this tool may send per minute from the From "
            "mailbox, all workers together. Leave blank for Microsoft's limit (30 a "
            "minute by SMTP, 1,000 by the Graph API); another SMTP server may allow "
            "more."
        ),
    )
    allowed_recipient_domains = RecipientDomainsField()

    field_order = [
        "cloud",
        "smtp_host",
        "smtp_port",
        "security",
        "minimum_tls",
        "sender",
        "sender_name",
        "recipients",
        "auth_type",
        "communication_type",
        "username",
        "password",
        "tenant_id",
        "client_id",
        "client_secret",
        "certificate",
        "certificate_file",
        "private_key",
        "private_key_file",
        "authorization_endpoint",
        "token_endpoint",
        "scope",
        "redirect_url",
        "test_email",
        "messages_per_minute",
        "allowed_recipient_domains",
    ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["security"].choices = [
            (value, label)
            for value, label in Security.choices
            if value != Security.NONE or settings.SMTP_ALLOW_INSECURE
        ]
        self.fields["redirect_url"].initial = oauth_redirect_url()
        self.fields["cloud"].widget.attrs["data-presets"] = _cloud_presets()
        for name in ("certificate", "private_key", *self.FILE_FIELDS.values()):
            self.fields[name].widget.attrs["data_show_when"] = "auth_type=oauth_app"

    def certificate_applies(self, cleaned) -> bool:
        return cleaned.get("auth_type") == AuthType.OAUTH_APP

    def clean(self):
        self._clean_certificate_credential(self.cleaned_data)
        cleaned = super().clean()
        auth = cleaned.get("auth_type")
        delegated = auth == AuthType.OAUTH_DELEGATED
        api = delegated and cleaned.get("communication_type") == CommunicationType.API
        if not api:
            if not cleaned.get("smtp_host"):
                cloud = cleaned.get("cloud")
                if cloud and cloud != OTHER_SERVER:
                    cleaned["smtp_host"] = preset(cloud).smtp_host
                else:
                    self.add_error("smtp_host", _("This field is required."))
            if not cleaned.get("smtp_port"):
                cleaned["smtp_port"] = (
                    465 if cleaned.get("security") == Security.SSL else 587
                )
            # The outbound policy, as far as a form can tell without DNS.
            for name, check in (
                ("smtp_host", validate_outbound_host),
                ("smtp_port", validate_smtp_port),
            ):
                if cleaned.get(name) and not self.has_error(name):
                    try:
                        check(cleaned[name])
                    except ValidationError as error:
                        self.add_error(name, error)
        if auth == AuthType.BASIC:
            self._clean_basic_username(cleaned)
        if auth in (AuthType.OAUTH_APP, AuthType.OAUTH_DELEGATED):
            endpoints = cleaned.get("authorization_endpoint") or cleaned.get(
                "token_endpoint"
            )
            explicit_endpoints = delegated and endpoints
            client_id = cleaned.get("client_id")
            if not client_id:
                if "client_id" not in self.errors:
                    self.add_error("client_id", _("This field is required."))
            elif not explicit_endpoints:
                # A Microsoft tenant: the Application (client) ID is a GUID.
                try:
                    validate_guid(client_id)
                except ValidationError as error:
                    self.add_error("client_id", error)
            if explicit_endpoints:
                if not (
                    cleaned.get("authorization_endpoint")
                    and cleaned.get("token_endpoint")
                ):
                    self.add_error(
                        "token_endpoint",
                        _(
                            "Enter both the Authorization endpoint and the Token endpoint."
                        ),
                    )
            elif not cleaned.get("tenant_id"):
                self.add_error("tenant_id", _("This field is required."))
        if delegated:
            username = (cleaned.get("username") or "").strip().lower()
            sender = (cleaned.get("sender") or "").lower()
            if not username:
                if "username" not in self.errors:
                    self.add_error("username", _("This field is required."))
            elif not self._is_email(username):
                self.add_error("username", _("Enter a valid email address."))
            elif sender and username != sender:
                self.add_error(
                    "username",
                    ValidationError(
                        _(
                            "With OAuth 2.0 the Username must be the From address (%(sender)s)."
                        ),
                        params={"sender": sender},
                        code="username_sender",
                    ),
                )
            cleaned["username"] = username
            if not api and not cleaned.get("scope"):
                cleaned["scope"] = DEFAULT_SMTP_SCOPE
        if api:
            check_messages_per_minute(
                self, cleaned.get("messages_per_minute"), GRAPH, "Microsoft Graph"
            )
        elif (cleaned.get("smtp_host") or "").lower() in MICROSOFT_SMTP_HOSTS:
            check_messages_per_minute(
                self,
                cleaned.get("messages_per_minute"),
                EXCHANGE_SMTP,
                "Exchange Online SMTP",
            )
        if (
            cleaned.get("security") == Security.NONE
            and not settings.SMTP_ALLOW_INSECURE
        ):
            self.add_error(
                "security", _("Plain-text SMTP is not allowed on this server.")
            )
        check_recipient_domains(self, cleaned)
        return cleaned

    @staticmethod
    def _is_email(value: str) -> bool:
        try:
            EmailAddressField().clean(value)
        except ValidationError:
            return False
        return True

    def _clean_basic_username(self, cleaned) -> None:
        """An email address for Microsoft 365; another server may use a plain user
        name (SendGrid's "apikey", or a Windows domain and user name)."""
        username = cleaned.get("username")
        if not username:
            if "username" not in self.errors:
                self.add_error("username", _("This field is required."))
            return
        microsoft = (cleaned.get("smtp_host") or "").lower() in MICROSOFT_SMTP_HOSTS
        if microsoft and not self._is_email(username):
            self.add_error(
                "username",
                _("Enter the mailbox's email address (user@contoso.com)."),
            )
        elif not microsoft:
            try:
                validate_token(username)
            except ValidationError as error:
                self.add_error("username", error)

    def required_secrets_now(self, cleaned):
        auth = cleaned.get("auth_type")
        if auth == AuthType.BASIC:
            return ("password",)
        if auth == AuthType.OAUTH_DELEGATED:
            return ("client_secret",)
        if auth == AuthType.OAUTH_APP:
            if self.has_certificate(cleaned) or self.has_certificate_errors():
                return ()
            return ("client_secret",)
        return ()
