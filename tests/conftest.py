"""Fixtures shared by the whole suite: the Microsoft 365 sandbox, users and roles."""

import os

import certifi
import pytest
from django.contrib.auth.models import Group, User

from integrations.permissions import SECURITY_ADMINS_GROUP
from integrations.providers import graph, identity
from projects.models import Membership, Project, Role

# As on the machines this product is built on: requests would let this variable
# override Session.verify. The product must still trust the sandbox's CA.
os.environ.setdefault("REQUESTS_CA_BUNDLE", certifi.where())


@pytest.fixture(scope="session")
def sandbox_server(tmp_path_factory):
    """One sandbox for the whole run, on free loopback ports."""
    from sandbox import Sandbox

    with Sandbox(state_dir=tmp_path_factory.mktemp("sandbox")) as sb:
        yield sb


@pytest.fixture
def sandbox(sandbox_server, settings):
    """The sandbox in its seeded state, with the product pointed at it."""
    sandbox_server.reset()
    settings.M365_AUTHORITY_HOST = sandbox_server.authority_host
    settings.M365_GRAPH_HOST = sandbox_server.graph_host
    settings.M365_SMTP_HOST = sandbox_server.smtp_host
    settings.M365_SMTP_PORT = sandbox_server.smtp_port
    settings.M365_IMAP_HOST = sandbox_server.imap_host
    settings.M365_IMAP_PORT = sandbox_server.imap_port
    settings.M365_CA_BUNDLE = str(sandbox_server.ca_path)
    yield sandbox_server


def _service_missing(name: str, why: str):
    """Skip, or fail when REQUIRE_SERVICES=1 (CI), for a service that is not running."""
    message = f"{name} is not available ({why}); start it or unset REQUIRE_SERVICES"
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(f"{name} is not running here ({why}); skipped.")


@pytest.fixture(scope="session")
def postgres_url():
    """A DATABASE_URL for a PostgreSQL server (POSTGRES_URL, default local trust auth)."""
    url = os.environ.get("POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    try:
        import psycopg

        with psycopg.connect(
            url.replace("postgres://", "postgresql://"), connect_timeout=3
        ):
            pass
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        _service_missing("PostgreSQL", f"{type(exc).__name__}: {str(exc)[:120]}")
    return url


@pytest.fixture(scope="session")
def redis_url():
    """A Redis URL (REDIS_URL, default 127.0.0.1:6379)."""
    import socket

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    try:
        with socket.create_connection((host, int(port or 6379)), timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            if not sock.recv(16).startswith(b"+PONG"):
                raise OSError("no PONG")
    except OSError as exc:
        _service_missing("Redis", str(exc))
    return url


@pytest.fixture(autouse=True)
def fresh_msal_apps():
    """Each test starts with no cached msal application (and so no cached token)."""
    identity.forget_apps()
    yield
    identity.forget_apps()


@pytest.fixture(autouse=True)
def fresh_graph_connections():
    """Each test starts with no open Graph connection: whether a request goes on a
    reused keep-alive connection changes what a dropped one does
    (integrations/providers/curl.py)."""
    graph.forget_clients()
    yield
    graph.forget_clients()


# --- people in every role, and projects for them -----------------------------------


@pytest.fixture
def security_admin(db):
    user = User.objects.create_user("sam", password="pw-sam-123456")
    group, _ = Group.objects.get_or_create(name=SECURITY_ADMINS_GROUP)
    user.groups.add(group)
    return user


@pytest.fixture
def owner(db):
    return User.objects.create_user("olivia", password="pw-olivia-123456")


@pytest.fixture
def member(db):
    return User.objects.create_user("mike", password="pw-mike-123456")


@pytest.fixture
def outsider(db):
    return User.objects.create_user("otto", password="pw-otto-123456")


@pytest.fixture
def project(db, owner, member):
    project = Project.objects.create(name="Shop", slug="shop")
    Membership.objects.create(project=project, user=owner, role=Role.OWNER)
    Membership.objects.create(project=project, user=member, role=Role.MEMBER)
    return project


@pytest.fixture
def other_project(db, outsider):
    project = Project.objects.create(name="Payroll", slug="payroll")
    Membership.objects.create(project=project, user=outsider, role=Role.OWNER)
    return project


def client_for(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def smtp_link(sandbox, project):
    """The SMTP tool (Exchange Online SMTP, OAuth 2.0 application) linked to the
    project: every severity, scan completed, immediately."""
    from integrations.forms.smtp import SmtpForm
    from integrations.services import integration_save
    from notifications.models import ToolLink
    from tests.integrations.smtp_support import drawer_data

    form = SmtpForm(drawer_data(sandbox, "oauth_app"))
    assert form.is_valid(), form.errors
    tool = integration_save(
        provider_key="smtp", cleaned_data=form.cleaned_data, actor=None
    )
    return ToolLink.objects.create(
        project=project,
        integration=tool,
        minimum_severity="info",
        notify_scan_completed=True,
    )
