"""Throughput of the Microsoft 365 sandbox with the real clients.

Starts a sandbox on free ports, gets one Graph app token with msal, then measures:

- Graph sendMail requests per second over one keep-alive requests.Session;
- the same with 4 threads, one session each;
- SMTP messages per second over one smtplib session (STARTTLS + AUTH XOAUTH2);

and prints the TCP connections the sandbox counted for each phase.

By default the sandbox runs in this process (as in the test suite), so client and
server share one interpreter; --separate-process runs it with
``python -m sandbox serve`` instead, as in the demo.

Usage: .venv/bin/python bench/sandbox_throughput.py [--seconds N] [--separate-process]
"""

import argparse
import contextlib
import os
import platform
import re
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import msal  # noqa: E402
import requests  # noqa: E402

from sandbox import Sandbox  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChildSandbox:
    """``python -m sandbox serve`` in a child process, with the Sandbox calls used."""

    def __init__(self, state_dir):
        self.https_port, self.smtp_port = free_port(), free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sandbox",
                "serve",
                "--state-dir",
                str(state_dir),
                "--https-port",
                str(self.https_port),
                "--smtp-port",
                str(self.smtp_port),
                "--imap-port",
                "0",  # not read here: any free port
            ],
            cwd=ROOT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        ca_path = None
        for line in self.process.stdout:
            match = re.match(r"\s*CA certificate\s+(\S+)", line)
            if match:
                ca_path = Path(match.group(1))
            if "Press Ctrl-C" in line:
                break
        if ca_path is None:
            raise SystemExit("the sandbox did not start")
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        self.ca_path = ca_path
        self.base_url = self.graph_host = f"https://127.0.0.1:{self.https_port}"
        self.smtp_host = "127.0.0.1"
        self._control = trusted_session(ca_path)
        self.seed = self._call("GET", "seed")
        self.authority = self.seed["authority"]

    def _call(self, method, path):
        response = self._control.request(method, f"{self.base_url}/_sandbox/{path}")
        response.raise_for_status()
        return response.json()

    def counters(self):
        return self._call("GET", "counters")

    def clear_messages(self):
        return self._call("DELETE", "messages")

    def close(self):
        self._control.close()
        self.process.terminate()
        self.process.wait(timeout=15)


@contextlib.contextmanager
def child_sandbox():
    with tempfile.TemporaryDirectory(prefix="sandbox-bench-") as state_dir:
        sb = ChildSandbox(state_dir)
        try:
            yield sb
        finally:
            sb.close()


def trusted_session(ca_path):
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace verify otherwise
    session.verify = str(ca_path)
    return session


def app_token(sb, session, scope):
    seed = sb.seed
    app = msal.ConfidentialClientApplication(
        seed["client_id"],
        client_credential=seed["client_secret"],
        authority=sb.authority,
        instance_discovery=False,
        http_client=session,
    )
    result = app.acquire_token_for_client([scope])
    if "access_token" not in result:
        raise SystemExit(f"no token: {result}")
    return result["access_token"]


def graph_loop(sb, token, seconds, session=None):
    """sendMail in a loop for ``seconds``; returns the number of 202s."""
    seed = sb.seed
    url = f"{sb.graph_host}/v1.0/users/{seed['sender']}/sendMail"
    body = {
        "message": {
            "subject": "Throughput",
            "body": {"contentType": "Text", "content": "Benchmark message."},
            "toRecipients": [{"emailAddress": {"address": seed["recipient"]}}],
        },
        "saveToSentItems": False,
    }
    headers = {"Authorization": f"Bearer {token}"}
    own = session is None
    session = session or trusted_session(sb.ca_path)
    sent = 0
    deadline = time.perf_counter() + seconds
    try:
        while time.perf_counter() < deadline:
            response = session.post(url, json=body, headers=headers)
            if response.status_code != 202:
                raise SystemExit(f"sendMail answered {response.status_code}")
            sent += 1
    finally:
        if own:
            session.close()
    return sent


def smtp_loop(sb, token, seconds):
    seed = sb.seed
    context = ssl.create_default_context(cafile=str(sb.ca_path))
    message = EmailMessage()
    message["From"] = seed["sender"]
    message["To"] = seed["recipient"]
    message["Subject"] = "Throughput"
    message.set_content("Benchmark message.")
    xoauth2 = f"user={seed['sender']}\x01auth=Bearer {token}\x01\x01"
    sent = 0
    with smtplib.SMTP(sb.smtp_host, sb.smtp_port, timeout=30) as client:
        client.starttls(context=context)
        client.ehlo()
        client.auth("XOAUTH2", lambda challenge=None: "" if challenge else xoauth2)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            client.send_message(message)
            sent += 1
    return sent


def phase(sb, name, run, seconds, unit):
    sb.clear_messages()
    before = sb.counters()["tcp_connections"]
    started = time.perf_counter()
    count = run()
    elapsed = time.perf_counter() - started
    after = sb.counters()["tcp_connections"]
    connections = {k: after[k] - before[k] for k in after}
    # counters() reads memory (or a kept-alive control connection): not counted.
    print(
        f"{name:<44} {count / elapsed:8.0f} {unit}/s  "
        f"({count} in {elapsed:.1f} s; TCP connections https={connections['https']}"
        f" smtp={connections['smtp']})"
    )
    return count / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds",
        type=float,
        default=5.0,
        help="duration of each measurement (default 5)",
    )
    parser.add_argument(
        "--separate-process",
        action="store_true",
        help="run the sandbox with `python -m sandbox serve`",
    )
    args = parser.parse_args()
    seconds = args.seconds

    where = "a separate process" if args.separate_process else "this process"
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{seconds:g} s per measurement, sandbox in {where}"
    )
    with child_sandbox() if args.separate_process else Sandbox() as sb:
        with trusted_session(sb.ca_path) as session:
            graph_token = app_token(sb, session, "https://graph.microsoft.com/.default")
            smtp_token = app_token(
                sb, session, "https://outlook.office365.com/.default"
            )

        def one_session():
            with trusted_session(sb.ca_path) as s:
                return graph_loop(sb, graph_token, seconds, session=s)

        def four_threads():
            counts = [0] * 4

            def worker(i):
                counts[i] = graph_loop(sb, graph_token, seconds)

            threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return sum(counts)

        # Warm up (TLS, imports, first token validation).
        graph_loop(sb, graph_token, 0.3)

        phase(
            sb,
            "Graph sendMail, one keep-alive session",
            one_session,
            seconds,
            "requests",
        )
        phase(
            sb,
            "Graph sendMail, 4 threads x 1 session",
            four_threads,
            seconds,
            "requests",
        )
        phase(
            sb,
            "SMTP, one session (STARTTLS + XOAUTH2)",
            lambda: smtp_loop(sb, smtp_token, seconds),
            seconds,
            "messages",
        )
        counters = sb.counters()
        print(
            "Sandbox counters: graph_send_mail={graph_send_mail} "
            "smtp_messages={smtp_messages} tcp_connections={tcp_connections}".format(
                **counters
            )
        )


if __name__ == "__main__":
    main()
