"""
Microsoft national clouds: one choice sets the sign-in host, the Graph host, the
SMTP host and the IMAP host (the Email box) together.

https://learn.microsoft.com/graph/deployments
https://learn.microsoft.com/entra/identity-platform/authentication-national-cloud
"""

from dataclasses import dataclass

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Cloud(models.TextChoices):
    GLOBAL = "global", _("Global")
    US_GOV_HIGH = "usgov_high", _("US Government GCC High")
    US_GOV_DOD = "usgov_dod", _("US Government DoD")
    CHINA = "china", _("China operated by 21Vianet")


@dataclass(frozen=True)
class CloudEndpoints:
    authority_host: str
    graph_host: str
    #: Graph's resource identifier, used in scopes (not a URL we call).
    graph_resource: str
    smtp_host: str
    #: Exchange Online's resource identifier for SMTP/IMAP app-only tokens.
    exchange_resource: str
    #: Exchange Online's IMAP host (port 993, implicit TLS), for the Email box.
    imap_host: str = ""


_PRESETS = {
    Cloud.GLOBAL: CloudEndpoints(
        "https://login.microsoftonline.com",
        "https://graph.microsoft.com",
        "https://graph.microsoft.com",
        "smtp.office365.com",
        "https://outlook.office365.com",
        "outlook.office365.com",
    ),
    Cloud.US_GOV_HIGH: CloudEndpoints(
        "https://login.microsoftonline.us",
        "https://graph.microsoft.us",
        "https://graph.microsoft.us",
        "smtp.office365.us",
        "https://outlook.office365.us",
        "outlook.office365.us",
    ),
    Cloud.US_GOV_DOD: CloudEndpoints(
        "https://login.microsoftonline.us",
        "https://dod-graph.microsoft.us",
        "https://dod-graph.microsoft.us",
        "smtp.office365.us",
        "https://outlook-dod.office365.us",
        "outlook-dod.office365.us",
    ),
    Cloud.CHINA: CloudEndpoints(
        "https://login.chinacloudapi.cn",
        "https://microsoftgraph.chinacloudapi.cn",
        "https://microsoftgraph.chinacloudapi.cn",
        "smtp.partner.outlook.cn",
        "https://partner.outlook.cn",
        "partner.outlook.cn",
    ),
}


def preset(cloud: str) -> CloudEndpoints:
    """The preset's hosts, without the settings overrides."""
    return _PRESETS[Cloud(cloud)]


def endpoints(cloud: str) -> CloudEndpoints:
    """The hosts to call for `cloud`, after M365_* overrides (e.g. the sandbox)."""
    base = preset(cloud)
    return CloudEndpoints(
        authority_host=(settings.M365_AUTHORITY_HOST or base.authority_host).rstrip(
            "/"
        ),
        graph_host=(settings.M365_GRAPH_HOST or base.graph_host).rstrip("/"),
        graph_resource=base.graph_resource,
        smtp_host=settings.M365_SMTP_HOST or base.smtp_host,
        exchange_resource=base.exchange_resource,
        imap_host=settings.M365_IMAP_HOST or base.imap_host,
    )
