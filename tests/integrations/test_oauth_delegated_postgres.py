"""Delegated OAuth 2.0 on PostgreSQL: two worker processes refresh the same expired
grant at once; the row lock lets exactly one of them redeem the refresh token."""

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from integrations.providers import delegated
from tests.integrations.smtp_support import SMTP_SCOPE
from tests.sandbox.m365 import sign_in, trusted_session

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]

# Saves an authorized SMTP tool whose access token has expired (values on stdin).
SETUP = """
import json, sys, time
import django
django.setup()
from integrations.models import Integration, IntegrationState
values = json.load(sys.stdin)
Integration.objects.create(
    provider="smtp",
    state=IntegrationState.ACTIVE,
    config=values["config"],
    secrets={**values["secrets"], "token_expires_at": time.time() - 10},
)
"""

# A worker: loads the tool (with its expired token), says it is ready, waits for the
# start signal, then asks for a token, as a delivery would.
WORKER = """
import json, os, time
from pathlib import Path
import django
django.setup()
from integrations.models import Integration
from integrations.services import provider_for
provider = provider_for(Integration.objects.get(provider="smtp"))
Path(os.environ["READY_FILE"]).touch()
go = Path(os.environ["GO_FILE"])
while not go.exists():
    time.sleep(0.005)
print(json.dumps({"access_token": provider.delegated_token()}))
"""

READ = """
import json
import django
django.setup()
from integrations.models import Integration
row = Integration.objects.get(provider="smtp")
print(json.dumps({"state": row.state, "secrets": row.secrets}))
"""


@pytest.fixture
def pg_env(postgres_url, sandbox, tmp_path):
    """The environment of a product process on a throwaway PostgreSQL database,
    migrated, and pointed at this run's sandbox (in this process, over loopback)."""
    import psycopg

    name = f"appsec_refresh_{uuid.uuid4().hex[:8]}"
    admin = postgres_url.replace("postgres://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = dict(
        os.environ,
        DATABASE_URL=f"{postgres_url.rpartition('/')[0]}/{name}",
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_READ_DOT_ENV_FILE="False",
        DEBUG="True",
        VAR_DIR=str(tmp_path),
        SECRET_KEY="refresh-test-" + uuid.uuid4().hex,
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        M365_AUTHORITY_HOST=sandbox.authority_host,
        M365_GRAPH_HOST=sandbox.graph_host,
        M365_SMTP_HOST=sandbox.smtp_host,
        M365_SMTP_PORT=str(sandbox.smtp_port),
        M365_CA_BUNDLE=str(sandbox.ca_path),
    )
    try:
        migrate = run(env, "manage.py", "migrate", "--no-input")
        assert migrate.returncode == 0, migrate.stderr
        yield env
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(env, *args, stdin=None):
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def signed_in_grant(sandbox) -> delegated.Grant:
    """A real grant from the sandbox: the seeded user signs in to the seeded app."""
    seed = sandbox.seed
    client = delegated.DelegatedClient(
        client_id=seed["client_id"],
        client_secret=seed["client_secret"],
        authority_host=sandbox.authority_host,
        tenant=seed["tenant_id"],
    )
    flow = delegated.start_flow(
        client,
        scopes=[SMTP_SCOPE],
        redirect_uri=seed["redirect_uris"][0],
        login_hint=seed["user"],
    )
    with trusted_session(sandbox.ca_path) as http:
        params = sign_in(http, flow["auth_uri"], seed["user"], seed["password"])
    return delegated.complete_flow(client, flow=flow, auth_response=params)


def test_two_processes_refreshing_one_grant_redeem_it_once(pg_env, sandbox, tmp_path):
    seed = sandbox.seed
    grant = signed_in_grant(sandbox)
    config = {
        "cloud": "global",
        "smtp_host": "smtp.office365.com",
        "smtp_port": 587,
        "security": "starttls",
        "minimum_tls": "1.2",
        "sender": seed["user"],
        "recipients": [seed["recipient"]],
        "auth_type": "oauth_delegated",
        "communication_type": "smtp",
        "username": seed["user"],
        "tenant_id": seed["tenant_id"],
        "client_id": seed["client_id"],
        "scope": SMTP_SCOPE,
    }
    secrets = {
        "client_secret": seed["client_secret"],
        "access_token": grant.access_token,
        "refresh_token": grant.refresh_token,
    }
    setup = run(
        pg_env, "-c", SETUP, stdin=json.dumps({"config": config, "secrets": secrets})
    )
    assert setup.returncode == 0, setup.stderr
    # The first refresh takes a second: the other process is then surely waiting
    # for the row lock, not merely late.
    sandbox.add_fault(target="token", delay=1.0, count=1)
    before = sandbox.counters()["refresh_redemptions"]
    go = tmp_path / "go"
    workers = []
    for n in range(2):
        env = dict(pg_env, READY_FILE=str(tmp_path / f"ready-{n}"), GO_FILE=str(go))
        workers.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"ready-{n}").exists() for n in range(2)):
            assert time.monotonic() < deadline, "the workers never got ready"
            assert all(w.poll() is None for w in workers), [
                w.communicate() for w in workers
            ]
            time.sleep(0.01)
        go.touch()
        outputs = [w.communicate(timeout=60) for w in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr
    tokens = {json.loads(stdout)["access_token"] for stdout, _ in outputs}
    assert sandbox.counters()["refresh_redemptions"] == before + 1
    assert len(tokens) == 1 and grant.access_token not in tokens
    saved = run(pg_env, "-c", READ)
    assert saved.returncode == 0, saved.stderr
    row = json.loads(saved.stdout)
    state = sandbox.ctx.state
    with state.lock:
        last_issued = list(state.refresh_tokens)[-1]
        assert state.refresh_tokens[grant.refresh_token]["used"]
        assert not state.refresh_tokens[last_issued]["used"]
    assert row["secrets"]["refresh_token"] == last_issued != grant.refresh_token
    assert row["secrets"]["access_token"] in tokens
    assert row["secrets"]["token_expires_at"] > time.time() + 600
    assert row["state"] == "active"
