"""Lockouts are shared by every process: two real servers on one database count
the same failures, so half the attempts on each lock the account on both."""

import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Two-process-pw-81"
LIMIT = 6


def browser() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # straight to loopback, whatever proxy is set
    return session


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server_env(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DJANGO_SETTINGS_MODULE", "CACHE_URL", "DATABASE_URL"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_READ_DOT_ENV_FILE="False",
        DEBUG="True",
        VAR_DIR=str(tmp_path / "var"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'shared.sqlite3'}",
        SECRET_KEY="two-process-test-" + "x" * 40,
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        SIGN_IN_FAILURE_LIMIT=str(LIMIT),
        LOG_LEVEL="WARNING",
    )
    return env


def manage(env, *args):
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def wait_until_serving(process, base_url, log_path, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited: {log_path.read_text()[-3000:]}")
        try:
            if browser().get(f"{base_url}/accounts/login/", timeout=2).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    pytest.fail(f"server not ready in {timeout}s: {log_path.read_text()[-3000:]}")


@pytest.fixture
def two_servers(server_env, tmp_path):
    manage(server_env, "migrate", "--noinput")
    manage(
        server_env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User; "
        f"User.objects.create_user('olivia', password={PASSWORD!r})",
    )
    servers, logs = [], []
    try:
        for name in ("a", "b"):
            port = free_port()
            log = open(tmp_path / f"server-{name}.log", "w")  # noqa: SIM115
            logs.append(log)
            process = subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "runserver",
                    "--noreload",
                    f"127.0.0.1:{port}",
                ],
                cwd=ROOT,
                env=server_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            servers.append((process, f"http://127.0.0.1:{port}"))
        for (process, base_url), name in zip(servers, "ab", strict=True):
            wait_until_serving(process, base_url, tmp_path / f"server-{name}.log")
        assert servers[0][0].pid != servers[1][0].pid
        yield [base_url for _, base_url in servers]
    finally:
        for process, _ in servers:
            process.terminate()
        for process, _ in servers:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in logs:
            log.close()


def sign_in(base_url, username, password):
    """Sign in through the page, as a browser: fetch the form, then post it."""
    session = browser()
    page = session.get(f"{base_url}/accounts/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)[1]
    return session.post(
        f"{base_url}/accounts/login/",
        data={"csrfmiddlewaretoken": token, "username": username, "password": password},
        allow_redirects=False,
        timeout=30,
    )


def test_failures_on_two_servers_add_up_to_one_lockout_on_both(
    two_servers, server_env, tmp_path
):
    server_a, server_b = two_servers
    half = LIMIT // 2

    on_a = [
        sign_in(server_a, "olivia", f"wrong-a-{n}").status_code for n in range(half)
    ]
    on_b = [
        sign_in(server_b, "olivia", f"wrong-b-{n}").status_code for n in range(half)
    ]

    # Neither server alone saw enough failures to lock; together they did.
    assert on_a == [200] * half
    assert on_b == [200] * (half - 1) + [429]
    for base_url in (server_a, server_b):
        response = sign_in(base_url, "olivia", PASSWORD)
        assert response.status_code == 429, base_url
        assert "Too many failed sign-in attempts" in response.text
        assert "sessionid" not in response.cookies

    with sqlite3.connect(tmp_path / "shared.sqlite3") as db:
        [(audited,)] = db.execute(
            "SELECT count(*) FROM integrations_auditentry WHERE action = ?",
            ("sign_in_locked_out",),
        )
    assert audited == 1

    # Unlocked once, from a third process, it is unlocked for both servers.
    assert "Unlocked sign-in for everyone" in manage(
        server_env, "unlock_sign_in", "--all"
    )
    for base_url in (server_a, server_b):
        response = sign_in(base_url, "olivia", PASSWORD)
        assert response.status_code == 302, base_url
        assert "sessionid" in response.cookies
