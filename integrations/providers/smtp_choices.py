"""
The SMTP tool's choices and constants. The provider and the SMTP transport read them;
the drawer's form imports them from here, never the other way round.
"""

from django.db import models
from django.utils.translation import gettext_lazy as _

from integrations.providers.clouds import Cloud, preset

#: The Cloud field's choice for a server outside Microsoft 365.
OTHER_SERVER = "other"
#: Exchange Online's delegated scope for SMTP AUTH XOAUTH2.
DEFAULT_SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"
#: Exchange Online's SMTP hosts, one per cloud (M365_SMTP_HOST stands in for them).
MICROSOFT_SMTP_HOSTS = frozenset(preset(cloud).smtp_host for cloud in Cloud)
#: Exchange Online's IMAP hosts, one per cloud (M365_IMAP_HOST stands in for them).
MICROSOFT_IMAP_HOSTS = frozenset(preset(cloud).imap_host for cloud in Cloud)
#: Exchange Online's delegated scope for IMAP AUTHENTICATE XOAUTH2 (the Email box).
IMAP_DELEGATED_SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All"


class AuthType(models.TextChoices):
    NONE = "none", _("None")
    BASIC = "basic", _("Basic")
    OAUTH_APP = "oauth_app", _("OAuth 2.0 (application)")
    OAUTH_DELEGATED = "oauth_delegated", _("OAuth 2.0 (delegated: a user signs in)")


class CommunicationType(models.TextChoices):
    SMTP = "smtp", _("SMTP (XOAUTH2)")
    API = "api", _("API (Microsoft Graph)")


class Security(models.TextChoices):
    STARTTLS = "starttls", _("STARTTLS")
    SSL = "ssl", _("SSL/TLS")
    NONE = "none", _("None (plain text)")


class ImapSecurity(models.TextChoices):
    """The Email box's IMAP connection: TLS from the start (993), or STARTTLS (143)."""

    SSL = "ssl", _("SSL/TLS")
    STARTTLS = "starttls", _("STARTTLS")


class MinimumTls(models.TextChoices):
    TLS_1_2 = "1.2", "TLS 1.2"
    TLS_1_3 = "1.3", "TLS 1.3"
