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
