"""A tool's "Allowed recipient domains": what an admin may type, how it is stored,
which addresses it allows, and the drawer field on both tools."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from integrations.forms.microsoft_azure_mail import MicrosoftAzureMailForm
from integrations.forms.smtp import SmtpForm
from integrations.models import Integration
from integrations.providers.microsoft_azure_mail import MicrosoftAzureMailProvider
from integrations.providers.recipients import (
    parse_recipient_domains,
    recipients_check,
)
from integrations.providers.smtp import SmtpProvider
from integrations.services import provider_for

# --- parsing: what the admin types -> what is stored -------------------------------


@pytest.mark.parametrize(
    "typed, stored",
    [
        ("", []),
        ("   \n ", []),
        ("contoso.com", ["contoso.com"]),
        ("Contoso.COM", ["contoso.com"]),
        ("contoso.com.", ["contoso.com"]),
        (
            "contoso.com, fabrikam.com\nexample.org;  eu.contoso.com",
            ["contoso.com", "fabrikam.com", "example.org", "eu.contoso.com"],
        ),
        ("contoso.com\r\nCONTOSO.com, contoso.com", ["contoso.com"]),
        ("*", ["*"]),
        ("  *  ", ["*"]),
        ("*.contoso.com", ["*.contoso.com"]),
        ("*.Contoso.com, contoso.com", ["*.contoso.com", "contoso.com"]),
        # IDNA: the Unicode and the A-label spelling are the same domain.
        ("Bücher.example", ["xn--bcher-kva.example"]),
        ("bücher.example, xn--bcher-kva.example", ["xn--bcher-kva.example"]),
        ("*.bücher.example", ["*.xn--bcher-kva.example"]),
        ("contoso.onmicrosoft.com", ["contoso.onmicrosoft.com"]),
    ],
)
def test_allowed_domains_are_normalised(typed, stored):
    assert parse_recipient_domains(typed) == stored


@pytest.mark.parametrize(
    "typed, message",
    [
        ("user@contoso.com", "without a name or @"),
        ("@contoso.com", "without a name or @"),
        ("contoso", "is not a domain name"),
        ("localhost", "is not a domain name"),
        ("192.0.2.1", "is not a domain name"),
        ("[192.0.2.1]", "is not a domain name"),
        ("https://contoso.com", "is not a domain name"),
        ("contoso.com/path", "is not a domain name"),
        ("-contoso.com", "is not a domain name"),
        ("contoso..com", "is not a domain name"),
        ("con_toso.com", "is not a domain name"),
        ("*contoso.com", "is not a domain name"),
        ("a.*.contoso.com", "is not a domain name"),
        ("*.com", "is not a domain name"),
        ("*.*.contoso.com", "is not a domain name"),
        ("<script>.com", "is not a domain name"),
        ("a" * 64 + ".com", "is not a domain name"),
        ("*, contoso.com", "enter it alone"),
        ("contoso.com *", "enter it alone"),
        (", ".join(f"d{n}.contoso.com" for n in range(51)), "at most 50 domains"),
    ],
)
def test_what_is_not_a_domain_is_refused_with_the_entry_named(typed, message):
    with pytest.raises(ValidationError) as caught:
        parse_recipient_domains(typed)
    text = " ".join(caught.value.messages)
    assert message in text
    if "not a domain" in message or "@" in message:
        assert typed.split(",")[0].strip() in text


def test_every_bad_entry_is_named_not_only_the_first():
    with pytest.raises(ValidationError) as caught:
        parse_recipient_domains("contoso.com, bad_one.com, fine.org, also..bad")
    text = " ".join(caught.value.messages)
    assert "bad_one.com" in text and "also..bad" in text
    assert "fine.org" not in text


# --- the policy: which addresses a tool may send to --------------------------------

SENDER = "notifications@contoso.com"


@pytest.mark.parametrize(
    "allowed, address, ok",
    [
        # Default (nothing stored): the From address's domain only.
        (None, "soc@contoso.com", True),
        ([], "SOC@Contoso.COM", True),
        ([], "attacker@evil.example", False),
        ([], "soc@eu.contoso.com", False),
        ([], "soc@contoso.com.evil.example", False),
        ([], "soc@evilcontoso.com", False),
        # Any.
        (["*"], "attacker@evil.example", True),
        (["*"], "ops@[192.0.2.1]", True),
        # A list replaces the default.
        (["fabrikam.com"], "soc@fabrikam.com", True),
        (["fabrikam.com"], "soc@contoso.com", False),
        (["fabrikam.com"], "soc@eu.fabrikam.com", False),
        # Wildcards: subdomains at any depth, not the domain itself.
        (["*.contoso.com"], "soc@eu.contoso.com", True),
        (["*.contoso.com"], "soc@a.b.contoso.com", True),
        (["*.contoso.com"], "soc@contoso.com", False),
        (["*.contoso.com"], "soc@evilcontoso.com", False),
        (["*.contoso.com", "contoso.com"], "soc@contoso.com", True),
        # IDNA: the recipient's Unicode domain matches the stored A-label.
        (["xn--bcher-kva.example"], "info@Bücher.example", True),
        (["xn--bcher-kva.example"], "info@xn--bcher-kva.example", True),
        # A domain literal is not a domain name: only * allows it.
        (["contoso.com"], "ops@[192.0.2.1]", False),
        ([], "no-at-sign", False),
    ],
)
def test_the_policy_allows_only_the_configured_domains(allowed, address, ok):
    verdict = recipients_check([address], sender=SENDER, allowed_domains=allowed)
    assert verdict.ok is ok
    assert verdict.refused == (() if ok else (address,))


def test_the_verdict_names_each_refused_address_and_the_allowed_domains():
    verdict = recipients_check(
        ["a@contoso.com", "x@evil.example", "b@contoso.com", "y@evil.example"],
        sender=SENDER,
        allowed_domains=[],
    )
    assert verdict.refused == ("x@evil.example", "y@evil.example")
    assert verdict.allowed == ("contoso.com",)
    assert recipients_check(
        ["x@evil.example"], sender=SENDER, allowed_domains=["*"]
    ).allowed == ("*",)


def test_a_tool_without_a_from_address_allows_nothing_by_default():
    verdict = recipients_check(["soc@contoso.com"], sender="", allowed_domains=[])
    assert verdict.refused == ("soc@contoso.com",) and verdict.allowed == ()


@pytest.mark.parametrize("provider_cls", [MicrosoftAzureMailProvider, SmtpProvider])
def test_tools_saved_before_the_setting_existed_get_the_default(provider_cls):
    provider = provider_cls(config={"sender": SENDER}, secrets={})
    assert provider.allowed_recipient_domains == []
    assert provider.check_recipients(["soc@contoso.com"]).ok
    assert provider.check_recipients(["x@evil.example"]).refused == ("x@evil.example",)


# --- the drawer forms --------------------------------------------------------------

AZURE = {
    "tenant_id": "b5a0c1e2-3f47-4d8a-9c6b-2e1f0a9d8c7b",
    "client_id": "4e9d2a71-8c3b-4f05-a6d2-91b7e0c3f58a",
    "client_secret": "s3cr3t-value",
    "sender": "notifications@contoso.com",
    "recipients": "security-team@contoso.com",
    "cloud": "global",
}
SMTP = {
    "cloud": "global",
    "smtp_host": "smtp.office365.com",
    "smtp_port": "587",
    "security": "starttls",
    "minimum_tls": "1.2",
    "sender": "notifications@contoso.com",
    "recipients": "security-team@contoso.com",
    "auth_type": "oauth_app",
    "communication_type": "smtp",
    "tenant_id": "b5a0c1e2-3f47-4d8a-9c6b-2e1f0a9d8c7b",
    "client_id": "4e9d2a71-8c3b-4f05-a6d2-91b7e0c3f58a",
    "client_secret": "s3cr3t-value",
}
FORMS = [(MicrosoftAzureMailForm, AZURE), (SmtpForm, SMTP)]


@pytest.mark.parametrize("form_cls, data", FORMS)
def test_the_drawer_cleans_the_list_one_domain_a_line_or_separated(form_cls, data):
    form = form_cls(
        {**data, "allowed_recipient_domains": "Contoso.com\r\n*.Fabrikam.com, x.org"}
    )
    assert form.is_valid(), form.errors
    assert form.cleaned_data["allowed_recipient_domains"] == [
        "contoso.com",
        "*.fabrikam.com",
        "x.org",
    ]
    assert "allowed_recipient_domains" in form_cls.advanced_fields


@pytest.mark.parametrize("form_cls, data", FORMS)
def test_the_drawer_left_blank_stores_the_default(form_cls, data):
    form = form_cls(data)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["allowed_recipient_domains"] == []


@pytest.mark.parametrize("form_cls, data", FORMS)
def test_the_drawer_refuses_a_bad_domain_on_the_field(form_cls, data):
    form = form_cls({**data, "allowed_recipient_domains": "contoso.com\nuser@evil"})
    assert not form.is_valid()
    assert "user@evil" in form.errors["allowed_recipient_domains"][0]


@pytest.mark.parametrize("form_cls, data", FORMS)
def test_the_drawers_to_must_be_within_the_allowed_domains(form_cls, data):
    outside = {**data, "recipients": "security-team@contoso.com, soc@partner.example"}
    form = form_cls(outside)
    assert not form.is_valid()
    [error] = form.errors["recipients"]
    assert "soc@partner.example" in error and "contoso.com" in error
    assert "security-team@contoso.com" not in error

    allowed = form_cls(
        {**outside, "allowed_recipient_domains": "contoso.com partner.example"}
    )
    assert allowed.is_valid(), allowed.errors
    assert form_cls({**outside, "allowed_recipient_domains": "*"}).is_valid()


# --- the drawer page: the field saves and shows ------------------------------------

TOOL = reverse("integrations:tool", args=[MicrosoftAzureMailProvider.key])


@pytest.mark.django_db
def test_the_drawer_field_saves_and_shows_under_advanced(admin_client):
    page = admin_client.get(TOOL).content.decode()
    assert ">Allowed recipient domains<" in page
    assert '<details class="advanced">' in page  # folded while blank

    response = admin_client.post(
        TOOL, {**AZURE, "allowed_recipient_domains": "contoso.com\nBücher.example"}
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    integration = Integration.objects.get(provider=MicrosoftAzureMailProvider.key)
    assert integration.config["allowed_recipient_domains"] == [
        "contoso.com",
        "xn--bcher-kva.example",
    ]
    assert provider_for(integration).allowed_recipient_domains == [
        "contoso.com",
        "xn--bcher-kva.example",
    ]

    page = admin_client.get(TOOL).content.decode()
    assert '<details class="advanced" open>' in page
    assert ">\ncontoso.com\nxn--bcher-kva.example</textarea>" in page

    # Blank again: back to the default.
    admin_client.post(TOOL, {**AZURE, "client_secret": ""})
    integration.refresh_from_db()
    assert integration.config["allowed_recipient_domains"] == []
    assert provider_for(integration).check_recipients(["x@evil.example"]).refused


@pytest.mark.django_db
def test_the_drawer_shows_a_bad_list_as_a_field_error(admin_client):
    response = admin_client.post(
        TOOL, {**AZURE, "allowed_recipient_domains": "*, contoso.com"}
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "enter it alone" in html
    assert '<details class="advanced" open>' in html
    assert not Integration.objects.filter(
        provider=MicrosoftAzureMailProvider.key
    ).exists()
