"""Where a saved integration keeps its msal token cache and its delegated grant."""

import pytest
from django.db import connection

from integrations.models import Integration
from integrations.services import (
    IntegrationGrantStore,
    IntegrationTokenStore,
    provider_for,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def integration():
    return Integration.objects.create(
        provider="smtp",
        config={"sender": "notifications@contoso.onmicrosoft.com"},
        secrets={"access_token": "old", "refresh_token": "r1"},
    )


def test_the_token_cache_is_kept_encrypted_in_the_row(integration):
    store = IntegrationTokenStore(integration.pk)
    assert store.load() == ""

    store.save('{"AccessToken": {}}')

    assert store.load() == '{"AccessToken": {}}'
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT token_cache FROM integrations_integration WHERE id = %s",
            [integration.pk],
        )
        [(stored,)] = cursor.fetchall()
    assert stored and "AccessToken" not in stored


def test_a_refresh_saves_what_the_update_returns(integration):
    store = IntegrationGrantStore(integration.pk)

    after = store.refresh(
        lambda secrets: {"access_token": "new", "refresh_token": "r2"}
    )

    assert after == {"access_token": "new", "refresh_token": "r2"}
    assert Integration.objects.get().secrets == after


def test_a_refresh_that_returns_nothing_changes_nothing(integration):
    store = IntegrationGrantStore(integration.pk)
    seen = []

    after = store.refresh(lambda secrets: seen.append(dict(secrets)))

    assert seen == [{"access_token": "old", "refresh_token": "r1"}]
    assert after == Integration.objects.get().secrets == seen[0]


def test_provider_for_a_saved_row_shares_its_stores(integration):
    provider = provider_for(integration)

    assert provider.config == integration.config
    assert provider.secrets == integration.secrets
    assert provider.token_store.integration_id == integration.pk
    assert provider.grant_store.integration_id == integration.pk


def test_provider_for_an_unsaved_row_has_no_stores():
    provider = provider_for(Integration(provider="smtp"))

    assert provider.token_store is None and provider.grant_store is None
