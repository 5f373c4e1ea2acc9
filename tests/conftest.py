"""Fixtures shared by the whole suite: the Microsoft 365 sandbox, users and roles."""

import os

import certifi
import pytest

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
