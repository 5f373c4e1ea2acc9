"""Delivering N notifications through real db_worker processes, against bare clients.

    .venv/bin/python bench/delivery.py [--messages 1000] [--database-url URL]
        [--tools graph,smtp] [--worker-interval 0.1] [--rounds 3] [--keep]

Starts the Microsoft 365 sandbox in a process of its own (`python -m sandbox serve`,
free ports, its CA in a temporary directory) and waits until it answers. Then, in a
throwaway SQLite database (and, with --database-url, in a database of its own that it
creates on that PostgreSQL server and drops at the end), it activates Microsoft Azure
Mail and the SMTP tool (OAuth 2.0 application, XOAUTH2) from the sandbox's seed,
creates a project linked to the tool and emits N new-vulnerabilities events of 10
new findings each (every event its own, written in its transaction, as an import
writes them), in two modes:

- together: all N events in one transaction (one delivery task);
- separate: each event in its own transaction, as imports commit (N tasks).

For each mode the events (and their tasks) are written first; then a real `manage.py
db_worker` process is started and sends them; the time runs from the first claim of a
delivery to the last delivery's `sent_at`, both read from the database, so it is the
worker's speed (the cost of writing events is printed apart). It prints messages
per second, the CPU per message of the worker and of the sandbox, token requests,
the TCP connections the sandbox accepted, and delivered / lost / doubled by
Message-ID.

Then the same messages again without the product, to the same sandbox:

- Graph: one keep-alive `requests.Session`, one token, posting the product's own
  sendMail JSON (`integrations.providers.graph.message_payload` of the same
  rendered emails); target: product >= 0.8x of it in both modes;
- SMTP: Django's `django.core.mail.backends.smtp.EmailBackend`, Basic auth, one
  connection, the same emails; target: product >= 0.95x of it.

The machine's speed drifts while it runs: each of --rounds rounds measures both modes
and then the baseline, each round's ratio compares that round's runs, and the ratios
printed are the medians of the rounds' (each round's figures printed too).

Per-mailbox pacing is off (NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE=0), and so is the
sandbox's throttling: this measures what the product costs, not Microsoft's limits
(bench/throttling.py measures those). Exits 1 if a message was lost.
"""

import argparse
import os
import platform
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import (  # noqa: E402
    ROOT,
    SandboxClient,
    SandboxProcess,
    activate_graph,
    activate_smtp_app,
    counter_delta,
    database_label,
    django_setup,
    emit_new_vulnerabilities,
    expected_message_ids,
    failed_tasks,
    first_enqueue_and_last_sent,
    forget_tokens,
    heading,
    postgres_database,
    product_env,
    project_with_findings,
    row,
    sqlite_database,
    tally,
    wait_until_queue_drained,
    wait_until_settled,
    workdir,
    workers,
)

TOOLS = {
    "graph": "Graph (Microsoft Azure Mail, client credentials)",
    "smtp": "SMTP (XOAUTH2, application)",
}
MODES = {
    "together": "all events in one transaction",
    "separate": "each event in its own transaction",
}
TARGETS = {"graph": 0.8, "smtp": 0.95}
BASELINES = {
    "graph": "bare requests.Session, one token",
    "smtp": "Django EmailBackend, Basic auth",
}


# -- one database, in a child process ------------------------------------------------


def child(args) -> int:
    env = dict(os.environ)
    django_setup(env)
    sandbox = SandboxClient.from_env(env)
    label = database_label(env["DATABASE_URL"])
    tools = {
        "graph": activate_graph(sandbox.seed),
        "smtp": activate_smtp_app(sandbox),
    }
    log_dir = Path(env["VAR_DIR"])
    lost = 0
    for key in args.tools:
        baseline = bare_graph if key == "graph" else django_smtp
        # The machine is shared and its speed drifts: each round measures both
        # modes and then the baseline, and each round's ratio compares runs made
        # minutes apart at most; the ratio printed is the median of the rounds'.
        rates: dict[str, list[float]] = {mode: [] for mode in MODES}
        ratios: dict[str, list[float]] = {mode: [] for mode in MODES}
        baselines: list[float] = []
        for number in range(1, args.rounds + 1):
            of = f" - round {number} of {args.rounds}"
            runs = {}
            for mode in MODES:
                heading(f"{label} - {TOOLS[key]} - {MODES[mode]}{of}")
                runs[mode] = product_run(
                    sandbox, env, log_dir, tools[key], key, mode, args, number
                )
                lost += runs[mode]["lost"]
            heading(f"{label} - {TOOLS[key]} - baseline: {BASELINES[key]}{of}")
            emails = rendered_emails(runs["together"]["project"])
            rate = baseline(sandbox, emails, sandbox_pid=args.sandbox_pid)
            baselines.append(rate)
            for mode in MODES:
                rates[mode].append(runs[mode]["rate"])
                ratios[mode].append(runs[mode]["rate"] / rate if rate else 0.0)
        heading(f"{label} - {TOOLS[key]} - product / baseline")
        for mode in MODES:
            row(f"product, {mode}, median", _median_of(rates[mode], "messages/s"))
        row("baseline, median", _median_of(baselines, "messages/s"))
        for mode in MODES:
            ratio = statistics.median(ratios[mode])
            verdict = "meets" if ratio >= TARGETS[key] else "MISSES"
            row(
                f"ratio, {mode}",
                f"{ratio:.2f}x (target >= {TARGETS[key]}x: {verdict})",
            )
            if len(ratios[mode]) > 1:
                row(
                    f"ratio, {mode}, by round",
                    ", ".join(f"{r:.2f}x" for r in ratios[mode]),
                )
    return 1 if lost else 0


def _median_of(values: list[float], unit: str) -> str:
    text = f"{statistics.median(values):.1f} {unit}"
    if len(values) > 1:
        text += " (rounds: " + ", ".join(f"{v:.1f}" for v in values) + ")"
    return text


def product_run(sandbox, env, log_dir, tool, key, mode, args, number=1) -> dict:
    """Emit N events in `mode` while a db_worker runs; wait until all are settled."""
    from django.utils import timezone

    count = args.messages
    project = project_with_findings(f"bench-{key}-{mode}-{number}", [tool])
    forget_tokens(tool)  # each mode starts cold: its worker's first send needs a token
    sandbox.clear_messages()
    before, calls = sandbox.counters(), sandbox.calls
    failed_before = len(failed_tasks())
    since = timezone.now()
    # The events (and their tasks) are written first, with no worker running, so the
    # figure is the worker's own speed, not how fast this script can commit events.
    emit_seconds = emit_new_vulnerabilities(
        project, count, per_transaction=count if mode == "together" else 1
    )
    with workers(env, log_dir, 1, interval=args.worker_interval) as started:
        ready_cpu = process_cpu_seconds(started[0].process.pid)
        sandbox_cpu = CpuMeter(args.sandbox_pid)
        states = wait_until_settled([project], count, timeout=args.timeout)
        settled_cpu = process_cpu_seconds(started[0].process.pid)
        sandbox_seconds = sandbox_cpu.seconds()
        # The mode's other tasks (one per event when each event commits on its
        # own), run by this worker, so that the next mode's starts on an empty
        # queue and its CPU figure is its own.
        wait_until_queue_drained(timeout=args.timeout)
        errors = started[0].errors()
    worker_cpu = (
        settled_cpu - ready_cpu
        if settled_cpu is not None and ready_cpu is not None
        else None
    )
    after = sandbox.counters()
    delta = counter_delta(before, after)
    # The counters() call just made opened one connection too, as every control call.
    https = delta["tcp_connections"]["https"] - (sandbox.calls - calls - 1)
    _enqueued, last = first_enqueue_and_last_sent([project], since)
    first, first_sent = first_claim_and_sent([project])
    sent = states.get("sent", 0)
    seconds = (last - first).total_seconds() if first and last else float("nan")
    rate = sent / seconds if sent and seconds > 0 else 0.0
    figures = tally(sandbox.messages(), expected_message_ids([project]))

    row("worker", f"1 x {started[0].command}")
    how = "one transaction" if mode == "together" else f"{count} transactions"
    row("events written", f"{count} in {emit_seconds:.2f} s ({how}, before the worker)")
    row("first claim -> last sent", f"{seconds:.2f} s")
    if first and first_sent:
        row(
            "  first claim -> first sent",
            f"{(first_sent - first).total_seconds() * 1000:.0f} ms (the claim, the "
            "token, the first emails and connection; included above)",
        )
    row("product", f"{rate:.1f} messages/s ({sent} sent)")
    if worker_cpu is not None:
        row(
            "worker CPU",
            f"{worker_cpu * 1000 / max(sent, 1):.2f} ms a message ({worker_cpu:.2f} s "
            "of the db_worker process, all its threads, from ready to the last sent; "
            "they share one core)",
        )
    if sandbox_seconds is not None:
        row("sandbox CPU", sandbox_per_message(sandbox_seconds, sent))
    other = {s: n for s, n in states.items() if s != "sent"}
    if other:
        row("  not sent", ", ".join(f"{n} {s}" for s, n in sorted(other.items())))
    tokens = sum(delta["token_requests"].values())
    row(
        "token requests",
        f"{tokens} for {count:,} messages (target: 1 per 1,000; the tool's stored "
        "token cache was emptied first)",
    )
    row(
        "TCP connections opened",
        f"https {https}, smtp {delta['tcp_connections']['smtp']} (sandbox counters, "
        "this run's own control calls taken off)",
    )
    if key == "smtp":
        row("SMTP sessions (AUTH)", delta["smtp_sessions"])
    row(
        "delivered / lost / doubled",
        f"{figures['delivered']} / {figures['lost']} / {figures['doubled']} "
        "(by Message-ID in the sandbox)",
    )
    report_failures(failed_tasks()[failed_before:], errors)
    return {"project": project, "rate": rate, "lost": figures["lost"]}


def process_cpu_seconds(pid: int) -> float | None:
    """User and system CPU seconds of process `pid` so far, all threads (Linux's
    /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime are fields 14 and 15 of stat(5); [0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds process `pid` spends from now on (None: no pid, or no /proc)."""

    def __init__(self, pid: int | None):
        self.pid = pid
        self.start = process_cpu_seconds(pid) if pid else None

    def seconds(self) -> float | None:
        end = process_cpu_seconds(self.pid) if self.pid else None
        return end - self.start if end is not None and self.start is not None else None


def sandbox_per_message(seconds: float, messages: int) -> str:
    return (
        f"{seconds * 1000 / max(messages, 1):.2f} ms a message ({seconds:.2f} s of the "
        "sandbox process, which serves the product and the baseline alike)"
    )


def first_claim_and_sent(projects):
    """When the worker first claimed one of the projects' deliveries, and when the
    first of them was recorded sent."""
    from django.db.models import Min

    from notifications.models import Delivery

    found = Delivery.objects.filter(project__in=projects).aggregate(
        claimed=Min("claimed_at"), sent=Min("sent_at")
    )
    return found["claimed"], found["sent"]


def report_failures(tasks: list[str], errors: list[str]) -> None:
    if tasks:
        row("FAILED tasks", f"{len(tasks)}: " + ", ".join(sorted(set(tasks)))[:300])
    if errors:
        row("worker errors", f"{len(errors)}; first: {errors[0][:200]}")


def rendered_emails(project) -> list:
    """The product's rendered emails for the project's deliveries, in order."""
    from notifications.emails import email_for
    from notifications.models import Delivery

    deliveries = Delivery.objects.filter(project=project).select_related(
        "project", "event", "event__scan", "link", "integration"
    )
    return [email_for(d) for d in deliveries.order_by("pk")]


def bare_graph(sandbox, emails, *, sandbox_pid=None) -> float:
    """sendMail in a loop: one keep-alive session, one token, the product's JSON."""
    from integrations.providers.graph import message_payload

    seed = sandbox.seed
    payloads = [message_payload(email) for email in emails]
    url = f"{sandbox.base_url}/v1.0/users/{seed['sender']}/sendMail"
    sandbox.clear_messages()
    before, calls = sandbox.counters(), sandbox.calls
    sandbox_cpu = CpuMeter(sandbox_pid)
    began = time.perf_counter()
    with sandbox.session() as session:
        token = session.post(
            f"{seed['authority']}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": seed["client_id"],
                "client_secret": seed["client_secret"],
                "scope": "https://graph.microsoft.com/.default",
            },
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        refused = 0
        for payload in payloads:
            response = session.post(url, json=payload, headers=headers)
            refused += response.status_code != 202
    seconds = time.perf_counter() - began
    sandbox_seconds = sandbox_cpu.seconds()
    delta = counter_delta(before, sandbox.counters())
    https = delta["tcp_connections"]["https"] - (sandbox.calls - calls - 1)
    rate = (len(payloads) - refused) / seconds
    row(
        "bare loop",
        f"{rate:.1f} messages/s ({len(payloads) - refused} sendMail in "
        f"{seconds:.2f} s, token request included)",
    )
    row(
        "token requests / TCP connections",
        f"{sum(delta['token_requests'].values())} / https {https}",
    )
    if sandbox_seconds is not None:
        row("sandbox CPU", sandbox_per_message(sandbox_seconds, len(payloads)))
    if refused:
        row("  refused", refused)
    return rate


def django_smtp(sandbox, emails, *, sandbox_pid=None) -> float:
    """Django's SMTP backend, Basic auth, one connection, the same emails."""
    from django.core.mail import EmailMultiAlternatives
    from django.core.mail.backends.smtp import EmailBackend

    seed = sandbox.seed
    backend = EmailBackend(
        host=sandbox.smtp_host,
        port=sandbox.smtp_port,
        username=seed["user"],
        password=seed["password"],
        use_tls=True,
        timeout=30,
    )
    # Trust the sandbox's CA, as the product does through M365_CA_BUNDLE.
    backend.ssl_context = ssl.create_default_context(cafile=str(sandbox.ca_path))
    messages = []
    for email in emails:
        message = EmailMultiAlternatives(
            subject=email.subject,
            body=email.text,
            from_email=seed["user"],
            to=list(email.to),
            headers={"Message-ID": email.message_id, **email.headers},
            connection=backend,
        )
        if email.html:
            message.attach_alternative(email.html, "text/html")
        messages.append(message)
    sandbox.clear_messages()
    before = sandbox.counters()
    sandbox_cpu = CpuMeter(sandbox_pid)
    began = time.perf_counter()
    sent = backend.send_messages(messages)  # opens one connection, closes it
    seconds = time.perf_counter() - began
    sandbox_seconds = sandbox_cpu.seconds()
    delta = counter_delta(before, sandbox.counters())
    rate = sent / seconds
    row(
        "Django EmailBackend",
        f"{rate:.1f} messages/s ({sent} messages in {seconds:.2f} s, connect, "
        "STARTTLS and AUTH included)",
    )
    row(
        "SMTP sessions / TCP connections",
        f"{delta['smtp_sessions']} / smtp {delta['tcp_connections']['smtp']}",
    )
    if sandbox_seconds is not None:
        row("sandbox CPU", sandbox_per_message(sandbox_seconds, sent))
    return rate


# -- the parent: the sandbox, the databases, one child per database ---------------------


NOT_MEASURED = """\
Not measured here:
- real Microsoft 365: the sandbox answers on loopback in about a millisecond, so the
  product's own cost (claiming, rendering, recording each delivery) weighs far more
  in these ratios than it would against Graph's or Exchange Online's latency;
- Microsoft's limits: pacing and the sandbox's throttling are off (bench/throttling.py);
- faults and worker crashes (bench/fault_drill.py);
- more than one worker, and event emission itself (the events are written before the
  worker starts; their writing time is printed apart, outside the ratio);
- TCP connections are the sandbox's accept counts per port: the https port serves
  the token endpoint and Graph alike."""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--messages",
        "--count",
        dest="messages",
        type=int,
        default=1000,
        metavar="N",
        help="notifications to deliver (default: %(default)s)",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="also measure on this PostgreSQL server, in a database of its own",
    )
    parser.add_argument(
        "--tools",
        default="graph,smtp",
        help="comma-separated: graph, smtp (default: %(default)s)",
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
        help="give up waiting for a mode's deliveries after S seconds "
        "(default: 120 + N / 2)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        metavar="N",
        help="rounds of both modes and the baseline; the ratios printed are the "
        "rounds' medians (default: %(default)s)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (logs)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sandbox-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if args.messages < 1:
        parser.error("--messages must be at least 1")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not args.tools or set(args.tools) - set(TOOLS):
        parser.error("--tools takes graph, smtp or both")
    if args.timeout is None:
        args.timeout = 120 + args.messages / 2
    if args.child:
        return child(args)

    print(
        f"Delivery benchmark: {args.messages:,} new-vulnerabilities events of 10 "
        f"findings, Python {platform.python_version()}, {os.cpu_count()} CPUs",
        flush=True,
    )
    status = 0
    with workdir("bench-delivery-", keep=args.keep) as work:
        server = SandboxProcess(work / "sandbox")
        with server as sandbox:
            row("sandbox", f"python -m sandbox serve, {sandbox.base_url}, own process")
            databases = [("sqlite", lambda: sqlite_database(work / "sqlite"))]
            if args.database_url:
                databases.append(
                    (
                        "postgres",
                        lambda: postgres_database(args.database_url, "bench_delivery"),
                    )
                )
            for name, database in databases:
                with database() as url:
                    var_dir = work / f"var-{name}"
                    var_dir.mkdir()
                    env = product_env(
                        sandbox,
                        database_url=url,
                        var_dir=var_dir,
                        NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE=0,
                    )
                    argv = [
                        sys.executable,
                        __file__,
                        "--child",
                        f"--messages={args.messages}",
                        f"--tools={','.join(args.tools)}",
                        f"--worker-interval={args.worker_interval}",
                        f"--timeout={args.timeout}",
                        f"--rounds={args.rounds}",
                        f"--sandbox-pid={server.process.pid}",
                    ]
                    result = subprocess.run(argv, cwd=ROOT, env=env)
                    if result.returncode:
                        print(
                            f"FAILED on {database_label(url)}: exit status "
                            f"{result.returncode}",
                            flush=True,
                        )
                        status = 1
    print("\n" + NOT_MEASURED, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
