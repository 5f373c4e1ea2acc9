"""Benchmark: building the new-vulnerabilities email, from the database to MIME bytes.

    .venv/bin/python bench/email_build.py [--deliveries 25] [--findings 10]
        [--repeat 20] [--messages 500]

Prints, for the usual new-vulnerabilities email (--findings findings listed):

- the MIME message: our `build_message(...).as_bytes()` against Django's own
  `EmailMultiAlternatives(...).message().as_bytes()` for the same content (and the
  previous builder, `EmailMessage.set_content` under the SMTP policy), in ms per
  message over --messages messages, median of --repeat rounds;
- rendering a claimed batch of --deliveries such deliveries: `emails_for` (one
  batch) against `email_for` one delivery at a time and the previous `email_for`,
  in ms per email (median of --repeat rounds) and database queries per batch, and
  whether all three render the same bytes;
- decryptions of the tool's secrets and token cache while a claim loads the batch.

Everything runs in a child process whose database is a throwaway SQLite file in a
temporary directory (its VAR_DIR too), removed at the end: DATABASE_URL is forced to
it and `.env` is not read, so nothing is written into a database this script did
not create.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Variables of the caller's environment that would change what the product does.
_PRODUCT_VARIABLES = re.compile(
    r"^(NOTIFICATIONS_|M365_|SMTP_|SARIF_|TASKS_|DATABASE_URL$|CACHE_URL$|SITE_URL$|"
    r"VAR_DIR$|DEBUG$|SECRET_KEY$|FIELD_ENCRYPTION_KEYS$|DJANGO_SETTINGS_MODULE$|"
    r"DJANGO_READ_DOT_ENV_FILE$|LOG_LEVEL$)"
)
SENDER, SENDER_NAME = "appsec-alerts@contoso.example", "AppSec Alerts"


def median_ms(rounds: list[float], per: int) -> float:
    return statistics.median(rounds) * 1000 / per


# -- the measurements, in the child process ---------------------------------------------


def child(args) -> None:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    figures = {}
    batch = make_deliveries(args.deliveries, args.findings)
    figures.update(render_figures(batch, args.repeat))
    figures.update(mime_figures(batch[0], args.messages, args.repeat))
    figures.update(decryption_figures(batch))
    print(json.dumps(figures))


def make_deliveries(count: int, findings: int):
    """`count` new-vulnerabilities deliveries of `findings` findings each (one scan
    import each, over up to five projects), loaded as the claim loads them."""
    from integrations.models import Integration, IntegrationState
    from notifications.models import Delivery, ToolLink
    from projects.models import Project
    from projects.services import scan_import
    from tests.projects.sarif_documents import sarif_bytes, sarif_result

    tool = Integration.objects.create(
        provider="microsoft_azure_mail",
        state=IntegrationState.ACTIVE,
        config={"sender": SENDER, "recipients": ["appsec@contoso.example"]},
        secrets={"client_secret": "x" * 40},
        # About what msal keeps for an app-only token.
        token_cache=json.dumps({"AccessToken": {"k": {"secret": "t" * 2000}}}),
    )
    projects = []
    for p in range(min(5, count)):
        project = Project.objects.create(name=f"Shop {p}", slug=f"shop-{p}")
        ToolLink.objects.create(
            project=project,
            integration=tool,
            minimum_severity="info",
            recipients=["appsec@contoso.example"],
        )
        projects.append(project)
    levels = ("error", "warning", "note")
    for i in range(count):
        results = [
            sarif_result(
                f"PY{i:03d}{f:02d}",
                uri=f"src/service_{i}/module_{f}.py",
                line=f * 7 + 1,
                level=levels[f % 3],
                message=f"Possible injection through parameter {f} — user input",
            )
            for f in range(findings)
        ]
        scan_import(
            project=projects[i % len(projects)],
            sarif=sarif_bytes(results),
            source="api",
        )
    return list(
        Delivery.objects.select_related(
            "project", "event", "event__scan", "link", "integration"
        ).order_by("integration_id", "pk")
    )


def render_figures(batch, repeat: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from notifications.emails import email_for, emails_for
    from tests.notifications.email_reference import reference_email_for

    ways = {
        "previous": lambda: {d.pk: reference_email_for(d) for d in batch},
        "single": lambda: {d.pk: email_for(d) for d in batch},
        "batch": lambda: emails_for(batch),
    }
    outputs, queries, rounds = {}, {}, {name: [] for name in ways}
    for name, render in ways.items():
        with CaptureQueriesContext(connection) as captured:
            outputs[name] = render()
        queries[name] = len(captured)
    for _ in range(repeat):  # interleaved, so that a busy moment hits all three
        for name, render in ways.items():
            began = time.perf_counter()
            render()
            rounds[name].append(time.perf_counter() - began)
    kinds = {d.event.kind for d in batch}
    assert kinds == {"new_vulnerabilities"}, kinds
    return {
        "deliveries": len(batch),
        "same_output": outputs["previous"] == outputs["single"] == outputs["batch"],
        **{f"{n}_ms": median_ms(rounds[n], len(batch)) for n in ways},
        **{f"{n}_queries": queries[n] for n in ways},
    }


def mime_figures(delivery, messages: int, repeat: int) -> dict:
    from django.core.mail import EmailMultiAlternatives

    from integrations.providers.smtp_client import build_message
    from notifications.emails import email_for
    from tests.integrations.providers.smtp_reference import reference_build_message

    email = email_for(delivery)

    def ours():
        build_message(email, sender=SENDER, sender_name=SENDER_NAME).as_bytes()

    def previous():
        reference_build_message(
            email, sender=SENDER, sender_name=SENDER_NAME
        ).as_bytes()

    def django_():
        message = EmailMultiAlternatives(
            email.subject,
            email.text,
            f"{SENDER_NAME} <{SENDER}>",
            list(email.to),
            headers={"Message-ID": email.message_id, **email.headers},
        )
        message.attach_alternative(email.html, "text/html")
        message.message().as_bytes(linesep="\r\n")

    ways = {"ours": ours, "django": django_, "previous": previous}
    rounds = {name: [] for name in ways}
    for _ in range(repeat):
        for name, build in ways.items():
            began = time.perf_counter()
            for _ in range(messages):
                build()
            rounds[name].append(time.perf_counter() - began)
    return {
        "text_chars": len(email.text),
        "html_chars": len(email.html),
        **{f"mime_{n}_ms": median_ms(rounds[n], messages) for n in ways},
    }


def decryption_figures(batch) -> dict:
    """MultiFernet.decrypt calls while the claim's query loads the batch: with the
    per-token cache, and with every row decrypting its own (as before)."""
    from unittest import mock

    from cryptography.fernet import MultiFernet

    from integrations import fields
    from notifications.models import Delivery

    def decryptions() -> int:
        real, calls = MultiFernet.decrypt, []

        def counting(self, token, ttl=None):
            calls.append(1)
            return real(self, token, ttl)

        with mock.patch.object(MultiFernet, "decrypt", counting):
            list(
                Delivery.objects.filter(pk__in=[d.pk for d in batch]).select_related(
                    "project", "event", "event__scan", "link", "integration"
                )
            )
        return len(calls)

    fields._decrypt.cache_clear()  # as in a worker that has read nothing yet
    cached = decryptions()
    with mock.patch.object(fields, "_decrypt", fields._decrypt.__wrapped__):
        uncached = decryptions()
    return {"decryptions": cached, "decryptions_uncached": uncached}


# -- the report, in the parent process --------------------------------------------------


def row(label, value):
    print(f"{label:<44} {value}", flush=True)


def run_child(args) -> dict:
    from cryptography.fernet import Fernet

    directory = tempfile.mkdtemp(prefix="email-bench-")
    try:
        env = {k: v for k, v in os.environ.items() if not _PRODUCT_VARIABLES.match(k)}
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DJANGO_READ_DOT_ENV_FILE="False",
            DEBUG="False",
            SECRET_KEY="bench-" + "x" * 50,
            FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
            SITE_URL="https://appsec.example.test",
            VAR_DIR=directory,
            DATABASE_URL=f"sqlite:///{directory}/bench.sqlite3",
            LOG_LEVEL="WARNING",
        )
        result = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                f"--deliveries={args.deliveries}",
                f"--findings={args.findings}",
                f"--repeat={args.repeat}",
                f"--messages={args.messages}",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if result.returncode != 0:
        sys.exit(f"benchmark child failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def report(figures: dict, args) -> None:
    n = figures["deliveries"]
    row(
        "E-mail build benchmark",
        f"throwaway SQLite database, {n} deliveries x {args.findings} findings",
    )
    print(
        f"\n[MIME message] new-vulnerabilities email: text {figures['text_chars']:,} "
        f"chars, HTML {figures['html_chars']:,} chars"
    )
    ours, django_ = figures["mime_ours_ms"], figures["mime_django_ms"]
    row("build_message (compat32)", f"{ours:8.3f} ms/message")
    row("Django EmailMultiAlternatives", f"{django_:8.3f} ms/message")
    row("  ratio build_message / Django", f"{ours / django_:8.2f} x")
    row(
        "previous build_message (SMTP policy)",
        f"{figures['mime_previous_ms']:8.3f} ms/message",
    )

    print(f"\n[rendering] {n} new-vulnerabilities emails, claimed as one batch")
    for key, label in (
        ("previous", "previous email_for, one at a time"),
        ("single", "email_for, one at a time"),
        ("batch", "emails_for, one batch"),
    ):
        queries = figures[key + "_queries"]
        row(
            label,
            f"{figures[key + '_ms']:8.3f} ms/email, "
            f"{queries} {'query' if queries == 1 else 'queries'} per batch",
        )
    row(
        "  ratio emails_for / previous",
        f"{figures['batch_ms'] / figures['previous_ms']:8.2f} x",
    )
    row("  same bytes, all three", "yes" if figures["same_output"] else "NO")

    print(f"\n[claim] loading the {n} claimed rows, each with its tool")
    row(
        "decryptions (secrets, token cache)",
        f"{figures['decryptions']} (one per row and field without the cache: "
        f"{figures['decryptions_uncached']})",
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--deliveries",
        type=int,
        default=25,
        metavar="N",
        help="new-vulnerabilities deliveries in the batch (default: %(default)s)",
    )
    parser.add_argument(
        "--findings",
        type=int,
        default=10,
        metavar="N",
        help="findings in each email (default: %(default)s)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=20,
        metavar="N",
        help="rounds of each measurement; the median is printed (default: %(default)s)",
    )
    parser.add_argument(
        "--messages",
        type=int,
        default=500,
        metavar="N",
        help="MIME messages built per round (default: %(default)s)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("deliveries", "findings", "repeat", "messages"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.child:
        child(args)
        return
    report(run_child(args), args)


if __name__ == "__main__":
    main()
