"""Graph throttling: delivering at a mailbox's budget, told it and not told it.

    .venv/bin/python bench/throttling.py [--messages 300] [--budget 20] [--window 2]
        [--concurrency 4] [--workers 1] [--database-url URL] [--keep]

Starts the sandbox in a process of its own and has it enforce Microsoft Graph's
per-mailbox limits, scaled down so a run takes about a minute: --budget requests per
--window seconds for one app and mailbox (Exchange Online: 10,000 per 10 minutes),
answered beyond it with 429 ApplicationThrottled and a Retry-After, and at most
--concurrency requests at a time (429 MailboxConcurrency). In a throwaway database
(SQLite, or one of its own on the --database-url PostgreSQL server) it activates
Microsoft Azure Mail from the seed and emits --messages new-vulnerabilities events in
one transaction while real db_worker processes run, twice:

(a) told: the product knows the budget: the Graph tool's own "Messages per minute"
    (or, in a product without it, NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE), its minute
    scaled to the window by NOTIFICATIONS_PACING_WINDOW_SECONDS; target: >= 95% of
    the allowed rate and no 429;
(b) not told: the product's defaults (Microsoft's real limits, a real minute);
    target: >= 85% of the allowed rate and every message delivered.

For each it prints delivered/allowed, the 429s the sandbox answered, the most
messages the sandbox received in any window of the budget's length (sliding: the
product promises no more than the budget there, whatever the sandbox's windows),
and messages lost and doubled (by Message-ID among the sandbox's stored messages).
"allowed" is what the sandbox could have accepted between the first enqueue and
the last message: the budget in each of its windows (each opens with the first
request after the last closed) that fit in that time, floor(seconds / window) + 1;
the startup before the first request is the product's and counts against it. Targets missed
are printed as such; the exit status is 0 unless the benchmark itself failed.
"""

import argparse
import math
import os
import platform
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import (  # noqa: E402
    SandboxProcess,
    activate_graph,
    counter_delta,
    database_label,
    django_setup,
    emit_new_vulnerabilities,
    expected_message_ids,
    failed_tasks,
    first_enqueue_and_last_sent,
    heading,
    postgres_database,
    product_env,
    project_with_findings,
    row,
    sqlite_database,
    tally,
    wait_until_settled,
    workdir,
    workers,
)

TARGETS = {"told": 0.95, "not told": 0.85}


def told(args) -> tuple[dict, dict, str]:
    """How the product is told the budget: (environment, the tool's own settings,
    a sentence saying so).

    The tool's own "Messages per minute" where the Graph drawer has one, its minute
    scaled to the sandbox's window (NOTIFICATIONS_PACING_WINDOW_SECONDS); else the
    settings that pace every tool.
    """
    from integrations.forms.microsoft_azure_mail import MicrosoftAzureMailForm

    window = {"NOTIFICATIONS_PACING_WINDOW_SECONDS": args.window}
    if "messages_per_minute" in MicrosoftAzureMailForm.base_fields:
        return (
            window,
            {"messages_per_minute": args.budget},
            f"the tool's Messages per minute = {args.budget}, with "
            f"NOTIFICATIONS_PACING_WINDOW_SECONDS={args.window:g} (its minute)",
        )
    return (
        {**window, "NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE": args.budget},
        {},
        f"NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE={args.budget}, "
        f"NOTIFICATIONS_PACING_WINDOW_SECONDS={args.window:g}",
    )


def throttled_count(delta: dict) -> tuple[int, str]:
    """The 429s the sandbox answered during the run, and how that was counted."""
    if "graph_throttled" in delta:
        return delta["graph_throttled"], "sandbox counter graph_throttled"
    # No faults are injected and every request carries a valid token for a mailbox
    # of the tenant, so the only Graph requests not accepted are the 429s.
    return (
        delta["graph_requests"] - delta["graph_send_mail"],
        "sandbox counters: graph_requests - graph_send_mail",
    )


def most_in_any_window(messages: list[dict], window: float) -> int:
    """The most messages the sandbox received in any `window` seconds (sliding; one
    per Message-ID, at its first copy's received_at). The sandbox's own windows
    are fixed (each opens with the first request after the last one closed), so
    this may exceed the budget without a 429; the product's pacing promises that it
    does not (no more than the budget in any window, wherever it starts)."""
    first = {}
    for message in messages:
        at = datetime.fromisoformat(message["received_at"].replace("Z", "+00:00"))
        first.setdefault(message["message_id"], at.timestamp())
    times, start, most = sorted(first.values()), 0, 0
    for end, stamp in enumerate(times):
        while times[start] <= stamp - window:
            start += 1
        most = max(most, end - start + 1)
    return most


def run_mode(name, sandbox, env, work, args, tool) -> dict:
    from django.utils import timezone

    from notifications.models import Delivery

    count = args.messages
    sandbox.throttling(
        enabled=True,
        graph_requests_per_window=args.budget,
        window_seconds=args.window,
        graph_concurrency_per_mailbox=args.concurrency,
    )
    sandbox.clear_messages()
    project = project_with_findings(f"throttling-{name.replace(' ', '-')}", [tool])
    before = sandbox.counters()
    failed_before = len(failed_tasks())
    since = timezone.now()
    ideal = math.ceil(count / args.budget) * args.window
    with workers(env, work, args.workers, interval=args.worker_interval) as started:
        emit_new_vulnerabilities(project, count, per_transaction=count)
        states = wait_until_settled([project], count, timeout=60 + 4 * ideal)
        errors = [e for w in started for e in w.errors()]
    delta = counter_delta(before, sandbox.counters())
    sandbox.throttling(enabled=False)
    first, last = first_enqueue_and_last_sent([project], since)
    sent = states.get("sent", 0)
    seconds = (last - first).total_seconds() if first and last else float("nan")
    messages = sandbox.messages()
    figures = tally(messages, expected_message_ids([project]))
    throttled, how = throttled_count(delta)

    allowed_rate = args.budget / args.window
    rate = sent / seconds if sent and seconds > 0 else 0.0
    # A window opens with the first request after the last one ended; in `seconds`
    # the sandbox accepts at most `budget` in each of floor(seconds / window) + 1.
    windows = math.floor(seconds / args.window) + 1 if sent else 0
    allowed = args.budget * windows
    share = sent / allowed if allowed else 0.0
    target = TARGETS[name]
    row("workers", f"{args.workers} x {started[0].command}")
    row("first enqueue -> last sent", f"{seconds:.1f} s for {count} messages")
    row(
        "delivered rate",
        f"{rate:.2f} messages/s (allowed: {allowed_rate:.2f} = {args.budget} per "
        f"{args.window:g} s)",
    )
    verdict = "meets" if share >= target else "MISSES"
    row(
        "delivered/allowed",
        f"{share:.0%} ({sent} of the {allowed} the sandbox accepts in {windows} "
        f"windows; target >= {target:.0%}: {verdict})",
    )
    row("429 answers", f"{throttled} ({how})")
    row(
        f"most in any {args.window:g} s",
        f"{most_in_any_window(messages, args.window)} received by the sandbox "
        f"(sliding, by Message-ID; its budget: {args.budget})",
    )
    row("lost", f"{figures['lost']} (expected Message-IDs not in the sandbox)")
    row("doubled", f"{figures['doubled']} (extra copies of one Message-ID)")
    attempts = list(
        Delivery.objects.filter(project=project).values_list("attempts", flat=True)
    )
    fields = {f.name for f in Delivery._meta.get_fields()}
    throttles = (
        sum(
            Delivery.objects.filter(project=project).values_list(
                "throttle_count", flat=True
            )
        )
        if "throttle_count" in fields
        else None
    )
    other = {s: n for s, n in states.items() if s != "sent"}
    row(
        "product's deliveries",
        f"{sent} sent"
        + "".join(f", {n} {s}" for s, n in sorted(other.items()))
        + f"; attempts per delivery: max {max(attempts, default=0)}, "
        f"total {sum(attempts)}"
        + (
            f"; throttled answers recorded: {throttles}"
            if throttles is not None
            else ""
        ),
    )
    failed_codes = sorted(
        set(
            Delivery.objects.filter(project=project, status="failed").values_list(
                "error_code", flat=True
            )
        )
    )
    if failed_codes:
        row("  failed with", ", ".join(failed_codes))
    failed = failed_tasks()[failed_before:]
    if failed:
        row("FAILED tasks", f"{len(failed)}: " + ", ".join(sorted(set(failed)))[:300])
    if errors:
        row("worker errors", f"{len(errors)}; first: {errors[0][:200]}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--messages",
        type=int,
        default=300,
        metavar="N",
        help="messages per mode (default: %(default)s)",
    )
    parser.add_argument(
        "--budget",
        type=int,
        default=20,
        metavar="N",
        help="Graph requests per window per app and mailbox (default: %(default)s)",
    )
    parser.add_argument(
        "--window",
        type=float,
        default=2.0,
        metavar="S",
        help="the budget's window in seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=4,
        metavar="N",
        help="concurrent Graph requests per mailbox (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="db_worker processes (default: %(default)s)",
    )
    parser.add_argument(
        "--worker-interval",
        type=float,
        default=0.1,
        metavar="S",
        help="db_worker --interval (default: %(default)s)",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="a PostgreSQL server to run on, in a database of its own "
        "(default: a throwaway SQLite file)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (logs)"
    )
    args = parser.parse_args()
    if min(args.messages, args.budget, args.concurrency, args.workers) < 1:
        parser.error("--messages, --budget, --concurrency and --workers must be >= 1")
    if args.window <= 0:
        parser.error("--window must be positive")

    with workdir("bench-throttling-", keep=args.keep) as work:
        with SandboxProcess(work / "sandbox") as sandbox:
            if args.database_url:
                database = postgres_database(args.database_url, "bench_throttling")
            else:
                database = sqlite_database(work / "sqlite")
            with database as url:
                base = product_env(sandbox, database_url=url, var_dir=work)
                django_setup(base)
                print(
                    f"Graph throttling benchmark: {args.messages} messages per mode, "
                    f"{database_label(url)}, Python {platform.python_version()}, "
                    f"{os.cpu_count()} CPUs",
                    flush=True,
                )
                row(
                    "sandbox limits",
                    f"{args.budget} requests per {args.window:g} s per app and "
                    f"mailbox, {args.concurrency} at a time (python -m sandbox, "
                    "own process)",
                )
                told_env, told_tool, how = told(args)
                heading("(a) told the budget")
                row("told by", how)
                tool = activate_graph(sandbox.seed, **told_tool)
                run_mode("told", sandbox, {**base, **told_env}, work, args, tool)
                heading("(b) told nothing")
                row("told by", "nothing: the product's defaults")
                # As saved from the drawer with "Messages per minute" left blank.
                blank = {name: None for name in told_tool}
                tool = activate_graph(sandbox.seed, **blank)
                run_mode("not told", sandbox, base, work, args, tool)
    print(
        "\nNot measured: Microsoft's real limits and latency (scaled down here), SMTP "
        "throttling (4.3.2; see bench/fault_drill.py), several mailboxes.",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
