import uuid

import pytest
import requests
from django.contrib.auth.models import Group, User

from integrations.permissions import SECURITY_ADMINS_GROUP

# A value that must never come back out of the product.
SENTINEL_SECRET = "Zz9Q~SENTINEL-secret-value-do-not-leak-0123456789"


@pytest.fixture(autouse=True)
def empty_cache():
    """Rate-limit counters live in the cache; each test starts with none."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def admin_user(db):
    user = User.objects.create_user("sec-admin", "sec-admin@example.com", "pw-admin-1!")
    user.groups.add(Group.objects.get_or_create(name=SECURITY_ADMINS_GROUP)[0])
    return user


@pytest.fixture
def plain_user(db):
    return User.objects.create_user("member", "member@example.com", "pw-member-1!")


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def graph_values(sandbox):
    """The drawer's values for Microsoft Azure Mail, from the sandbox seed."""
    seed = sandbox.seed
    return {
        "tenant_id": seed["tenant_id"],
        "client_id": seed["client_id"],
        "client_secret": seed["client_secret"],
        "sender": seed["sender"],
        "recipients": seed["recipient"],
        "cloud": "global",
        "secret_expires_on": "",
    }


def control(sandbox, method, path, body=None):
    """Call the sandbox's control API (a test's own client, not the product's)."""
    response = requests.request(
        method,
        f"{sandbox.base_url}/_sandbox/{path}",
        json=body,
        verify=str(sandbox.ca_path),
    )
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


@pytest.fixture
def ctl(sandbox):
    return lambda method, path, body=None: control(sandbox, method, path, body)


@pytest.fixture
def add_app(sandbox):
    """Register an app in the sandbox's seeded tenant; returns (client_id, secret)."""

    def add(**fields):
        tenant = sandbox.seed["tenant_id"]
        fields.setdefault("client_id", str(uuid.uuid4()))
        fields.setdefault("admin_consent", True)
        fields.setdefault("application_permissions", ["Mail.Send"])
        control(sandbox, "POST", f"tenants/{tenant}/apps", fields)
        secret = control(
            sandbox, "POST", f"tenants/{tenant}/apps/{fields['client_id']}/secrets", {}
        )
        return fields["client_id"], secret["value"]

    return add
