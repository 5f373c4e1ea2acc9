"""A sentinel secret must never come back out: pages, logs, audit rows, admin, errors."""

import logging

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.urls import reverse

from integrations.models import AuditEntry, Integration
from integrations.providers.microsoft_azure_mail import MicrosoftAzureMailProvider
from tests.integrations.conftest import SENTINEL_SECRET

KEY = MicrosoftAzureMailProvider.key
pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client(client):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def test_sentinel_secret_never_leaves_the_product(
    superuser_client, sandbox, graph_values, caplog
):
    caplog.set_level(logging.DEBUG)
    client = superuser_client
    graph_values["client_secret"] = SENTINEL_SECRET
    bodies = []

    # Test with the sentinel (it is wrong, so every error path runs), save, test again.
    bodies.append(
        client.post(
            reverse("integrations:test", args=[KEY]),
            graph_values,
            HTTP_X_REQUESTED_WITH="fetch",
        )
    )
    bodies.append(client.post(reverse("integrations:test", args=[KEY]), graph_values))
    bodies.append(
        client.post(reverse("integrations:tool", args=[KEY]), graph_values, follow=True)
    )
    graph_values["client_secret"] = ""
    bodies.append(
        client.post(
            reverse("integrations:test", args=[KEY]),
            graph_values,
            HTTP_X_REQUESTED_WITH="fetch",
        )
    )
    integration = Integration.objects.get(provider=KEY)
    for url in [
        reverse("integrations:notification_tools"),
        reverse("integrations:tool", args=[KEY]),
        reverse("integrations:audit_log"),
        reverse("admin:integrations_integration_changelist"),
        reverse("admin:integrations_integration_change", args=[integration.pk]),
        reverse("admin:integrations_auditentry_changelist"),
    ]:
        bodies.append(client.get(url))

    assert "Invalid client secret" in bodies[0].content.decode()
    for response in bodies:
        assert response.status_code in (200, 400), response.request
        assert SENTINEL_SECRET not in response.content.decode()
    for record in caplog.records:
        assert SENTINEL_SECRET not in record.getMessage()
    for entry in AuditEntry.objects.all():
        assert SENTINEL_SECRET not in str(entry.__dict__)

    # Stored, but encrypted.
    assert integration.secrets["client_secret"] == SENTINEL_SECRET
    with connection.cursor() as cursor:
        cursor.execute("SELECT secrets FROM integrations_integration")
        assert SENTINEL_SECRET not in cursor.fetchone()[0]
