"""Delivery of 1,000 notifications through the Microsoft 365 sandbox.

Starts a sandbox on free ports and a throwaway SQLite database in a temporary
directory, activates Microsoft Azure Mail (Graph, client credentials) or the SMTP tool
(OAuth 2.0 application), links it to a project, emits N events in one transaction (the
outbox: N Delivery rows), then runs the delivery task's code and prints:

- messages per second (claiming, rendering, sending and recording each delivery);
- token requests the sandbox answered (must be 1: one token for the whole batch);
- TCP connections the sandbox accepted;
- the tool's per-mailbox pacing (Exchange Online SMTP: 30 messages a minute), which is
  off for the throughput figure unless --paced: then the task sends the budget's worth
  and defers the rest to free slots.

Usage:
    .venv/bin/python bench/delivery.py [--messages 1000] [--tool graph|smtp] [--paced]
(--count is the same as --messages). The temporary directory is removed at exit.
Exits 1 if a delivery was neither sent nor (with --paced) deferred, or more than one
token was requested.
"""

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--messages",
        "--count",
        dest="count",
        type=int,
        default=1000,
        metavar="N",
        help="notifications to deliver (default: %(default)s)",
    )
    parser.add_argument("--tool", choices=["graph", "smtp"], default="graph")
    parser.add_argument(
        "--paced", action="store_true", help="keep per-mailbox pacing on (default: off)"
    )
    args = parser.parse_args()
    if args.count < 1:
        parser.error("--messages must be at least 1")

    from cryptography.fernet import Fernet

    from sandbox import Sandbox

    workdir = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    with Sandbox(state_dir=workdir / "sandbox") as sb:
        os.environ.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DEBUG="True",
            VAR_DIR=str(workdir / "var"),
            DATABASE_URL=f"sqlite:///{workdir / 'bench.sqlite3'}",
            SECRET_KEY="bench-" + "x" * 50,
            FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
            # Enqueueing is not measured: the task's body runs below, in this process.
            TASKS_BACKEND="django_tasks.backends.dummy.DummyBackend",
            M365_AUTHORITY_HOST=sb.authority_host,
            M365_GRAPH_HOST=sb.graph_host,
            M365_SMTP_HOST=sb.smtp_host,
            M365_SMTP_PORT=str(sb.smtp_port),
            M365_CA_BUNDLE=str(sb.ca_path),
            LOG_LEVEL="WARNING",
        )
        if not args.paced:
            os.environ["NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE"] = "0"
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import transaction

        from integrations.services import integration_save, provider_for
        from notifications import tasks
        from notifications.models import Delivery, DeliveryStatus, EventKind, ToolLink
        from notifications.services import event_emit
        from notifications.services.pacing import mailbox_budget
        from projects.models import Project
        from tests.tools import activate_azure_mail

        call_command("migrate", verbosity=0)
        seed = sb.seed
        if args.tool == "graph":
            tool = activate_azure_mail(seed)
        else:
            from integrations.forms.smtp import SmtpForm
            from tests.integrations.smtp_support import drawer_data

            form = SmtpForm(drawer_data(sb, "oauth_app"))
            if not form.is_valid():
                raise SystemExit(f"SMTP settings invalid: {form.errors.as_json()}")
            tool = integration_save(
                provider_key="smtp", cleaned_data=form.cleaned_data, actor=None
            )
        project = Project.objects.create(name="Benchmark", slug="benchmark")
        ToolLink.objects.create(
            project=project,
            integration=tool,
            notify_new_vulnerabilities=False,
            notify_scan_completed=True,
        )

        started = time.perf_counter()
        with transaction.atomic():
            for i in range(args.count):
                event_emit(
                    project=project,
                    kind=EventKind.SCAN_COMPLETED,
                    payload={
                        "scan_id": None,
                        "new": i % 7,
                        "seen_again": i % 3,
                        "resolved": i % 2,
                        "reopened": 0,
                        "counts": {"high": i % 7, "low": i % 3},
                    },
                )
        outbox_seconds = time.perf_counter() - started
        ids = list(Delivery.objects.values_list("pk", flat=True))

        sb.control("DELETE", "/_sandbox/counters")
        sb.clear_messages()
        started = time.perf_counter()
        result = tasks.deliver.call(ids)
        seconds = time.perf_counter() - started

        counters = sb.counters()
        sent = Delivery.objects.filter(status=DeliveryStatus.SENT).count()
        # The task's own deferrals, and the rows it never claimed, moved to a free slot.
        deferred = Delivery.objects.filter(
            status=DeliveryStatus.PENDING, attempts=0
        ).count()
        provider = provider_for(tool)
        figure = provider.messages_per_minute
        if figure:
            minutes = -(-args.count // figure)
            pacing = (
                f"{figure} messages/min per mailbox (the tool's), "
                f"{args.count} messages take {minutes} min at that pace; "
                + ("on" if mailbox_budget(provider) else "off for this measurement")
            )
        else:
            pacing = "none for this tool (the server's 429 + Retry-After are honoured)"
        tokens = sum(counters["token_requests"].values())
        print(f"tool:               {args.tool}")
        print(
            f"deliveries:         {len(ids)} written in {outbox_seconds:.2f}s (outbox)"
        )
        print(
            f"sent:               {sent} in {seconds:.2f}s -> {sent / seconds:.0f} messages/s"
        )
        print(f"task result:        {json.dumps(result)}")
        print(f"token requests:     {tokens} {json.dumps(counters['token_requests'])}")
        print(f"TCP connections:    {json.dumps(counters['tcp_connections'])}")
        print(
            f"sandbox received:   {len(sb.messages())} messages, "
            f"{counters.get('smtp_sessions', 0)} SMTP sessions"
        )
        print(f"mailbox pacing:     {pacing}")
        if deferred:
            print(f"deferred by pacing: {deferred} (sent later, as slots free)")
        ok = sent + deferred == len(ids) == args.count and tokens == 1
        if not ok:
            print(
                "FAILED: not every delivery was sent or deferred, or more than one "
                "token was requested"
            )
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
