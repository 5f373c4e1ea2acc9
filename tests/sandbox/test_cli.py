"""`python -m sandbox serve`: listens on the given ports, prints the seed, stops."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.sandbox.m365 import trusted_session

ROOT = Path(__file__).resolve().parents[2]
SEED_KEYS = (
    "tenant_id",
    "client_id",
    "client_secret",
    "client_secret_id",
    "sender",
    "recipient",
    "user",
    "password",
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The CLI as a child process, its output collected as it comes."""

    def __init__(self, *args):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "serve", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self):
        return "".join(self.lines)

    def wait_for_port(self, port, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"port {port} never opened:\n{self.output}")

    def wait_for_output(self, pattern, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output)
            if match:
                return match
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} never printed:\n{self.output}")

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._reader.join(timeout=5)


def ca_pattern(state_dir):
    """The CA path the CLI prints: a .pem file inside the state directory."""
    return "(" + re.escape(str(state_dir)) + r"\S*\.pem)"


@pytest.fixture
def ports():
    return free_port(), free_port(), free_port()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_serve_prints_seed_answers_and_exits_cleanly_on_signal(tmp_path, ports, sig):
    https_port, smtp_port, imap_port = ports
    server = Server(
        "--host",
        "127.0.0.1",
        "--https-port",
        str(https_port),
        "--smtp-port",
        str(smtp_port),
        "--imap-port",
        str(imap_port),
        "--state-dir",
        str(tmp_path),
    )
    try:
        server.wait_for_port(https_port)
        server.wait_for_port(smtp_port)
        server.wait_for_port(imap_port)
        ca_path = Path(server.wait_for_output(ca_pattern(tmp_path)).group(1))
        server.wait_for_output(r"inbox")
        with trusted_session(ca_path) as http:
            seed = http.get(f"https://127.0.0.1:{https_port}/_sandbox/seed").json()
    finally:
        code = server.stop(sig)

    assert code == 0, server.output
    assert ca_path.is_file() and ca_path.is_relative_to(tmp_path)
    assert seed["smtp_port"] == smtp_port
    assert seed["imap_port"] == imap_port
    assert f"127.0.0.1:{imap_port}" in server.output
    assert seed["authority"] == f"https://127.0.0.1:{https_port}/{seed['tenant_id']}"
    for key in SEED_KEYS:
        assert seed[key] in server.output, key
    assert f"https://127.0.0.1:{https_port}/_sandbox/inbox" in server.output
    assert "Traceback" not in server.output


def test_serve_no_control_refuses_the_control_api_but_serves_the_ca(tmp_path, ports):
    https_port, smtp_port, imap_port = ports
    server = Server(
        "--https-port",
        str(https_port),
        "--smtp-port",
        str(smtp_port),
        "--imap-port",
        str(imap_port),
        "--state-dir",
        str(tmp_path),
        "--no-control",
    )
    try:
        server.wait_for_port(https_port)
        ca_path = Path(server.wait_for_output(ca_pattern(tmp_path)).group(1))
        with trusted_session(ca_path) as http:
            seed = http.get(f"https://127.0.0.1:{https_port}/_sandbox/seed")
            ca = http.get(f"https://127.0.0.1:{https_port}/_sandbox/ca.pem")
    finally:
        code = server.stop()

    assert code == 0, server.output
    assert seed.status_code == 404
    assert ca.status_code == 200


def test_serve_reuses_the_state_dir_ca_on_restart(tmp_path):
    https_port, smtp_port, imap_port = free_port(), free_port(), free_port()
    pems = []
    for _ in range(2):
        server = Server(
            "--https-port",
            str(https_port),
            "--smtp-port",
            str(smtp_port),
            "--imap-port",
            str(imap_port),
            "--state-dir",
            str(tmp_path),
        )
        try:
            server.wait_for_port(https_port)
            ca_path = Path(server.wait_for_output(ca_pattern(tmp_path)).group(1))
            with trusted_session(ca_path) as http:
                pems.append(
                    http.get(f"https://127.0.0.1:{https_port}/_sandbox/ca.pem").text
                )
        finally:
            assert server.stop() == 0, server.output

    assert pems[0] == pems[1]


def test_serve_defaults_are_loopback_and_the_documented_ports():
    from sandbox.__main__ import build_parser

    args = build_parser().parse_args(["serve"])

    assert args.host == "127.0.0.1"
    assert args.https_port == 8365
    assert args.smtp_port == 8587
    assert args.imap_port == 8993
    assert args.state_dir == "var/sandbox"
    assert args.no_control is False


def test_serve_help_shows_the_defaults():
    result = subprocess.run(
        [sys.executable, "-m", "sandbox", "serve", "--help"],
        cwd=ROOT,
        env=dict(os.environ, COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 0, result.stderr
    help_text = " ".join(result.stdout.split())
    assert "--host HOST" in help_text and "(default: 127.0.0.1)" in help_text
    assert "(default: 8365)" in help_text
    assert "(default: 8587)" in help_text


def test_serve_grant_is_repeatable_and_empty_by_default():
    from sandbox.__main__ import build_parser

    parser = build_parser()

    assert parser.parse_args(["serve"]).grant == []
    assert parser.parse_args(
        ["serve", "--grant", "Mail.ReadBasic.All", "--grant", "Mail.Read"]
    ).grant == ["Mail.ReadBasic.All", "Mail.Read"]


def test_serve_refuses_to_grant_an_unknown_permission(capsys):
    from sandbox.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["serve", "--grant", "Mail.ReadEverything"])

    assert exited.value.code == 2
    assert "Mail.ReadBasic.All" in capsys.readouterr().err
