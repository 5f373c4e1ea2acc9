"""Hostile and malformed input for every field of the SMTP drawer."""

import ssl

import pytest

from integrations.forms.smtp import SmtpForm
from integrations.providers.smtp import SmtpProvider

TENANT = "b5a0c1e2-3f47-4d8a-9c6b-2e1f0a9d8c7b"
CLIENT = "4e9d2a71-8c3b-4f05-a6d2-91b7e0c3f58a"

# Exchange Online, OAuth 2.0 delegated, a Microsoft tenant.
GOOD = {
    "cloud": "global",
    "smtp_host": "smtp.office365.com",
    "smtp_port": "587",
    "security": "starttls",
    "minimum_tls": "1.2",
    "sender": "alerts@contoso.com",
    "sender_name": "AppSec Alerts",
    "recipients": "security-team@contoso.com",
    "auth_type": "oauth_delegated",
    "communication_type": "smtp",
    "username": "alerts@contoso.com",
    "password": "",
    "tenant_id": TENANT,
    "client_id": CLIENT,
    "client_secret": "s3cret",
    "authorization_endpoint": "",
    "token_endpoint": "",
    "scope": "https://outlook.office.com/SMTP.Send",
    "test_email": "me@contoso.com",
}
BASIC = {
    **GOOD,
    "auth_type": "basic",
    "password": "pw-basic-1",
    "tenant_id": "",
    "client_id": "",
    "client_secret": "",
}
APP = {**GOOD, "auth_type": "oauth_app", "username": ""}
# A non-Microsoft server with its own OAuth endpoints.
OTHER = {
    **GOOD,
    "cloud": "other",
    "smtp_host": "mail.example.org",
    "tenant_id": "",
    "client_id": "appsec-notifier",
    "authorization_endpoint": "https://idp.example.org/oauth2/authorize",
    "token_endpoint": "https://idp.example.org/oauth2/token",
    "scope": "smtp.send",
}
OTHER_BASIC = {**BASIC, "cloud": "other", "smtp_host": "mail.example.org"}


def form_for(base=GOOD, **overrides):
    form = SmtpForm({**base, **overrides})
    form.is_valid()
    return form


def errors_for(base=GOOD, **overrides):
    return form_for(base, **overrides).errors


def cleaned_for(base=GOOD, **overrides):
    form = form_for(base, **overrides)
    assert not form.errors, form.errors
    return form.cleaned_data


@pytest.mark.parametrize(
    "base", [GOOD, BASIC, APP, OTHER, OTHER_BASIC], ids=lambda b: b["auth_type"]
)
def test_good_values_are_valid(base):
    assert errors_for(base) == {}


# --- every field: line breaks, length --------------------------------------------------

TEXT_FIELDS = [name for name, value in GOOD.items() if value]


@pytest.mark.parametrize("field", TEXT_FIELDS)
def test_line_breaks_are_refused_in_every_field(field):
    assert field in errors_for(**{field: GOOD[field] + "\r\nX-Injected: 1"})


def test_line_breaks_are_refused_in_the_password():
    assert "password" in errors_for(BASIC, password="pw\r\nX-Injected: 1")


@pytest.mark.parametrize(
    "base, field, value",
    [
        (GOOD, "smtp_host", ".".join(["a" * 63] * 4)),  # 255 characters
        (GOOD, "sender_name", "A" * 101),
        (GOOD, "sender", "a" * 250 + "@contoso.com"),
        (GOOD, "username", "a" * 250 + "@contoso.com"),
        (GOOD, "tenant_id", "a" * 250 + ".example.com"),
        (GOOD, "client_secret", "s" * 1025),
        (GOOD, "scope", " ".join(["https://outlook.office.com/SMTP.Send"] * 14)),
        (GOOD, "test_email", "a" * 250 + "@contoso.com"),
        (OTHER, "client_id", "c" * 256),
        (OTHER, "token_endpoint", "https://idp.example.org/" + "t" * 480),
        (OTHER, "authorization_endpoint", "https://idp.example.org/" + "a" * 480),
        (BASIC, "password", "p" * 1025),
        (OTHER_BASIC, "username", "u" * 255),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else "",
)
def test_overlong_values_are_refused(base, field, value):
    assert field in errors_for(base, **{field: value})


# --- SMTP host and port -----------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "smtp.office365.com:587",
        "https://smtp.office365.com",
        "smtp office365.com",
        " smtp.office365.com /x",
        "<script>alert(1)</script>",
        "smtp.office365.com/evil",
        "user@smtp.office365.com",
        "-smtp.example.com",
        "smtp..example.com",
        "a" * 64 + ".example.com",
        "999.1.1.1",
        "smtp_relay.example.com",
        "smtp.example.com\x00",
        "'; DROP TABLE integrations_integration; --",
    ],
)
def test_smtp_host_must_be_a_host_name_or_ip_address(host):
    errors = errors_for(smtp_host=host)
    assert "smtp_host" in errors
    assert all(errors["smtp_host"])


@pytest.mark.parametrize(
    "host, cleaned",
    [
        ("SMTP.Office365.COM", "smtp.office365.com"),
        ("mailrelay", "mailrelay"),
        ("10.0.0.25", "10.0.0.25"),
        ("2001:db8::25", "2001:db8::25"),
        ("[2001:db8::25]", "2001:db8::25"),
        ("mail-1.example.org", "mail-1.example.org"),
    ],
)
def test_smtp_host_accepts_names_and_ip_literals(host, cleaned, settings):
    # Internal addresses as the outbound policy's allow-list lets them in.
    settings.OUTBOUND_ALLOWED_HOSTS = ["10.0.0.0/8", "2001:db8::/32"]
    assert cleaned_for(OTHER_BASIC, smtp_host=host)["smtp_host"] == cleaned


@pytest.mark.parametrize(
    "host", ["10.0.0.25", "127.0.0.1", "::1", "localhost", "100.64.1.1", "fd12::1"]
)
def test_smtp_host_private_address_is_refused_unless_allowed(host, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
    settings.OUTBOUND_ALLOWED_HOSTS = []
    (error,) = errors_for(OTHER_BASIC, smtp_host=host)["smtp_host"]
    assert "private address" in error and "OUTBOUND_ALLOWED_HOSTS" in error

    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    assert cleaned_for(OTHER_BASIC, smtp_host=host)["smtp_host"] == host


@pytest.mark.parametrize(
    "host",
    ["169.254.169.254", "fe80::1", "fd00:ec2::254", "::ffff:169.254.169.254"]
    + ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"],
)
def test_smtp_host_link_local_metadata_and_multicast_are_never_allowed(host, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    settings.OUTBOUND_ALLOWED_HOSTS = [host, "0.0.0.0/0", "::/0"]
    (error,) = errors_for(OTHER_BASIC, smtp_host=host)["smtp_host"]
    assert "never allowed" in error


def test_smtp_host_configured_by_the_operator_is_trusted(settings):
    settings.M365_SMTP_HOST = "127.0.0.1"
    assert cleaned_for(OTHER_BASIC, smtp_host="127.0.0.1")["smtp_host"] == "127.0.0.1"


def test_smtp_host_is_required_for_another_server_and_filled_for_a_cloud():
    assert "smtp_host" in errors_for(OTHER_BASIC, smtp_host="")
    assert cleaned_for(smtp_host="")["smtp_host"] == "smtp.office365.com"
    assert cleaned_for(cloud="usgov_high", smtp_host="")["smtp_host"] == (
        "smtp.office365.us"
    )


@pytest.mark.parametrize(
    "port", ["0", "65536", "-25", "abc", "25.5", "1e3", "<b>587</b>", "587 25"]
)
def test_smtp_port_must_be_1_to_65535(port):
    assert "smtp_port" in errors_for(smtp_port=port)


@pytest.mark.parametrize("port", ["25", "465", "587", "2525"])
def test_smtp_port_accepts_the_usual_ports(port):
    assert cleaned_for(smtp_port=port)["smtp_port"] == int(port)


@pytest.mark.parametrize("port", ["1", "22", "80", "6379", "8587", "65535"])
def test_smtp_port_outside_the_list_is_refused_unless_added(port, settings):
    settings.SMTP_ALLOWED_PORTS_EXTRA = []
    settings.M365_SMTP_PORT = 0
    (error,) = errors_for(OTHER_BASIC, smtp_port=port)["smtp_port"]
    assert f"Port {port} is not allowed for SMTP" in error
    assert "SMTP_ALLOWED_PORTS_EXTRA" in error

    settings.SMTP_ALLOWED_PORTS_EXTRA = [int(port)]
    assert cleaned_for(OTHER_BASIC, smtp_port=port)["smtp_port"] == int(port)


def test_smtp_port_configured_by_the_operator_is_allowed(settings):
    settings.SMTP_ALLOWED_PORTS_EXTRA = []
    settings.M365_SMTP_PORT = 8587  # the sandbox's, as bin/run sets it
    assert cleaned_for(smtp_port="8587")["smtp_port"] == 8587


@pytest.mark.parametrize("security, port", [("starttls", 587), ("ssl", 465)])
def test_smtp_port_defaults_by_security(security, port):
    assert cleaned_for(smtp_port="", security=security)["smtp_port"] == port


# --- choices ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("cloud", "mars"),
        ("cloud", "<b>"),
        ("security", "tls1.0"),
        ("security", "none"),  # plain text, while SMTP_ALLOW_INSECURE is off
        ("minimum_tls", "1.0"),
        ("minimum_tls", "1.1"),
        ("minimum_tls", ""),
        ("auth_type", "kerberos"),
        ("auth_type", ""),
        ("communication_type", "imap"),
    ],
)
def test_choices_must_be_offered_values(field, value, settings):
    settings.SMTP_ALLOW_INSECURE = False
    assert field in errors_for(**{field: value})


def test_minimum_tls_defaults_to_1_2_and_offers_nothing_older():
    form = SmtpForm()
    assert form.fields["minimum_tls"].initial == "1.2"
    assert [value for value, _ in form.fields["minimum_tls"].choices] == ["1.2", "1.3"]
    assert '<option value="1.2" selected>TLS 1.2</option>' in str(form["minimum_tls"])


def test_minimum_tls_1_2_applies_when_a_saved_config_has_none():
    config = {**cleaned_for(), "smtp_port": 587}
    del config["minimum_tls"]
    session = SmtpProvider(config=config, secrets={}).new_session()
    assert session.minimum_tls == ssl.TLSVersion.TLSv1_2


# --- From, To, Sender name ------------------------------------------------------------------

HOSTILE_ADDRESSES = [
    "",
    " ",
    "not-an-address",
    "a@contoso.com, b@contoso.com",
    "<script>alert(1)</script>@contoso.com",
    "Alerts <alerts@contoso.com>",
    "alerts@contoso.com\r\nBcc: victim@example.com",
    "'; DROP TABLE integrations_integration; --",
]


@pytest.mark.parametrize("value", HOSTILE_ADDRESSES)
def test_from_must_be_one_email_address(value):
    assert "sender" in errors_for(BASIC, sender=value)


@pytest.mark.parametrize(
    "value", [v for v in HOSTILE_ADDRESSES if v != "a@contoso.com, b@contoso.com"]
)
def test_to_must_be_email_addresses(value):
    assert "recipients" in errors_for(recipients=value)


def test_too_many_recipients_are_refused():
    many = ",".join(f"user{n}@contoso.com" for n in range(60))
    assert "recipients" in errors_for(recipients=many)


@pytest.mark.parametrize(
    "name",
    [
        "Evil\r\nBcc: victim@example.com",
        "Evil\nBcc: victim@example.com",
        'Security" <ceo@contoso.com>',
        "Security <ceo@contoso.com>",
        "<b>Alerts</b>",
        "Alerts\x00",
        "Alerts\x1b[31m",
        "Tab\tseparated",
        "A" * 101,
    ],
)
def test_sender_name_that_could_break_the_from_header_is_refused(name):
    errors = errors_for(sender_name=name)
    assert "sender_name" in errors
    assert all(errors["sender_name"])


@pytest.mark.parametrize(
    "name", ["", "AppSec Alerts", "Équipe sécurité", "O'Brien & Co. (AppSec), Inc."]
)
def test_sender_name_accepts_ordinary_names(name):
    assert cleaned_for(sender_name=name)["sender_name"] == name


# --- Username ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "username",
    [
        "not-an-address",
        "apikey",
        "<script>alert(1)</script>",
        "alerts@contoso.com, other@contoso.com",
        "alerts @contoso.com",
    ],
)
@pytest.mark.parametrize("base", [GOOD, BASIC], ids=["delegated", "basic"])
def test_username_must_be_an_email_address_for_microsoft_365(base, username):
    errors = errors_for(base, username=username)
    assert "username" in errors


@pytest.mark.parametrize("base", [GOOD, BASIC], ids=["delegated", "basic"])
def test_username_is_required(base):
    assert "username" in errors_for(base, username="")


@pytest.mark.parametrize("username", ["apikey", "CONTOSO\\alerts", "a@example.org"])
def test_another_server_may_use_a_plain_user_name(username):
    assert cleaned_for(OTHER_BASIC, username=username)["username"] == username


@pytest.mark.parametrize(
    "username", ["user name", "<b>x</b>", 'x"y', "tab\there", "x\x00"]
)
def test_another_servers_user_name_is_printable_without_spaces_or_markup(username):
    assert "username" in errors_for(OTHER_BASIC, username=username)


def test_delegated_username_is_lowercased_and_must_be_the_from_address():
    assert cleaned_for(username="Alerts@Contoso.com")["username"] == (
        "alerts@contoso.com"
    )
    errors = errors_for(username="someone@contoso.com")
    assert "must be the From address" in errors["username"][0]


# --- Tenant ID and Client ID ---------------------------------------------------------------


@pytest.mark.parametrize(
    "tenant",
    [
        "<script>alert(1)</script>",
        "contoso.com\r\nX: 1",
        "../../etc/passwd",
        "b5a0c1e2-3f47-4d8a-9c6b-2e1f0a9d8c7",
        "contoso",
        "a" * 300,
    ],
)
@pytest.mark.parametrize("base", [GOOD, APP], ids=["delegated", "app"])
def test_tenant_must_be_a_guid_or_domain(base, tenant):
    assert "tenant_id" in errors_for(base, tenant_id=tenant)


@pytest.mark.parametrize("base", [GOOD, APP], ids=["delegated", "app"])
def test_tenant_is_required_without_explicit_endpoints(base):
    assert "tenant_id" in errors_for(base, tenant_id="")


@pytest.mark.parametrize(
    "client_id",
    [
        "",
        "appsec-notifier",
        "4e9d2a718c3b4f05a6d291b7e0c3f58a",
        "{4e9d2a71-8c3b-4f05-a6d2-91b7e0c3f58a}",
        "4e9d2a71-8c3b-4f05-a6d2-91b7e0c3f58",
        "<script>alert(1)</script>",
        "4e9d2a71-8c3b-4f05-a6d2-91b7e0c3f58a extra",
    ],
)
@pytest.mark.parametrize("base", [GOOD, APP], ids=["delegated", "app"])
def test_client_id_is_a_guid_for_a_microsoft_tenant(base, client_id):
    errors = errors_for(base, client_id=client_id)
    assert "client_id" in errors
    assert all(errors["client_id"])


@pytest.mark.parametrize(
    "client_id", ["appsec-notifier", "0oa1b2c3d4E5f6G7h8i9", "123.apps.example.com"]
)
def test_client_id_of_another_server_is_a_printable_token(client_id):
    assert cleaned_for(OTHER, client_id=client_id)["client_id"] == client_id


@pytest.mark.parametrize(
    "client_id", ["", "client id", "<script>alert(1)</script>", "x'y", "x\ty", "é"]
)
def test_client_id_of_another_server_has_no_spaces_or_markup(client_id):
    assert "client_id" in errors_for(OTHER, client_id=client_id)


# --- Client Secret and Password ------------------------------------------------------------


def test_client_secret_is_required_for_oauth_unless_saved():
    assert "client_secret" in errors_for(client_secret="")
    form = SmtpForm({**GOOD, "client_secret": ""}, saved_secrets={"client_secret"})
    assert form.is_valid(), form.errors


def test_password_is_required_for_basic_unless_saved():
    assert "password" in errors_for(BASIC, password="")
    form = SmtpForm({**BASIC, "password": ""}, saved_secrets={"password"})
    assert form.is_valid(), form.errors


def test_secrets_are_never_rendered_back():
    form = SmtpForm({**BASIC, "password": "do-not-render-pw"})
    rendered = str(form)
    assert "do-not-render-pw" not in rendered
    form = SmtpForm({**GOOD, "client_secret": "do-not-render-secret"})
    assert "do-not-render-secret" not in str(form)


# --- Authorization endpoint and Token endpoint -----------------------------------------------

INSECURE_OR_MALFORMED_ENDPOINTS = [
    "http://idp.example.org/oauth2/token",
    "HTTP://idp.example.org/oauth2/token",
    "http://127.0.0.1:8080/token",
    "ftp://idp.example.org/token",
    "javascript:alert(1)",
    "idp.example.org/oauth2/token",
    "//idp.example.org/oauth2/token",
    "https://",
    "https:///oauth2/token",
    "https://user:pass@idp.example.org/oauth2/token",
    "https://client-secret@idp.example.org/oauth2/token",
    "https://idp.example.org/oauth2/token#fragment",
    "https://idp.example.org/oauth2/token#",
    "https://idp example.org/token",
    "https://<script>alert(1)</script>/token",
    'https://idp.example.org/"><script>alert(1)</script>',
    "https://idp.example.org:99999/token",
    "https://[::1/token",
    "https://0.0.0.0/token",
    "https://169.254.169.254/latest/meta-data",
    "https://224.0.0.1/token",
    "https://idp/token",
]


@pytest.mark.parametrize("url", INSECURE_OR_MALFORMED_ENDPOINTS)
@pytest.mark.parametrize("field", ["authorization_endpoint", "token_endpoint"])
def test_endpoints_must_be_https_urls_with_a_proper_host(field, url):
    errors = errors_for(OTHER, **{field: url})
    assert field in errors
    assert all(errors[field])


def test_plain_http_is_refused_with_words_about_the_secret():
    errors = errors_for(OTHER, token_endpoint="http://idp.example.org/oauth2/token")
    assert "https://" in errors["token_endpoint"][0]
    assert "Client Secret" in errors["token_endpoint"][0]


@pytest.mark.parametrize(
    "url",
    [
        "https://idp.example.org/oauth2/token",
        "https://idp.example.org:8443/realms/corp/protocol/openid-connect/token",
        "https://idp.example.org/token?tenant=corp",
        # Self-hosted identity providers are often internal: allowed over https.
        "https://127.0.0.1:8365/tenant/oauth2/v2.0/token",
        "https://localhost:8443/token",
        "https://10.1.2.3/token",
        "https://[::1]:8443/token",
        "https://sso.corp.internal/token",
    ],
)
def test_endpoints_accept_https_on_public_and_internal_hosts(url, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = True
    cleaned = cleaned_for(OTHER, authorization_endpoint=url, token_endpoint=url)
    assert cleaned["token_endpoint"] == url


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1:8365/tenant/oauth2/v2.0/token",
        "https://localhost:8443/token",
        "https://10.1.2.3/token",
        "https://[::1]:8443/token",
        "https://[::ffff:192.168.1.1]/token",
    ],
)
def test_endpoints_on_internal_addresses_need_the_outbound_settings(url, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS = False
    settings.OUTBOUND_ALLOWED_HOSTS = []
    errors = errors_for(OTHER, authorization_endpoint=url, token_endpoint=url)
    assert "private address" in errors["token_endpoint"][0]

    host = url.split("//")[1].split("/")[0].rsplit(":", 1)[0].strip("[]")
    if host.startswith("::ffff"):
        host = "192.168.0.0/16"  # a network in the list covers the mapped address
    settings.OUTBOUND_ALLOWED_HOSTS = [host]
    cleaned = cleaned_for(OTHER, authorization_endpoint=url, token_endpoint=url)
    assert cleaned["token_endpoint"] == url


def test_plain_http_endpoints_only_with_the_setting(settings):
    http = {
        "authorization_endpoint": "http://127.0.0.1:8080/authorize",
        "token_endpoint": "http://127.0.0.1:8080/token",
    }
    settings.OUTBOUND_ALLOWED_HOSTS = ["127.0.0.1"]  # a local identity provider
    settings.OAUTH_ALLOW_INSECURE_ENDPOINTS = False
    assert {"authorization_endpoint", "token_endpoint"} <= set(
        errors_for(OTHER, **http)
    )

    settings.OAUTH_ALLOW_INSECURE_ENDPOINTS = True
    assert cleaned_for(OTHER, **http)["token_endpoint"] == http["token_endpoint"]
    # Still no credentials or fragments.
    assert "token_endpoint" in errors_for(
        OTHER, token_endpoint="http://u:p@127.0.0.1:8080/token"
    )


def test_both_endpoints_or_neither():
    errors = errors_for(OTHER, authorization_endpoint="")
    assert "Enter both" in errors["token_endpoint"][0]


def test_endpoint_help_text_says_https_and_internal_hosts():
    form = SmtpForm()
    for name in ("authorization_endpoint", "token_endpoint"):
        assert "https://" in str(form.fields[name].help_text)
        assert "internal hosts only where this server allows them" in str(
            form.fields[name].help_text
        )
    # Help texts speak to the admin: no server setting names (issue 15, item 5).
    assert "OAUTH_ALLOW_INSECURE_ENDPOINTS" not in str(
        form.fields["token_endpoint"].help_text
    )


# --- Scope ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scope",
    [
        'https://outlook.office.com/SMTP.Send "x"',
        "https://outlook.office.com/SMTP.Send\\x",
        "<script>alert(1)</script>",
        "smtp.send\topenid",
        "s" * 201,
        " ".join(f"scope{n}" for n in range(21)),
        "smtp.send\x00",
        "é",
    ],
)
def test_scope_must_be_bounded_tokens_separated_by_spaces(scope):
    errors = errors_for(scope=scope)
    assert "scope" in errors
    assert all(errors["scope"])


@pytest.mark.parametrize(
    "scope, cleaned",
    [
        (
            "https://outlook.office.com/SMTP.Send",
            "https://outlook.office.com/SMTP.Send",
        ),
        (
            "  https://outlook.office.com/SMTP.Send   offline_access ",
            "https://outlook.office.com/SMTP.Send offline_access",
        ),
        ("api://4e9d2a71/.default smtp.send", "api://4e9d2a71/.default smtp.send"),
        ("", "https://outlook.office.com/SMTP.Send"),  # the default
    ],
)
def test_scope_accepts_tokens_and_urls(scope, cleaned):
    assert cleaned_for(scope=scope)["scope"] == cleaned


# --- Test email address and Redirect URL -------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE_ADDRESSES[2:])
def test_test_email_must_be_one_email_address(value):
    assert "test_email" in errors_for(test_email=value)


def test_test_email_is_optional():
    assert cleaned_for(test_email="")["test_email"] == ""


def test_redirect_url_cannot_be_posted(settings):
    settings.SITE_URL = "https://appsec.example.com"
    cleaned = cleaned_for(redirect_url="https://attacker.example/callback")
    assert cleaned["redirect_url"] == (
        "https://appsec.example.com/integrations/oauth/callback/"
    )


# --- Messages per minute (advanced) ----------------------------------------------------


@pytest.mark.parametrize(
    "base, value, valid",
    [
        (APP, "", True),  # Exchange Online's 30
        (APP, "30", True),
        (APP, "31", False),  # above Exchange Online SMTP's limit
        (GOOD, "1000", False),
        ({**GOOD, "communication_type": "api"}, "1000", True),  # Graph's limit
        ({**GOOD, "communication_type": "api"}, "1001", False),
        (OTHER_BASIC, "600", True),  # another server may allow more
        (OTHER_BASIC, "10000", True),
        (OTHER_BASIC, "10001", False),
        (OTHER_BASIC, "0", False),
    ],
)
def test_messages_per_minute_is_bounded_by_the_servers_limit(base, value, valid):
    errors = errors_for(base, messages_per_minute=value)
    assert ("messages_per_minute" not in errors) == valid, errors


def test_a_tools_messages_per_minute_reaches_its_provider():
    config = cleaned_for(OTHER_BASIC, messages_per_minute="600")
    provider = SmtpProvider(config=config, secrets={})
    assert provider.messages_per_minute == 600
    assert provider.sending_limits.messages == 30  # Microsoft's, for reference
    blank = SmtpProvider(config=cleaned_for(APP), secrets={})
    assert blank.messages_per_minute is None
