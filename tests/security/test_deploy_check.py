"""Production settings: the README's production environment passes
`manage.py check --deploy` with no warning, and the HTTPS settings derived from an
https SITE_URL do what they say. Each case starts the real settings module in a fresh
process with only the environment given (settings are read once, at start-up)."""

import atexit
import functools
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- production-environment:"


def readme_production_environment() -> dict[str, str]:
    """The variables of the README's production example, `<...>` values filled."""
    text = (ROOT / "README.md").read_text()
    assert MARKER in text, f"README.md has lost its {MARKER} example"
    block = re.search(r"```sh\n(.*?)```", text[text.index(MARKER) :], re.S)
    assert block, "no ```sh block after the production-environment marker"
    environment = {}
    for line in block.group(1).splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z][A-Z0-9_]*", name), line
        environment[name] = value
    # What an operator puts in place of the placeholders.
    filled = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }
    for name, value in environment.items():
        if re.fullmatch(r"<[^<>]*>", value):
            assert name in filled, f"no stand-in for {name}'s placeholder {value}"
            environment[name] = filled[name]
        else:
            environment[name] = re.sub(r"<[^<>]*>", "placeholder", value)
    return environment


def run(args, environment, timeout=120):
    """`args` with this Python, in a process with only `environment` (and what any
    process needs: PATH; no .env file)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_READ_DOT_ENV_FILE": "False",
        **environment,
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_readme_production_environment_passes_check_deploy():
    environment = readme_production_environment()
    # It is a production environment: what the hostile review ran with.
    assert environment["DEBUG"] == "False"
    assert environment["SITE_URL"].startswith("https://")
    assert environment["CACHE_URL"].startswith("redis://")

    completed = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], environment
    )

    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "System check identified no issues (0 silenced)." in output, output


# -- what the settings derive from an https SITE_URL ----------------------------------

PROBE = """
import json
import django
django.setup()
from django.conf import settings
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
host = {"HTTP_HOST": "appsec.example.com"}
plain = Client().get("/accounts/login/", **host)
proxied = Client().get("/accounts/login/", HTTP_X_FORWARDED_PROTO="https", **host)
print(json.dumps({
    "ssl_redirect": settings.SECURE_SSL_REDIRECT,
    "hsts_seconds": settings.SECURE_HSTS_SECONDS,
    "csrf_trusted_origins": settings.CSRF_TRUSTED_ORIGINS,
    "proxy_header": settings.SECURE_PROXY_SSL_HEADER,
    "form_action": settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]["form-action"],
    "plain": [plain.status_code, plain.get("Location", "")],
    "proxied": [proxied.status_code, proxied.get("Strict-Transport-Security", ""),
                proxied.get("Content-Security-Policy", "")],
}))
"""


@functools.cache
def collected_var_dir() -> str:
    """A VAR_DIR holding what the release's `collectstatic` writes (issue 12): with
    DEBUG off, pages name their static files from its manifest."""
    var_dir = tempfile.mkdtemp(prefix="deploy-check-var-")
    atexit.register(shutil.rmtree, var_dir, ignore_errors=True)
    environment = readme_production_environment()
    environment.update(DATABASE_URL="sqlite:///:memory:", VAR_DIR=var_dir)
    completed = run(
        ["manage.py", "collectstatic", "--no-input", "-v", "0"], environment
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return var_dir


def probe(**overrides) -> dict:
    environment = readme_production_environment()
    # The page is served from SQLite here: the README's database is not reachable.
    environment["DATABASE_URL"] = "sqlite:///:memory:"
    environment["VAR_DIR"] = collected_var_dir()
    environment["DJANGO_SETTINGS_MODULE"] = "config.settings"
    environment.update(overrides)
    environment = {k: v for k, v in environment.items() if v is not None}
    completed = run(["-c", PROBE], environment)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


MICROSOFT_SIGN_IN = [
    "https://login.microsoftonline.com",
    "https://login.microsoftonline.us",
    "https://login.chinacloudapi.cn",
]


def test_https_site_url_turns_on_redirect_hsts_and_trusted_origin():
    answer = probe()

    assert answer["ssl_redirect"] is True
    assert answer["hsts_seconds"] == 365 * 24 * 3600
    assert answer["csrf_trusted_origins"] == ["https://appsec.example.com"]
    assert answer["proxy_header"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    # Plain http is sent to https; through the proxy, the page is served with HSTS.
    assert answer["plain"] == [301, "https://appsec.example.com/accounts/login/"]
    status, hsts, csp = answer["proxied"]
    assert status == 200
    assert hsts == "max-age=31536000; includeSubDomains; preload"
    form_action = re.search(r"form-action ([^;]*)", csp).group(1).split()
    assert form_action == ["'self'", *MICROSOFT_SIGN_IN]


def test_production_form_action_has_no_loopback_and_no_wildcard():
    answer = probe()

    assert answer["form_action"] == ["'self'", *MICROSOFT_SIGN_IN]
    joined = " ".join(answer["form_action"])
    assert "127.0.0.1" not in joined and "localhost" not in joined
    assert "https:" not in answer["form_action"]


def test_form_action_adds_the_configured_authority_host_and_extra_origins():
    # The sandbox: M365_AUTHORITY_HOST on loopback is the operator's own choice.
    answer = probe(
        M365_AUTHORITY_HOST="https://127.0.0.1:8365",
        CSP_FORM_ACTION_EXTRA="https://idp.example.net/oauth2/authorize",
    )

    assert answer["form_action"] == [
        "'self'",
        *MICROSOFT_SIGN_IN,
        "https://127.0.0.1:8365",
        "https://idp.example.net",
    ]


def test_every_derived_default_can_be_overridden():
    answer = probe(
        SECURE_SSL_REDIRECT="False",
        SECURE_HSTS_SECONDS="3600",
        CSRF_TRUSTED_ORIGINS="https://a.example.com,https://b.example.com",
        SECURE_PROXY_SSL_HEADER=None,
    )

    assert answer["ssl_redirect"] is False
    assert answer["hsts_seconds"] == 3600
    assert answer["csrf_trusted_origins"] == [
        "https://a.example.com",
        "https://b.example.com",
    ]
    assert answer["proxy_header"] is None
    assert answer["plain"][0] == 200


def test_an_http_site_url_derives_no_https_settings():
    answer = probe(SITE_URL="http://appsec.example.com")

    assert answer["ssl_redirect"] is False and answer["hsts_seconds"] == 0


@pytest.mark.parametrize(
    "name, value, says",
    [
        ("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto", "SECURE_PROXY_SSL_HEADER"),
        ("SECURE_PROXY_SSL_HEADER", "X_FORWARDED_PROTO,https", "HTTP_X_FORWARDED"),
        ("SECURE_HSTS_SECONDS", "-1", "SECURE_HSTS_SECONDS"),
        ("SITE_URL", "appsec.example.com", "SITE_URL"),
        ("CSP_FORM_ACTION_EXTRA", "javascript:alert(1)", "CSP_FORM_ACTION_EXTRA"),
        ("CSP_FORM_ACTION_EXTRA", "https://x.example;script-src *", "CSP_FORM_ACTION"),
    ],
)
def test_a_malformed_value_stops_start_up_saying_which(name, value, says):
    environment = readme_production_environment()
    environment[name] = value

    completed = run(["manage.py", "check"], environment)

    assert completed.returncode != 0
    assert "ImproperlyConfigured" in completed.stderr and says in completed.stderr
