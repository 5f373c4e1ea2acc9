"""Fault drill: deliveries through Graph and SMTP from three sender mailboxes while
the sandbox fails and a worker is killed. Nothing may be lost.

    .venv/bin/python bench/fault_drill.py [--deliveries 1000] [--workers 2]
        [--database-url URL] [--grant Mail.ReadBasic.All] [--email-box] [--keep]

Starts the sandbox in a process of its own and, in a throwaway database (SQLite, or
one of its own on the --database-url PostgreSQL server), activates Microsoft Azure
Mail (Graph, sending as notifications@) and the SMTP tool (XOAUTH2, application,
sending as smtp-alerts@), links both to one project and emits --deliveries / 2
new-vulnerabilities events in transactions of 25 (one delivery per event and tool).
Then the sandbox injects, per request and at random: Graph 429 with Retry-After,
503, connection resets and 504 after the message was accepted; SMTP 451 4.3.2 and
connection resets at the end of DATA. --workers db_worker processes send; once a
quarter of the deliveries are sent, one worker that is running a task is killed with
SIGKILL and started again; once half of the Graph tool's are sent, an admin changes
its From address to a third mailbox (security-alerts@).

A message whose answer was lost (a 504 after accepting, a killed worker's) is looked
up in the sender's Sent Items before it is sent again, where the product can look:
Graph with --grant Mail.ReadBasic.All, SMTP with --email-box (the tool's Email box,
over IMAP). Without them such a message is sent again and marked on the delivery log.

It prints expected, delivered, lost and doubled (by Message-ID among the sandbox's
stored messages), the doubles after a 504-after-accept (allowed: the message was
accepted, the answer said it was not) against what the product's delivery log shows,
and exits 1 if anything was lost.

Time is scaled down: retries back off from 0.5 s, a lease lasts 5 s, and the pacing
"minute" is a second (Exchange Online SMTP's 30 a minute becomes 30 a second).
"""

import argparse
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import (  # noqa: E402
    SandboxProcess,
    Worker,
    activate_graph,
    activate_smtp_app,
    counter_delta,
    database_label,
    delivery_states,
    django_setup,
    emit_new_vulnerabilities,
    expected_message_ids,
    failed_tasks,
    heading,
    postgres_database,
    product_env,
    project_with_findings,
    row,
    sqlite_database,
    tally,
    wait_for,
    wait_until_settled,
    workdir,
)

SMTP_MAILBOX = "smtp-alerts@contoso.onmicrosoft.com"
THIRD_MAILBOX = "security-alerts@contoso.onmicrosoft.com"
EVENTS_PER_TRANSACTION = 25

#: Scaled-down time, so that a drill of 1,000 deliveries takes a minute or two.
SETTINGS = {
    "NOTIFICATIONS_RETRY_BASE_SECONDS": 0.5,
    "NOTIFICATIONS_RETRY_MAX_SECONDS": 5,
    "NOTIFICATIONS_LEASE_SECONDS": 5,
    "NOTIFICATIONS_PACING_WINDOW_SECONDS": 1,
}

#: (what, fault) in the order the sandbox tries them; the first that fires wins.
RESET = {"drop": True, "reset": True}  # "reset": a TCP RST where the sandbox can
FAULTS = [
    (
        "Graph 429 + Retry-After 1 s",
        {
            "target": "graph",
            "status": 429,
            "retry_after": "1",
            "error_code": "ApplicationThrottled",
            "probability": 0.03,
        },
    ),
    ("Graph 503", {"target": "graph", "status": 503, "probability": 0.03}),
    ("Graph connection reset", {"target": "graph", **RESET, "probability": 0.02}),
    (
        "Graph 504 after accepting",
        {"target": "graph", "accept_then_status": 504, "probability": 0.02},
    ),
    (
        "SMTP 451 4.3.2",
        {
            "target": "smtp",
            "smtp_stage": "data",
            "smtp_reply": "451 4.3.2 Message submission rate for this client has "
            "exceeded the configured limit",
            "probability": 0.04,
        },
    ),
    (
        "SMTP connection reset at DATA",
        {"target": "smtp", "smtp_stage": "data", **RESET, "probability": 0.02},
    ),
    # Last, so it applies only when no fault above fired: a little Graph latency,
    # which also keeps a worker inside a task long enough to be killed there. (An
    # SMTP fault always answers; the sandbox has no SMTP latency alone.)
    ("latency", {"target": "graph", "delay": 0.02, "probability": 1.0}),
]


def prepare_sandbox(sandbox) -> None:
    """Two more mailboxes in the seeded tenant; the app may send as all three by
    SMTP (its FullAccess mailbox permission), as by Graph (no access policy)."""
    seed = sandbox.seed
    tenant = seed["tenant_id"]
    for address in (SMTP_MAILBOX, THIRD_MAILBOX):
        sandbox.control(
            "POST",
            f"tenants/{tenant}/users",
            json={"user_principal_name": address, "has_mailbox": True},
        )
    sandbox.control(
        "PATCH",
        f"tenants/{tenant}/apps/{seed['client_id']}",
        json={"mailbox_permissions": [seed["sender"], SMTP_MAILBOX, THIRD_MAILBOX]},
    )


def running_worker(started: list[Worker]) -> Worker | None:
    """A live worker that is running a task now."""
    from django_tasks_db.models import DBTaskResult

    running = DBTaskResult.objects.filter(status="RUNNING").values_list(
        "worker_ids", flat=True
    )
    busy = {worker_id for ids in running for worker_id in (ids or [])}
    for worker in started:
        if worker.worker_id in busy and worker.process.poll() is None:
            return worker
    return None


def product_log(projects) -> list[tuple[str, str]]:
    """What the product's delivery log shows about the drill's deliveries."""
    from django.db.models import Sum

    from notifications.models import Delivery

    rows = Delivery.objects.filter(project__in=projects)
    states = delivery_states(projects)
    lines = [
        (
            "product's deliveries",
            ", ".join(f"{n} {s}" for s, n in sorted(states.items())),
        )
    ]
    fields = {f.name for f in Delivery._meta.get_fields()}
    totals = rows.aggregate(
        attempts=Sum("attempts"),
        **({"throttles": Sum("throttle_count")} if "throttle_count" in fields else {}),
    )
    text = f"{totals['attempts'] or 0} attempts"
    if "throttles" in totals:
        text += f", {totals['throttles'] or 0} throttled answers"
    lines.append(("  recorded", text))
    codes = Counter(rows.exclude(error_code="").values_list("error_code", flat=True))
    if codes:
        lines.append(
            (
                "  last error codes",
                ", ".join(f"{code} {n}" for code, n in codes.most_common()),
            )
        )
    return lines


def product_504_record(projects) -> str:
    """The product's own count of "accepted, then answered 5xx" cases, if it keeps
    one; else why there is none to compare with."""
    from notifications.models import Delivery

    fields = {f.name for f in Delivery._meta.get_fields()}
    if "resent_unconfirmed" in fields:
        value = Delivery.objects.filter(
            project__in=projects, resent_unconfirmed=True
        ).count()
        return (
            f"{value} deliveries marked on the delivery log as sent again after a "
            "lost answer (a 504 after accepting, a timeout, a reset, or a killed "
            "worker's claim: every row of the batch it had begun, reached or not) "
            "without being found in Sent Items first"
        )
    return (
        "not recorded: a delivery keeps its last outcome only, and a sent one "
        "no error, so the log cannot tell a resend after a 504 from any retry"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--deliveries",
        type=int,
        default=1000,
        metavar="N",
        help="deliveries, half through each tool (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        metavar="N",
        help="db_worker processes; one is killed (default: %(default)s)",
    )
    parser.add_argument(
        "--worker-interval",
        type=float,
        default=0.1,
        metavar="S",
        help="db_worker --interval (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="give up waiting after S seconds (default: 120 + N / 2)",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="a PostgreSQL server to run on, in a database of its own "
        "(default: a throwaway SQLite file)",
    )
    parser.add_argument(
        "--grant",
        action="append",
        default=[],
        metavar="PERMISSION",
        help="an application permission to grant the app besides the seed's, e.g. "
        "Mail.ReadBasic.All (the Sent Items lookup); repeatable (default: none)",
    )
    parser.add_argument(
        "--email-box",
        action="store_true",
        help="turn on the SMTP tool's Email box (IMAP as the app), through which "
        "it looks in Sent Items (default: off)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (logs)"
    )
    args = parser.parse_args()
    if args.deliveries < 2 or args.deliveries % 2:
        parser.error("--deliveries must be an even number, 2 or more")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    timeout = args.timeout or 120 + args.deliveries / 2
    count = args.deliveries

    with workdir("bench-fault-drill-", keep=args.keep) as work:
        with SandboxProcess(work / "sandbox", grant=args.grant) as sandbox:
            if args.database_url:
                database = postgres_database(args.database_url, "bench_drill")
            else:
                database = sqlite_database(work / "sqlite")
            with database as url:
                env = product_env(sandbox, database_url=url, var_dir=work, **SETTINGS)
                django_setup(env)
                from django.conf import settings
                from django.db import connection

                from notifications.models import Delivery

                prepare_sandbox(sandbox)
                seed = sandbox.seed
                graph = activate_graph(seed)
                smtp = activate_smtp_app(
                    sandbox,
                    sender=SMTP_MAILBOX,
                    **({"email_box": "on"} if args.email_box else {}),
                )
                project = project_with_findings("fault-drill", [graph, smtp])
                print(
                    f"Fault drill: {count:,} deliveries, {database_label(url)}, "
                    f"Python {platform.python_version()}, {os.cpu_count()} CPUs",
                    flush=True,
                )
                row(
                    "tools",
                    f"Graph as {seed['sender']} (later {THIRD_MAILBOX}); "
                    f"SMTP XOAUTH2 as {SMTP_MAILBOX}",
                )
                row(
                    "app permissions",
                    "the seed's (Mail.Send, SMTP.SendAsApp, IMAP.AccessAsApp)"
                    + (f" + {', '.join(args.grant)}" if args.grant else ""),
                )
                row(
                    "Sent Items lookups",
                    "Graph "
                    + ("yes" if "Mail.ReadBasic.All" in args.grant else "no")
                    + ", SMTP "
                    + ("yes (Email box over IMAP)" if args.email_box else "no"),
                )
                row(
                    "settings",
                    ", ".join(f"{k}={v}" for k, v in SETTINGS.items()),
                )
                emit_new_vulnerabilities(
                    project, count // 2, per_transaction=EVENTS_PER_TRANSACTION
                )
                expected = expected_message_ids([project])
                for _what, fault in FAULTS:
                    sandbox.add_fault(**fault)
                row(
                    "faults (per request)",
                    "; ".join(
                        f"{what} {fault['probability']:.0%}"
                        for what, fault in FAULTS
                        if what and what != "latency"
                    )
                    + "; otherwise 20 ms Graph latency",
                )
                sandbox.clear_messages()
                before = sandbox.counters()

                heading("drill")
                started = []
                began = time.monotonic()
                try:
                    for i in range(args.workers):
                        worker = Worker(
                            env, work, str(i + 1), interval=args.worker_interval
                        )
                        started.append(worker.start())
                    row("workers", f"{args.workers} x {started[0].command}")

                    def sent():
                        return delivery_states([project]).get("sent", 0)

                    victim = wait_for(
                        lambda: sent() >= count // 4 and running_worker(started),
                        timeout=timeout,
                        interval=0.05,
                    )
                    mid_task = bool(victim)
                    victim = victim or started[0]
                    at = sent()
                    victim.kill()
                    sending = delivery_states([project]).get("sending", 0)
                    row(
                        "killed",
                        f"worker {victim.name} with SIGKILL at {at}/{count} sent, "
                        + (
                            "while it ran a task"
                            if mid_task
                            else "NOT mid-task (no worker was running one in time)"
                        )
                        + f"; {sending} deliveries left 'sending'",
                    )
                    victim.start()
                    row("restarted", f"worker {victim.name}, at {sent()}/{count} sent")

                    def sent_by_graph():
                        return Delivery.objects.filter(
                            project=project, integration=graph, status="sent"
                        ).count()

                    wait_for(lambda: sent_by_graph() >= count // 4, timeout=timeout)
                    at = sent_by_graph()
                    activate_graph(seed, sender=THIRD_MAILBOX)
                    row(
                        "sender changed",
                        f"Graph tool's From -> {THIRD_MAILBOX} at {at}/{count // 2} "
                        "sent through it (an admin's Save)",
                    )
                    left = max(1.0, timeout - (time.monotonic() - began))
                    states = wait_until_settled([project], count, timeout=left)
                    seconds = time.monotonic() - began
                finally:
                    for worker in started:
                        worker.stop()
                errors = [e for w in started for e in w.errors()]
                delta = counter_delta(before, sandbox.counters())
                sandbox.clear_faults()
                messages = sandbox.messages()
                figures = tally(messages, expected)

                open_ = sum(states.get(s, 0) for s in ("pending", "sending"))
                row(
                    "finished",
                    f"in {seconds:.1f} s"
                    + (f" (gave up: {open_} deliveries still open)" if open_ else ""),
                )
                refused = delta["graph_requests"] - delta["graph_send_mail"]
                row(
                    "Graph requests not answered 202",
                    f"{refused} of {delta['graph_requests']} (sandbox counters; 429, "
                    "503, resets and 504s)",
                )
                heading("result")
                row("expected", figures["expected"])
                row("delivered", figures["delivered"])
                row("lost", figures["lost"])
                by_transport = Counter()
                seen = Counter(m["message_id"] for m in messages)
                for m in messages:
                    if seen[m["message_id"]] > 1:
                        by_transport[m.get("transport", "?")] += 1
                        seen[m["message_id"]] -= 1
                row(
                    "doubled",
                    f"{figures['doubled']} (Graph {by_transport['graph']}, "
                    f"SMTP {by_transport['smtp']}; extra copies of one Message-ID)",
                )
                accepted = delta.get("graph_accepted")
                if accepted is None:  # a sandbox without that counter
                    accepted = sum(1 for m in messages if m.get("transport") == "graph")
                after_504 = accepted - delta["graph_send_mail"]
                explained = min(after_504, by_transport["graph"])
                row(
                    "doubled after a 504-after-accept",
                    f"{explained} (the sandbox stored {after_504} Graph messages it "
                    "then answered 504 for)",
                )
                flush = getattr(settings, "NOTIFICATIONS_OUTCOME_FLUSH", None)
                if flush and connection.vendor == "postgresql":
                    # One flush queued, one being written by the run's writer thread.
                    flush *= 2
                row(
                    "doubled otherwise",
                    f"{figures['doubled'] - explained} (sends of the killed worker "
                    "it had not recorded"
                    + (
                        f"; the product allows up to {flush} plus those in flight"
                        if flush
                        else ""
                    )
                    + ")",
                )
                row(
                    "resent after a lost answer, per the product",
                    product_504_record([project]),
                )
                doubled_ids = figures["doubled_messages"]
                marked = Delivery.objects.filter(
                    pk__in=[expected[mid].pk for mid in doubled_ids],
                    resent_unconfirmed=True,
                ).count()
                row(
                    "doubled and marked on the delivery log",
                    f"{marked} of {len(doubled_ids)} doubled messages (the rest were "
                    "resent although the product could look them up)",
                )
                for label, value in product_log([project]):
                    row(label, value)
                senders = Counter(
                    f"{m.get('from')} ({m.get('transport')})" for m in messages
                )
                row(
                    "sender mailboxes (sandbox)",
                    ", ".join(f"{k} {n}" for k, n in sorted(senders.items())),
                )
                failed = failed_tasks()
                if failed:
                    row(
                        "FAILED tasks",
                        f"{len(failed)}: " + ", ".join(sorted(set(failed)))[:300],
                    )
                if errors:
                    row("worker errors", f"{len(errors)}; first: {errors[0][:200]}")
                if figures["lost"]:
                    missing = sorted(
                        set(expected) - {m["message_id"] for m in messages}
                    )
                    row(
                        "LOST",
                        ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""),
                    )
    return 1 if figures["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
