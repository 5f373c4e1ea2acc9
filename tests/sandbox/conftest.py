"""Fixtures for the sandbox's own tests: no database, only the sandbox and clients.

``sandbox_server`` (tests/conftest.py) is one sandbox for the run; ``sb`` puts it back
in its seeded state before each test.
"""

import pytest

from tests.sandbox.m365 import Control, trusted_session


@pytest.fixture
def sb(sandbox_server):
    sandbox_server.reset()
    yield sandbox_server


@pytest.fixture
def seed(sb):
    return sb.seed


@pytest.fixture
def http(sb):
    """A requests session trusting the sandbox CA (and not REQUESTS_CA_BUNDLE)."""
    with trusted_session(sb.ca_path) as session:
        yield session


@pytest.fixture
def ctl(sb, http):
    return Control(sb, http)
