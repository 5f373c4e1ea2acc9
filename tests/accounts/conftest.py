"""Helpers for signing in through the real sign-in page."""

import pytest

LOGIN_URL = "/accounts/login/"


def sign_in(client, username, password, address="127.0.0.1", **extra):
    """POST the sign-in form as a browser at `address` would."""
    return client.post(
        LOGIN_URL,
        {"username": username, "password": password, "next": "/projects/"},
        REMOTE_ADDR=address,
        **extra,
    )


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


@pytest.fixture
def fail_sign_ins(client):
    """Fail `times` sign-ins for `username` from `address`; return the responses."""

    def do(username, times, address="127.0.0.1", password="not-the-password"):
        return [sign_in(client, username, password, address) for _ in range(times)]

    return do
