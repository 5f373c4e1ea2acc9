"""`delegated.fresh_grant`: a stored delegated grant's access token, refreshed near
expiry. Against the sandbox and the database: tests/integrations/test_oauth_delegated.py.
"""

import time

import pytest

from integrations.exceptions import AuthorizationRequired
from integrations.providers import delegated, identity


def grant(token="new", refresh="r2") -> delegated.Grant:
    return delegated.Grant(
        access_token=token, refresh_token=refresh, expires_at=time.time() + 3600
    )


class Redeemer:
    """Records the refresh tokens redeemed, and answers with a new grant."""

    def __init__(self):
        self.redeemed = []

    def __call__(self, refresh_token):
        self.redeemed.append(refresh_token)
        return grant()


def test_a_fresh_token_is_used_without_a_refresh():
    secrets = {
        "access_token": "old",
        "refresh_token": "r1",
        "token_expires_at": time.time() + identity.EXPIRY_MARGIN + 60,
    }
    redeem = Redeemer()

    assert delegated.fresh_grant(secrets, redeem=redeem) == secrets
    assert redeem.redeemed == []


def test_a_token_near_expiry_is_refreshed_and_the_other_secrets_kept():
    secrets = {
        "access_token": "old",
        "refresh_token": "r1",
        "token_expires_at": time.time() + identity.EXPIRY_MARGIN - 1,
        "client_secret": "kept",
    }
    redeem = Redeemer()

    after = delegated.fresh_grant(secrets, redeem=redeem)

    assert redeem.redeemed == ["r1"]
    assert (after["access_token"], after["refresh_token"]) == ("new", "r2")
    assert after["client_secret"] == "kept"


@pytest.mark.parametrize("secrets", [{}, {"access_token": "old"}])
def test_without_a_refresh_token_a_person_must_authorize(secrets):
    with pytest.raises(AuthorizationRequired) as raised:
        delegated.fresh_grant(secrets, redeem=Redeemer())

    assert raised.value.code == "authorization_missing"


class MemoryStore:
    """A GrantStore holding the secrets another process saved meanwhile."""

    def __init__(self, stored):
        self.stored = stored

    def refresh(self, update):
        changes = update(dict(self.stored))
        if changes:
            self.stored = {**self.stored, **changes}
        return self.stored


def test_a_token_refreshed_by_another_process_is_used_as_stored():
    stale = {"access_token": "old", "token_expires_at": 0}
    store = MemoryStore(
        {
            "access_token": "theirs",
            "refresh_token": "r2",
            "token_expires_at": time.time() + 3600,
        }
    )
    redeem = Redeemer()

    after = delegated.fresh_grant(stale, redeem=redeem, store=store)

    assert redeem.redeemed == []
    assert (after["access_token"], after["refresh_token"]) == ("theirs", "r2")
