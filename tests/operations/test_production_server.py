"""The production server, started the way docs/deploy/Procfile says (issue 12).

The release commands (migrate, collectstatic) and the web command (gunicorn with
config/gunicorn.conf.py) are read from the Procfile, so the documented commands are
the ones tested. They run with the README's production environment, DEBUG off, on a
throwaway SQLite database and the local-memory cache instead of PostgreSQL and Redis,
and with LOG_FORMAT=json. The server answers on loopback like the real one behind its
TLS-ending proxy: with `X-Forwarded-Proto: https` and the production host name.
"""

import gzip
import http.client
import json
import os
import re
import runpy
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import brotli
import pytest

from tests.security.test_deploy_check import readme_production_environment

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = ROOT / "docs" / "deploy" / "Procfile"
HOST = "appsec.example.com"  # the README example's SITE_URL and ALLOWED_HOSTS
BIN = Path(sys.executable).parent


def procfile() -> dict[str, list[list[str]]]:
    """Each process type's commands (a `&&` chain split up) as argument lists, the
    programs resolved to this virtualenv's."""
    processes = {}
    for line in PROCFILE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        assert sep and re.fullmatch(r"[a-z]+", name), line
        commands = []
        for part in command.split("&&"):
            args = shlex.split(part)
            program = {"python": sys.executable, "gunicorn": str(BIN / "gunicorn")}
            assert args[0] in program, f"{name}: unexpected program {args[0]}"
            commands.append([program[args[0]], *args[1:]])
        processes[name] = commands
    return processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, process, port, var_dir, out, err):
        self.process, self.port, self.var_dir = process, port, var_dir
        self.out, self.err = out, err

    def get(self, path, headers=None, https=True):
        headers = {"Host": HOST, **(headers or {})}
        if https:
            headers["X-Forwarded-Proto"] = "https"
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()

    def logs(self) -> str:
        return self.out.read_text() + self.err.read_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    var_dir = tmp_path_factory.mktemp("production")
    port = free_port()
    environment = readme_production_environment()
    del environment["CACHE_URL"]  # the local-memory cache: no Redis needed
    environment.update(
        DATABASE_URL=f"sqlite:///{var_dir / 'db.sqlite3'}",
        VAR_DIR=str(var_dir),
        LOG_FORMAT="json",
        PORT=str(port),
        WEB_CONCURRENCY="2",
        # gunicorn's own variable, read after the config file: loopback only here,
        # where the config file says 0.0.0.0.
        GUNICORN_CMD_ARGS=f"--bind 127.0.0.1:{port}",
        PATH=os.environ.get("PATH", "/usr/bin:/bin"),
        DJANGO_READ_DOT_ENV_FILE="False",
    )
    processes = procfile()
    assert set(processes) >= {"release", "web", "worker"}

    for command in processes["release"]:
        completed = subprocess.run(
            command,
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
    assert (var_dir / "static" / "staticfiles.json").exists()

    (web,) = processes["web"]
    out, err = var_dir / "web.out", var_dir / "web.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            web, cwd=ROOT, env=environment, stdout=stdout, stderr=stderr
        )
    running = Server(process, port, var_dir, out, err)
    running.environment = environment
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"gunicorn exited:\n{running.logs()}"
            try:
                status, _headers, _body = running.get("/accounts/login/")
                break
            except OSError:
                assert time.monotonic() < deadline, running.logs()
                time.sleep(0.1)
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=45)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_procfile_names_release_web_and_worker():
    processes = procfile()

    assert [cmd[1:] for cmd in processes["release"]] == [
        ["manage.py", "migrate", "--no-input"],
        ["manage.py", "collectstatic", "--no-input"],
        ["manage.py", "run_periodic", "--book"],
    ]
    assert processes["web"] == [
        [str(BIN / "gunicorn"), "-c", "config/gunicorn.conf.py", "config.wsgi"]
    ]
    assert processes["worker"][0][1:3] == ["manage.py", "db_worker"]


def test_the_sign_in_page_is_served_with_the_security_headers(server):
    status, headers, body = server.get("/accounts/login/")

    assert status == 200, body[:2000]
    assert b'name="password"' in body
    assert headers["Strict-Transport-Security"] == (
        "max-age=31536000; includeSubDomains; preload"
    )
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-ID"])


def test_plain_http_is_redirected_to_https(server):
    status, headers, _body = server.get("/accounts/login/", https=False)

    assert status == 301
    assert headers["Location"] == f"https://{HOST}/accounts/login/"


def hashed_stylesheet(server) -> str:
    _status, _headers, body = server.get("/accounts/login/")
    match = re.search(rb'href="(/static/css/app\.[0-9a-f]{12}\.css)"', body)
    assert match, "the page does not name the hashed stylesheet"
    return match.group(1).decode()


@pytest.mark.parametrize(
    "accept, encoding, decode",
    [
        ("br", "br", brotli.decompress),
        ("gzip, deflate", "gzip", gzip.decompress),
        ("identity", None, lambda body: body),
    ],
)
def test_hashed_static_files_are_served_compressed_and_cached_for_ever(
    server, accept, encoding, decode
):
    path = hashed_stylesheet(server)
    collected = (server.var_dir / "static" / path.removeprefix("/static/")).read_bytes()

    status, headers, body = server.get(path, {"Accept-Encoding": accept})

    assert status == 200
    assert headers.get("Content-Encoding") == encoding
    assert "max-age=315360000" in headers["Cache-Control"]
    assert "immutable" in headers["Cache-Control"]
    assert headers["Content-Type"].startswith("text/css")
    assert decode(body) == collected
    assert len(collected) > 100


def test_a_sane_request_id_is_kept_and_any_other_replaced(server):
    _s, kept, _b = server.get("/accounts/login/", {"X-Request-ID": "proxy-42.a_B"})
    _s, long, _b = server.get("/accounts/login/", {"X-Request-ID": "a" * 65})
    _s, odd, _b = server.get("/accounts/login/", {"X-Request-ID": "a/b"})

    assert kept["X-Request-ID"] == "proxy-42.a_B"
    assert re.fullmatch(r"[0-9a-f]{32}", long["X-Request-ID"])
    assert re.fullmatch(r"[0-9a-f]{32}", odd["X-Request-ID"])


def wait_for_line(server, predicate, what):
    deadline = time.monotonic() + 20
    while True:
        lines = [json.loads(line) for line in server.logs().splitlines() if line]
        found = [line for line in lines if predicate(line)]
        if found:
            return lines, found
        assert time.monotonic() < deadline, f"no {what} in:\n{server.logs()}"
        time.sleep(0.1)


def test_with_log_format_json_every_line_is_json_with_the_request_id(server):
    server.get("/accounts/login/", {"X-Request-ID": "probe-login"})
    status, headers, _body = server.get("/no-such-page/", {"X-Request-ID": "probe-404"})
    assert status == 404 and headers["X-Request-ID"] == "probe-404"

    # gunicorn's access line (stdout) and the product's "Not Found" (stderr)
    lines, access = wait_for_line(
        server,
        lambda line: (
            line["logger"] == "gunicorn.access"
            and line.get("request_id") == "probe-login"
        ),
        "access log line",
    )
    assert "GET /accounts/login/" in access[0]["message"]
    _lines, not_found = wait_for_line(
        server,
        lambda line: (
            line["logger"] == "django.request" and line.get("request_id") == "probe-404"
        ),
        "Not Found line",
    )
    assert not_found[0]["level"] == "WARNING"
    assert "/no-such-page/" in not_found[0]["message"]
    # every line parsed (json.loads above); each has the fields
    for line in lines:
        assert {"time", "level", "logger", "message"} <= set(line), line
        if line["logger"] == "gunicorn.access":
            assert line.get("request_id"), line
    assert any(line["logger"] == "gunicorn.error" for line in lines)
    assert not any("Control socket" in line["message"] for line in lines)


def test_the_worker_command_starts_and_stops_on_sigterm(server):
    (worker,) = procfile()["worker"]
    log = server.var_dir / "worker.err"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            worker, cwd=ROOT, env=server.environment, stdout=stderr, stderr=stderr
        )
    try:
        deadline = time.monotonic() + 60
        while "Starting worker" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=30)

    assert returncode == 0, log.read_text()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line]
    assert any(line["logger"] == "django_tasks_db" for line in lines)


# -- config/gunicorn.conf.py on its own ------------------------------------------------


def gunicorn_settings(**environment):
    saved = dict(os.environ)
    os.environ.update(environment)
    try:
        return runpy.run_path(str(ROOT / "config" / "gunicorn.conf.py"))
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_the_gunicorn_settings_come_from_port_and_web_concurrency():
    default = gunicorn_settings(PORT="", WEB_CONCURRENCY="", LOG_FORMAT="plain")
    chosen = gunicorn_settings(PORT="9001", WEB_CONCURRENCY="5", LOG_FORMAT="json")

    assert default["bind"] == ["0.0.0.0:8000"] and default["workers"] == 2
    assert "logconfig_dict" not in default
    assert chosen["bind"] == ["0.0.0.0:9001"] and chosen["workers"] == 5
    assert chosen["accesslog"] == "-" and chosen["preload_app"] is False
    assert chosen["control_socket_disable"] is True  # one per user: instances clash
    formatter = chosen["logconfig_dict"]["formatters"]["json"]["()"]
    assert formatter == "config.logs.JsonFormatter"
    # the access log never has the query string (an OAuth callback's code)
    assert "%(r)s" not in chosen["access_log_format"]
    assert "%(q)s" not in chosen["access_log_format"]


@pytest.mark.parametrize(
    "name, value", [("PORT", "eighty"), ("PORT", "70000"), ("WEB_CONCURRENCY", "0")]
)
def test_a_malformed_gunicorn_variable_stops_start_up_saying_which(name, value):
    with pytest.raises(SystemExit) as stopped:
        gunicorn_settings(**{name: value})

    assert name in str(stopped.value.code) and value in str(stopped.value.code)
