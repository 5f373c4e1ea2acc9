"""Hostile and malformed input for every field of the Microsoft Azure Mail drawer."""

import pytest

from integrations.forms.microsoft_azure_mail import MicrosoftAzureMailForm

GOOD = {
    "tenant_id": "b5a0c1e2-3f47-4d8a-9c6b-2e1f0a9d8c7b",
    "client_id": "4e9d2a71-8c3b-4f05-a6d2-91b7e0c3f58a",
    "client_secret": "s3cret",
    "sender": "notifications@contoso.com",
    "recipients": "security-team@contoso.com",
    "cloud": "global",
    "secret_expires_on": "",
}


def errors_for(**overrides):
    form = MicrosoftAzureMailForm({**GOOD, **overrides})
    form.is_valid()
    return form.errors


def test_good_values_are_valid():
    assert errors_for() == {}


@pytest.mark.parametrize(
    "tenant",
    ["contoso.onmicrosoft.com", "CONTOSO.COM", "b5a0c1e2-3f47-4d8a-9c6b-2e1f0a9d8c7b"],
)
def test_tenant_accepts_guid_or_domain(tenant):
    assert "tenant_id" not in errors_for(tenant_id=tenant)


HOSTILE = [
    "",
    " ",
    "x" * 300,
    "<script>alert(1)</script>",
    "contoso.com\r\nBcc: victim@example.com",
    "'; DROP TABLE integrations_integration; --",
    "../../etc/passwd",
    "b5a0c1e2-3f47-4d8a-9c6b-2e1f0a9d8c7",
    "b5a0c1e23f474d8a9c6b2e1f0a9d8c7b",
]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("field", ["tenant_id", "client_id", "sender", "recipients"])
def test_hostile_values_are_refused_with_a_message(field, value):
    errors = errors_for(**{field: value})
    assert field in errors
    assert all(message for message in errors[field])


@pytest.mark.parametrize("field", list(GOOD))
def test_line_breaks_are_refused_in_every_field(field):
    assert field in errors_for(**{field: GOOD[field] + "\r\nX-Injected: 1"})


def test_secret_with_line_break_is_refused():
    assert "client_secret" in errors_for(client_secret="abc\ndef")


def test_overlong_secret_is_refused():
    assert "client_secret" in errors_for(client_secret="a" * 2000)


def test_from_must_be_a_single_address():
    assert "sender" in errors_for(sender="a@contoso.com, b@contoso.com")


def test_to_accepts_several_addresses_and_deduplicates():
    form = MicrosoftAzureMailForm(
        {**GOOD, "recipients": "a@contoso.com; B@contoso.com,a@contoso.com"}
    )
    assert form.is_valid()
    assert form.cleaned_data["recipients"] == ["a@contoso.com", "b@contoso.com"]


def test_to_names_the_bad_addresses():
    errors = errors_for(recipients="a@contoso.com, not-an-address")
    assert "not-an-address" in errors["recipients"][0]


def test_too_many_recipients_are_refused():
    many = ",".join(f"user{n}@contoso.com" for n in range(60))
    assert "recipients" in errors_for(recipients=many)


@pytest.mark.parametrize("cloud", ["mars", "", "<b>"])
def test_cloud_must_be_a_known_preset(cloud):
    assert "cloud" in errors_for(cloud=cloud)


@pytest.mark.parametrize("date", ["tomorrow", "2024-13-40", "<script>"])
def test_expiry_must_be_a_date(date):
    assert "secret_expires_on" in errors_for(secret_expires_on=date)


def test_client_secret_is_never_rendered_back():
    form = MicrosoftAzureMailForm({**GOOD, "client_secret": "do-not-render"})
    assert "do-not-render" not in str(form)


# --- Messages per minute (advanced): blank is Microsoft's limit ------------------------


def test_messages_per_minute_is_optional_and_blank_means_microsofts_limit():
    form = MicrosoftAzureMailForm({**GOOD, "messages_per_minute": ""})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["messages_per_minute"] is None
    assert "10,000 requests" not in str(form.fields["messages_per_minute"].help_text)
    assert "1,000 a minute" in str(form.fields["messages_per_minute"].help_text)


@pytest.mark.parametrize("value", ["1", "60", "1000"])
def test_messages_per_minute_accepts_up_to_graphs_limit(value):
    form = MicrosoftAzureMailForm({**GOOD, "messages_per_minute": value})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["messages_per_minute"] == int(value)


@pytest.mark.parametrize("value", ["0", "-5", "1001", "2.5", "ten", "1e3", "<b>5</b>"])
def test_messages_per_minute_beyond_graphs_limit_or_not_a_number_is_refused(value):
    errors = errors_for(messages_per_minute=value)
    assert "messages_per_minute" in errors
    assert all(message for message in errors["messages_per_minute"])


def test_over_the_limit_says_what_microsoft_accepts():
    (message,) = errors_for(messages_per_minute="5000")["messages_per_minute"]
    assert "Microsoft Graph accepts at most 1,000 messages a minute" in message
