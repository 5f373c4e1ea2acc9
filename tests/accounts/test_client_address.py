"""The address failed sign-ins are counted against: REMOTE_ADDR, or behind trusted
reverse proxies the entry they appended to X-Forwarded-For."""

import pytest
from axes.models import AccessAttempt
from django.test import RequestFactory

from accounts.services import client_address
from tests.accounts.conftest import sign_in, signed_in


def request(remote="10.0.0.2", forwarded=None):
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    return RequestFactory().get("/", REMOTE_ADDR=remote, **extra)


def test_by_default_x_forwarded_for_is_ignored(settings):
    settings.SIGN_IN_TRUSTED_PROXY_COUNT = 0
    assert client_address(request(forwarded="203.0.113.9")) == "10.0.0.2"


@pytest.mark.parametrize(
    "proxies, forwarded, expected",
    [
        (1, "203.0.113.9", "203.0.113.9"),
        (1, "1.2.3.4, 203.0.113.9", "203.0.113.9"),  # the left one is forged
        (2, "1.2.3.4, 203.0.113.9, 10.0.0.1", "203.0.113.9"),
        (1, "2001:db8::1", "2001:db8::1"),
        (2, "203.0.113.9", "10.0.0.2"),  # shorter than the proxies: not trusted
        (1, "", "10.0.0.2"),
        (1, "unknown", "10.0.0.2"),
        (1, "203.0.113.9:4711", "10.0.0.2"),
    ],
)
def test_behind_proxies_the_entry_they_appended_is_taken(
    settings, proxies, forwarded, expected
):
    settings.SIGN_IN_TRUSTED_PROXY_COUNT = proxies
    assert client_address(request(forwarded=forwarded)) == expected


@pytest.mark.django_db
def test_a_forged_header_does_not_escape_an_address_lockout(client, owner, settings):
    settings.SIGN_IN_TRUSTED_PROXY_COUNT = 1
    for n in range(5):
        sign_in(
            client,
            f"guess-{n}",
            "wrong",
            address="10.0.0.2",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, 198.51.100.7",
        )
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {
        "198.51.100.7"
    }

    response = sign_in(
        client,
        "olivia",
        "pw-olivia-123456",
        address="10.0.0.2",
        HTTP_X_FORWARDED_FOR="192.0.2.200, 198.51.100.7",
    )
    assert response.status_code == 429
    assert not signed_in(client)
