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
    Section,
    TenantField,
    check_messages_per_minute,
    check_recipient_domains,
    show_when,
    validate_display_name,
    validate_guid,
    validate_outbound_host,
    validate_smtp_port,
    validate_token,
)
from integrations.forms.certificates import CertificateCredentialMixin
from integrations.forms.email_box import (
    SHOW_WHEN_ON,
    EmailBoxField,
    validate_imap_port,
)
from integrations.providers.clouds import Cloud, preset
from integrations.providers.limits import EXCHANGE_SMTP, GRAPH
from integrations.providers.smtp_choices import (
    DEFAULT_SMTP_SCOPE,
    MICROSOFT_IMAP_HOSTS,
    MICROSOFT_SMTP_HOSTS,
    OTHER_SERVER,
    AuthType,
    CommunicationType,
    ImapSecurity,
    MinimumTls,
    Security,
)
from integrations.selectors import oauth_redirect_url

#: The Email box's settings besides the switch (the password is a secret: a blank
#: one keeps the saved value anyway).
EMAIL_BOX_SETTINGS = ("imap_host", "imap_port", "imap_security", "imap_username")


#: Where the SMTP server's settings apply: every way but delegated OAuth 2.0 over
#: Microsoft Graph (the API communication type).
SMTP_APPLIES = "auth_type=none|basic|oauth_app;communication_type=smtp"
#: The Email box's IMAP server, likewise (delegated API reads through Graph).
IMAP_APPLIES = (
    f"{SHOW_WHEN_ON}&auth_type=none|basic|oauth_app;"
    f"{SHOW_WHEN_ON}&communication_type=smtp"
)
#: The choice of a certificate, and its fields (OAuth 2.0 application only).
CERTIFICATE_CHOICE = "auth_type=oauth_app"
CERTIFICATE = "auth_type=oauth_app&use_certificate=on"
#: Client Secret: delegated, or application without a certificate.
CLIENT_SECRET = "auth_type=oauth_delegated;auth_type=oauth_app&use_certificate!=on"
#: The OAuth endpoints: for another server than Microsoft 365 (and shown while they
#: hold a value, which counts whatever the Cloud).
ENDPOINTS = ";".join(
    f"auth_type=oauth_delegated&{rule}"
    for rule in (
        f"cloud={OTHER_SERVER}",
        "authorization_endpoint!=",
        "token_endpoint!=",
    )
)


def _cloud_presets() -> str:
    return json.dumps(
        {
            cloud.value: {
                "smtp_host": preset(cloud).smtp_host,
                "smtp_port": "587",
                "imap_host": preset(cloud).imap_host,
            }
            for cloud in Cloud
        }
    )


class SmtpForm(CertificateCredentialMixin, ProviderForm):
    advanced_fields = ("messages_per_minute", "allowed_recipient_domains")
    sections = (
        Section(
            _("SMTP server"),
            ("cloud", "smtp_host", "smtp_port", "security", "minimum_tls"),
            show_when=SMTP_APPLIES,
        ),
        Section(
            _("Authentication"),
            (
                "auth_type",
                "communication_type",
                "username",
                "password",
                "tenant_id",
                "client_id",
                "use_certificate",
                "client_secret",
                "certificate",
                "certificate_file",
                "private_key",
                "private_key_file",
                "authorization_endpoint",
                "token_endpoint",
                "scope",
                "redirect_url",
            ),
        ),
        Section(_("Sender and recipients"), ("sender", "sender_name", "recipients")),
        Section(
            _("Email box"),
            (
                "email_box",
                "imap_host",
                "imap_port",
                "imap_security",
                "imap_username",
                "imap_password",
            ),
        ),
        Section(_("Test email"), ("test_email",)),
    )
    # What `clean` requires, for the choices that require it.
    required_when = {
        "smtp_host": f"cloud={OTHER_SERVER}",
        "username": "auth_type=basic|oauth_delegated",
        "password": "auth_type=basic",
        "tenant_id": f"auth_type=oauth_app;auth_type=oauth_delegated&cloud!={OTHER_SERVER}",
        "client_id": "auth_type=oauth_app|oauth_delegated",
        "client_secret": CLIENT_SECRET,
        "certificate": CERTIFICATE,
        "private_key": CERTIFICATE,
        "imap_host": f"{SHOW_WHEN_ON}&cloud={OTHER_SERVER}",
        "imap_username": f"{SHOW_WHEN_ON}&auth_type=none|basic",
        "imap_password": f"{SHOW_WHEN_ON}&auth_type=none|basic",
    }

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
        widget=forms.Select(attrs=show_when("auth_type=oauth_delegated")),
        help_text=_(
            "API sends through Microsoft Graph (/me/sendMail, scope Mail.Send)."
        ),
    )
    username = forms.CharField(
        label=_("Username"),
        max_length=254,
        required=False,
        widget=forms.TextInput(attrs=show_when("auth_type=basic|oauth_delegated")),
        help_text=_(
            "An email address (for OAuth 2.0 delegated, the From address); another "
            "SMTP server may use a plain user name."
        ),
    )
    password = SecretField(
        label=_("Password"), widget=SecretInput(show_when("auth_type=basic"))
    )
    tenant_id = TenantField(
        label=_("Tenant ID"),
        required=False,
        widget=forms.TextInput(attrs=show_when("auth_type=oauth_app|oauth_delegated")),
    )
    client_id = forms.CharField(
        label=_("Client ID"),
        max_length=255,
        required=False,
        validators=[validate_token],
        widget=forms.TextInput(attrs=show_when("auth_type=oauth_app|oauth_delegated")),
        help_text=_(
            "A GUID for Microsoft 365; for a non-Microsoft server, its client ID."
        ),
    )
    client_secret = SecretField(
        label=_("Client Secret"),
        widget=SecretInput(show_when(CLIENT_SECRET)),
        help_text=_("The secret's Value (not its Secret ID)."),
    )
    authorization_endpoint = EndpointUrlField(
        label=_("Authorization endpoint"),
        required=False,
        widget=forms.URLInput(attrs=show_when(ENDPOINTS)),
        help_text=_(
            "Only for a non-Microsoft server; leave blank to use the Tenant ID. "
            "An https:// URL; internal hosts only where this server allows them."
        ),
    )
    token_endpoint = EndpointUrlField(
        label=_("Token endpoint"),
        required=False,
        widget=forms.URLInput(attrs=show_when(ENDPOINTS)),
        help_text=_(
            "An https:// URL (the Client Secret is sent to it); internal hosts only "
            "where this server allows them."
        ),
    )
    scope = ScopeField(
        label=_("Scope"),
        required=False,
        initial=DEFAULT_SMTP_SCOPE,
        widget=forms.TextInput(
            attrs=show_when("auth_type=oauth_delegated&communication_type=smtp")
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
                **show_when("auth_type=oauth_delegated"),
            }
        ),
        help_text=_("Register this URL as a Web redirect URI of the app."),
    )
    email_box = EmailBoxField(
        help_text=_(
            "Read the From mailbox for delivery reports, so that a notification "
            "that bounces shows as Bounced, and look in its Sent Items before "
            "sending again a message whose answer was lost. Nothing is deleted or "
            "marked read. "
            "OAuth 2.0 uses the same app (IMAP.AccessAsApp, or IMAP.AccessAsUser.All "
            "when a user signs in); the API communication type reads through "
            "Microsoft Graph (Mail.Read)."
        ),
    )
    imap_host = HostField(
        label=_("Host name"),
        required=False,
        initial="outlook.office365.com",
        widget=forms.TextInput(attrs=show_when(IMAP_APPLIES)),
        help_text=_("The IMAP server of the mailbox (Exchange Online: the default)."),
    )
    imap_port = forms.IntegerField(
        label=_("Port"),
        min_value=1,
        max_value=65535,
        initial=993,
        required=False,
        widget=forms.NumberInput(attrs=show_when(IMAP_APPLIES)),
        help_text=_("993 with SSL/TLS; 143 with STARTTLS."),
    )
    imap_security = forms.ChoiceField(
        label=_("IMAP security"),
        choices=ImapSecurity.choices,
        initial=ImapSecurity.SSL,
        required=False,
        widget=forms.Select(attrs=show_when(IMAP_APPLIES)),
    )
    imap_username = forms.CharField(
        label=_("Email"),
        max_length=254,
        required=False,
        widget=forms.TextInput(
            attrs=show_when(f"{SHOW_WHEN_ON}&auth_type=none|basic|oauth_app")
        ),
        help_text=_(
            "Basic: the mailbox's email address, which signs in to IMAP. OAuth 2.0 "
            "(application): the mailbox to read (default: the From address)."
        ),
    )
    imap_password = SecretField(
        label=_("Password"),
        widget=SecretInput(show_when(f"{SHOW_WHEN_ON}&auth_type=none|basic")),
        help_text=_("The Email box's password (IMAP)."),
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
        "use_certificate",
        "client_secret",
        "certificate",
        "certificate_file",
        "private_key",
        "private_key_file",
        "authorization_endpoint",
        "token_endpoint",
        "scope",
        "redirect_url",
        "email_box",
        "imap_host",
        "imap_port",
        "imap_security",
        "imap_username",
        "imap_password",
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
        self.fields["use_certificate"].widget.attrs.update(
            show_when(CERTIFICATE_CHOICE)
        )
        for name in self.CERTIFICATE_FIELDS:
            self.fields[name].widget.attrs.update(show_when(CERTIFICATE))

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
        if not cleaned.get("email_box"):
            # Not saved while off: a tool saved before the Email box existed has
            # none of them, and saving it unchanged changes nothing.
            for name in EMAIL_BOX_SETTINGS:
                cleaned.pop(name, None)
        elif not api:
            self._clean_email_box(cleaned, auth)
        check_recipient_domains(self, cleaned)
        return cleaned

    def _clean_email_box(self, cleaned, auth) -> None:
        """The IMAP server (the Cloud's by default) and, for Basic, its sign-in.
        (The API communication type reads through Graph, with the signed-in user.)"""
        cleaned["imap_security"] = cleaned.get("imap_security") or ImapSecurity.SSL
        if not cleaned.get("imap_host") and not self.has_error("imap_host"):
            cloud = cleaned.get("cloud")
            if cloud and cloud != OTHER_SERVER:
                cleaned["imap_host"] = preset(cloud).imap_host
            else:
                self.add_error(
                    "imap_host", _("Enter the host name of the mailbox's IMAP server.")
                )
        if not cleaned.get("imap_port") and not self.has_error("imap_port"):
            cleaned["imap_port"] = (
                993 if cleaned["imap_security"] == ImapSecurity.SSL else 143
            )
        for name, check in (
            ("imap_host", validate_outbound_host),
            ("imap_port", validate_imap_port),
        ):
            if cleaned.get(name) and not self.has_error(name):
                try:
                    check(cleaned[name])
                except ValidationError as error:
                    self.add_error(name, error)
        username = (cleaned.get("imap_username") or "").strip()
        cleaned["imap_username"] = username
        microsoft = (cleaned.get("imap_host") or "").lower() in MICROSOFT_IMAP_HOSTS
        if auth in (AuthType.NONE, AuthType.BASIC):
            if not username:
                if not self.has_error("imap_username"):
                    self.add_error(
                        "imap_username",
                        _("Enter the Email box's email address (it signs in to IMAP)."),
                    )
            elif microsoft and not self._is_email(username):
                self.add_error(
                    "imap_username",
                    _("Enter the mailbox's email address (user@contoso.com)."),
                )
            else:
                try:
                    validate_token(username)
                except ValidationError as error:
                    self.add_error("imap_username", error)
            if not cleaned.get("imap_password") and (
                "imap_password" not in self.saved_secrets
            ):
                if not self.has_error("imap_password"):
                    self.add_error(
                        "imap_password",
                        _("Enter the Email box's password (it signs in to IMAP)."),
                    )
        elif auth == AuthType.OAUTH_APP and username and not self._is_email(username):
            self.add_error(
                "imap_username",
                _(
                    "Enter the email address of the mailbox to read, or leave blank "
                    "for the From address."
                ),
            )

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
