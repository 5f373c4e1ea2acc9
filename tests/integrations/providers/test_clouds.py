"""One Cloud choice sets the sign-in, Graph and SMTP hosts together."""

import pytest

from integrations.providers.clouds import Cloud, endpoints


@pytest.mark.parametrize(
    "cloud, authority, graph, smtp",
    [
        (
            Cloud.GLOBAL,
            "https://login.microsoftonline.com",
            "https://graph.microsoft.com",
            "smtp.office365.com",
        ),
        (
            Cloud.US_GOV_HIGH,
            "https://login.microsoftonline.us",
            "https://graph.microsoft.us",
            "smtp.office365.us",
        ),
        (
            Cloud.US_GOV_DOD,
            "https://login.microsoftonline.us",
            "https://dod-graph.microsoft.us",
            "smtp.office365.us",
        ),
        (
            Cloud.CHINA,
            "https://login.chinacloudapi.cn",
            "https://microsoftgraph.chinacloudapi.cn",
            "smtp.partner.outlook.cn",
        ),
    ],
)
def test_presets_set_every_host(settings, cloud, authority, graph, smtp):
    settings.M365_AUTHORITY_HOST = settings.M365_GRAPH_HOST = (
        settings.M365_SMTP_HOST
    ) = ""
    hosts = endpoints(cloud)
    assert (hosts.authority_host, hosts.graph_host, hosts.smtp_host) == (
        authority,
        graph,
        smtp,
    )


def test_settings_override_hosts_but_not_resource_identifiers(settings):
    settings.M365_AUTHORITY_HOST = "https://127.0.0.1:8365/"
    settings.M365_GRAPH_HOST = "https://127.0.0.1:8365"
    hosts = endpoints(Cloud.GLOBAL)
    assert hosts.authority_host == hosts.graph_host == "https://127.0.0.1:8365"
    assert hosts.graph_resource == "https://graph.microsoft.com"
