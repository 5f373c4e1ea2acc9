"""Integrations › Notification Tools pages, for every role."""

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from integrations.models import AuditAction, AuditEntry, Integration, IntegrationState
from integrations.providers.microsoft_azure_mail import MicrosoftAzureMailProvider

KEY = MicrosoftAzureMailProvider.key
LIST = reverse("integrations:notification_tools")
TOOL = reverse("integrations:tool", args=[KEY])
TEST = reverse("integrations:test", args=[KEY])
DEACTIVATE = reverse("integrations:deactivate", args=[KEY])
AUDIT = reverse("integrations:audit_log")

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", [LIST, TOOL, AUDIT])
def test_anonymous_users_are_sent_to_sign_in(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(
    "method, url",
    [
        ("get", LIST),
        ("get", TOOL),
        ("post", TOOL),
        ("post", TEST),
        ("post", DEACTIVATE),
        ("get", AUDIT),
    ],
)
def test_signed_in_users_who_are_not_security_admins_get_403(
    client, plain_user, method, url
):
    client.force_login(plain_user)
    assert getattr(client, method)(url).status_code == 403


def test_superusers_are_security_admins(client):
    client.force_login(User.objects.create_superuser("root", "r@example.com", "x"))
    assert client.get(LIST).status_code == 200


def test_card_shows_activate_until_saved(admin_client):
    response = admin_client.get(LIST)
    html = response.content.decode()
    assert "Microsoft Azure Mail" in html
    assert "Not activated" in html
    assert ">Activate<" in html
    assert 'aria-label="Settings"' not in html


def test_unknown_tool_is_404(admin_client):
    assert (
        admin_client.get(reverse("integrations:tool", args=["nope"])).status_code == 404
    )


def test_drawer_has_the_documented_fields(admin_client):
    html = admin_client.get(TOOL).content.decode()
    for label in [
        "Tenant ID",
        "Client ID",
        "Client Secret",
        "From",
        "To",
        "Cloud",
        "Client secret expires",
        "Test Connection",
        "Save",
    ]:
        assert f">{label}" in html, label
    for cloud in [
        "Global",
        "US Government GCC High",
        "US Government DoD",
        "China operated by 21Vianet",
    ]:
        assert cloud in html
    assert "Deactivate" not in html


def values(**overrides):
    data = {
        "tenant_id": "b5a0c1e2-3f47-4d8a-9c6b-2e1f0a9d8c7b",
        "client_id": "4e9d2a71-8c3b-4f05-a6d2-91b7e0c3f58a",
        "client_secret": "first-secret-value",
        "sender": "notifications@contoso.onmicrosoft.com",
        "recipients": "security-team@contoso.onmicrosoft.com, soc@contoso.onmicrosoft.com",
        "cloud": "global",
        "secret_expires_on": "",
    }
    data.update(overrides)
    return data


def test_save_activates_the_tool_and_records_the_audit(admin_client, admin_user):
    response = admin_client.post(TOOL, values())
    assert response.status_code == 302

    integration = Integration.objects.get(provider=KEY)
    assert integration.state == IntegrationState.ACTIVE
    assert integration.config["recipients"] == [
        "security-team@contoso.onmicrosoft.com",
        "soc@contoso.onmicrosoft.com",
    ]
    assert integration.secrets == {"client_secret": "first-secret-value"}
    entry = AuditEntry.objects.get()
    assert entry.action == AuditAction.ACTIVATED and entry.actor == admin_user
    assert "Client Secret" in entry.changed_fields

    html = admin_client.get(LIST).content.decode()
    assert "Active" in html and 'aria-label="Settings"' in html


def test_blank_secret_keeps_the_saved_one_and_is_never_rendered(admin_client):
    admin_client.post(TOOL, values())
    html = admin_client.get(TOOL).content.decode()
    assert "first-secret-value" not in html
    assert "A value is saved" in html

    admin_client.post(
        TOOL, values(client_secret="", sender="alerts@contoso.onmicrosoft.com")
    )

    integration = Integration.objects.get(provider=KEY)
    assert integration.secrets["client_secret"] == "first-secret-value"
    change = AuditEntry.objects.filter(action=AuditAction.CHANGED).get()
    assert change.changed_fields == ["From"]


def test_first_save_requires_a_secret(admin_client):
    response = admin_client.post(TOOL, values(client_secret=""))
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not Integration.objects.exists()


def test_deactivate_keeps_settings_and_shows_activate_again(admin_client):
    admin_client.post(TOOL, values())
    html = admin_client.get(TOOL).content.decode()
    assert "Deactivate" in html

    assert admin_client.post(DEACTIVATE).status_code == 302

    integration = Integration.objects.get(provider=KEY)
    assert integration.state == IntegrationState.INACTIVE
    assert integration.secrets["client_secret"] == "first-secret-value"
    assert ">Activate<" in admin_client.get(LIST).content.decode()
    assert AuditEntry.objects.filter(action=AuditAction.DEACTIVATED).exists()


def test_test_connection_with_invalid_values_names_the_fields(admin_client):
    response = admin_client.post(
        TEST, values(client_id="not-a-guid"), HTTP_X_REQUESTED_WITH="fetch"
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "Client ID" in html and "GUID" in html
    assert "<html" not in html  # the partial only


def test_test_connection_returns_steps_and_is_audited(
    admin_client, sandbox, graph_values
):
    response = admin_client.post(TEST, graph_values, HTTP_X_REQUESTED_WITH="fetch")
    html = response.content.decode()
    assert response.status_code == 200
    assert "Connection successful" in html
    assert "Test email accepted" in html
    assert AuditEntry.objects.filter(action=AuditAction.TESTED, succeeded=True).exists()
    assert not Integration.objects.exists()  # testing saves nothing


def test_failed_test_names_the_step_and_the_fix(admin_client, sandbox, graph_values):
    graph_values["client_secret"] = "wrong"
    html = admin_client.post(
        TEST, graph_values, HTTP_X_REQUESTED_WITH="fetch"
    ).content.decode()
    assert "Connection failed at step Token acquired for Microsoft Graph" in html
    assert "Invalid client secret" in html
    assert AuditEntry.objects.filter(
        action=AuditAction.TESTED, succeeded=False, error_code="secret_invalid"
    ).exists()


def test_test_connection_without_javascript_renders_the_whole_page(
    admin_client, sandbox, graph_values
):
    html = admin_client.post(TEST, graph_values).content.decode()
    assert "<html" in html and "Connection successful" in html


def test_blank_secret_in_test_means_the_saved_one(admin_client, sandbox, graph_values):
    admin_client.post(TOOL, graph_values)
    graph_values["client_secret"] = ""
    html = admin_client.post(
        TEST, graph_values, HTTP_X_REQUESTED_WITH="fetch"
    ).content.decode()
    assert "Connection successful" in html


def test_test_connection_is_rate_limited_per_user(admin_client, settings):
    settings.TEST_CONNECTION_RATE_LIMIT = 2
    data = values(tenant_id="contoso.invalid")  # valid form; no network reached
    settings.M365_AUTHORITY_HOST = "https://127.0.0.1:9"
    codes = [
        admin_client.post(TEST, data, HTTP_X_REQUESTED_WITH="fetch").status_code
        for _ in range(3)
    ]
    assert codes == [200, 200, 429]


def test_audit_log_lists_actions_without_values(admin_client):
    admin_client.post(TOOL, values())
    html = admin_client.get(AUDIT).content.decode()
    assert "Activated" in html and "Microsoft Azure Mail" in html
    assert "first-secret-value" not in html


def test_card_reminds_of_a_secret_about_to_expire(admin_client):
    import datetime

    soon = (datetime.date.today() + datetime.timedelta(days=10)).isoformat()
    admin_client.post(TOOL, values(secret_expires_on=soon))
    html = admin_client.get(LIST).content.decode()
    assert f"Client secret expires in 10 days ({soon})" in html


def test_pages_forbid_inline_and_third_party_scripts(admin_client):
    response = admin_client.get(TOOL)
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "<script>" not in response.content.decode()  # no inline script
    assert response["X-Frame-Options"] == "DENY"


def test_messages_per_minute_is_folded_under_advanced_and_saved(admin_client):
    html = admin_client.get(TOOL).content.decode()
    advanced = html[html.index('<details class="advanced"') :]
    assert "<summary>Advanced</summary>" in advanced
    assert ">Messages per minute" in advanced[: advanced.index("</details>")]
    assert '<details class="advanced" open' not in html

    assert admin_client.post(TOOL, values(messages_per_minute="120")).status_code == 302
    integration = Integration.objects.get(provider=KEY)
    assert integration.config["messages_per_minute"] == 120
    # Set, it is shown unfolded.
    assert '<details class="advanced" open' in admin_client.get(TOOL).content.decode()

    response = admin_client.post(TOOL, values(messages_per_minute="5000"))
    assert response.status_code == 400
    html = response.content.decode()
    assert "accepts at most 1,000 messages a minute" in html
    assert '<details class="advanced" open' in html  # the error is not hidden


@pytest.mark.django_db
@pytest.mark.parametrize("tool", ["microsoft_azure_mail", "smtp"])
def test_every_id_on_the_page_with_a_drawer_open_is_unique(admin_client, tool):
    """A label points at one field: the drawer's To and the Tool health emails
    field share the page, and must not share an id."""
    import re
    from collections import Counter

    page = admin_client.get(reverse("integrations:tool", args=[tool])).content.decode()
    ids = Counter(re.findall(r'\sid="([^"]+)"', page))
    assert {name: n for name, n in ids.items() if n > 1} == {}
    assert 'for="id_recipients"' in page and 'for="id_health-recipients"' in page
