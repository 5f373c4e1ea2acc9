"""What the delivery benchmarks share: a sandbox in its own process, throwaway
databases, the product's environment, real `db_worker` processes, and the events.

Used by bench/delivery.py, bench/throttling.py and bench/fault_drill.py. Nothing
here writes into a database it did not create: the product's environment is built
from scratch (DATABASE_URL forced to the throwaway database, `.env` not read, and the
caller's NOTIFICATIONS_*, M365_*... variables dropped), and Django is set up only in
processes that were given that environment.
"""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"
SITE_URL = "https://appsec.example.test"

#: Variables of the caller's environment that would change what the product does;
#: the benchmarks set the ones they need themselves.
_PRODUCT_VARIABLES = re.compile(
    r"^(NOTIFICATIONS_|M365_|SMTP_|SARIF_|TASKS_|DATABASE_URL$|CACHE_URL$|SITE_URL$|"
    r"VAR_DIR$|DEBUG$|SECRET_KEY$|FIELD_ENCRYPTION_KEYS$|ALLOWED_HOSTS$|"
    r"DJANGO_SETTINGS_MODULE$|DJANGO_READ_DOT_ENV_FILE$|LOG_LEVEL$|SANDBOX_SEED$)"
)


def row(label: str, value) -> None:
    """One figure: a label padded to a column, then its value."""
    print(f"{label:<40} {value}", flush=True)


def heading(text: str) -> None:
    print(f"\n[{text}]", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, *, timeout: float, interval: float = 0.2):
    """Call `predicate` until it returns something true or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


# -- the sandbox, in a process of its own ------------------------------------------------


class SandboxClient:
    """The sandbox's control API over HTTPS, trusting only its CA.

    Every call opens a connection of its own (`Connection: close`), so the sandbox's
    `tcp_connections` counter moves by exactly one per call: `calls` says how many
    to take off a measured difference.
    """

    def __init__(self, *, base_url: str, ca_path, smtp_host: str, smtp_port: int):
        self.base_url = base_url.rstrip("/")
        self.ca_path = Path(ca_path)
        self.smtp_host = smtp_host
        self.smtp_port = int(smtp_port)
        self.calls = 0
        self._seed = None

    @classmethod
    def from_env(cls, env=None) -> "SandboxClient":
        """The sandbox the product's environment (`product_env`) points at."""
        env = os.environ if env is None else env
        return cls(
            base_url=env["M365_GRAPH_HOST"],
            ca_path=env["M365_CA_BUNDLE"],
            smtp_host=env["M365_SMTP_HOST"],
            smtp_port=int(env["M365_SMTP_PORT"]),
        )

    def session(self) -> requests.Session:
        """A session that trusts the sandbox's CA, whatever REQUESTS_CA_BUNDLE says."""
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.ca_path)
        return session

    def control(self, method: str, path: str, json=None):
        path = path if path.startswith("/_sandbox") else "/_sandbox/" + path.lstrip("/")
        self.calls += 1
        with self.session() as session:
            response = session.request(
                method,
                self.base_url + path,
                json=json,
                headers={"Connection": "close"},
                timeout=60,
            )
        if response.status_code >= 400:
            raise RuntimeError(
                f"sandbox {method} {path}: {response.status_code} {response.text[:500]}"
            )
        return response.json()

    @property
    def seed(self) -> dict:
        if self._seed is None:
            self._seed = self.control("GET", "seed")
        return self._seed

    def counters(self) -> dict:
        return self.control("GET", "counters")

    def messages(self) -> list[dict]:
        return self.control("GET", "messages")["messages"]

    def clear_messages(self) -> int:
        return self.control("DELETE", "messages")["deleted"]

    def add_fault(self, **fault) -> str:
        return self.control("POST", "faults", json=fault)["id"]

    def clear_faults(self) -> None:
        self.control("DELETE", "faults")

    def throttling(self, **settings) -> dict:
        return self.control("PUT", "throttling", json=settings)

    def reset(self) -> None:
        self.control("POST", "reset")
        self._seed = None


class SandboxProcess:
    """`python -m sandbox serve` on free ports, its CA in `state_dir`, with the
    seeded app granted `grant` application permissions besides its own.

    A context manager: on entry it starts the process and waits until the control
    API answers; on exit it stops it (SIGTERM, then SIGKILL).
    """

    def __init__(self, state_dir: Path, *, grant=()):
        self.state_dir = Path(state_dir)
        #: Application permissions added to the seeded app (`serve --grant`).
        self.grant = list(grant)
        self.log_path = self.state_dir / "sandbox.log"
        self.https_port, self.smtp_port = free_port(), free_port()
        self.process = None
        self.client = SandboxClient(
            base_url=f"https://127.0.0.1:{self.https_port}",
            ca_path=self.state_dir / "ca.pem",
            smtp_host="127.0.0.1",
            smtp_port=self.smtp_port,
        )

    def __enter__(self) -> SandboxClient:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sandbox",
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--https-port",
                    str(self.https_port),
                    "--smtp-port",
                    str(self.smtp_port),
                    # Not read here: any free port, so runs never collide.
                    "--imap-port",
                    "0",
                    "--state-dir",
                    str(self.state_dir),
                    *(f"--grant={permission}" for permission in self.grant),
                ],
                cwd=ROOT,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if not wait_for(self._answers, timeout=60, interval=0.2):
            self.__exit__()
            raise SystemExit(
                "the sandbox did not answer within 60 s:\n" + _tail(self.log_path)
            )
        return self.client

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise SystemExit("the sandbox exited:\n" + _tail(self.log_path))
        if not self.client.ca_path.exists():
            return False
        try:
            self.client.control("GET", "seed")
        except (requests.RequestException, RuntimeError):
            return False
        return True

    def __exit__(self, *exc_info):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        return False


# -- throwaway databases -----------------------------------------------------------------


@contextlib.contextmanager
def sqlite_database(directory: Path):
    """A database URL for a new SQLite file in `directory` (removed with it)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    yield f"sqlite:///{directory / 'bench.sqlite3'}"


@contextlib.contextmanager
def postgres_database(server_url: str, prefix: str):
    """A database `<prefix>_<random>` created on the server, dropped at the end.

    `server_url` names a database to connect to for CREATE and DROP (postgres).
    """
    import psycopg

    admin = server_url.replace("postgres://", "postgresql://", 1)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        base = server_url.rsplit("/", 1)[0].replace("postgresql://", "postgres://")
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_label(url: str) -> str:
    return "PostgreSQL" if url.startswith(("postgres", "pgsql")) else "SQLite"


# -- the product's environment -----------------------------------------------------------


def product_env(
    sandbox: SandboxClient, *, database_url: str, var_dir: Path, **settings
) -> dict:
    """The environment of every product process of one run: the throwaway database,
    the sandbox's hosts, production mode (DEBUG off), and `settings` (None drops one).

    FIELD_ENCRYPTION_KEYS is made once here, so every process of the run can read the
    secrets the first one stored.
    """
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not _PRODUCT_VARIABLES.match(k)}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DJANGO_READ_DOT_ENV_FILE="False",
        DEBUG="False",
        SECRET_KEY="bench-" + uuid.uuid4().hex * 2,
        FIELD_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        SITE_URL=SITE_URL,
        VAR_DIR=str(var_dir),
        DATABASE_URL=database_url,
        TASKS_BACKEND="django_tasks_db.DatabaseBackend",
        M365_AUTHORITY_HOST=sandbox.base_url,
        M365_GRAPH_HOST=sandbox.base_url,
        M365_SMTP_HOST=sandbox.smtp_host,
        M365_SMTP_PORT=str(sandbox.smtp_port),
        M365_CA_BUNDLE=str(sandbox.ca_path),
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    for name, value in settings.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def django_setup(env: dict) -> None:
    """Set Django up in this process with `env` (a `product_env`), then migrate."""
    for name in [k for k in os.environ if _PRODUCT_VARIABLES.match(k)]:
        del os.environ[name]
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


# -- db_worker processes -----------------------------------------------------------------


class Worker:
    """A real `manage.py db_worker` process, as deployed (one task at a time).

    With BENCH_PROFILE_DIR set, each worker runs under cProfile and writes
    `worker-<id>.prof` there when it stops (its main thread only; the sending
    threads are not profiled). The figures printed are then the profiler's.
    """

    def __init__(self, env: dict, log_dir: Path, name: str, *, interval: float = 0.1):
        self.env = {key: str(value) for key, value in env.items()}
        self.name = name
        self.interval = interval
        self.log_path = Path(log_dir) / f"worker-{name}.log"
        self.process = None
        self.worker_id = ""

    @property
    def command(self) -> str:
        return (
            f"manage.py db_worker --interval {self.interval:g} --no-startup-delay "
            "--no-reload"
        )

    def start(self) -> "Worker":
        """Start the process and wait until it polls for tasks."""
        self.worker_id = f"bench-{self.name}-{uuid.uuid4().hex[:8]}"
        started_at = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "a") as log:
            profile = os.environ.get("BENCH_PROFILE_DIR")
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    *(
                        [
                            "-m",
                            "cProfile",
                            "-o",
                            f"{profile}/worker-{self.worker_id}.prof",
                        ]
                        if profile
                        else []
                    ),
                    "manage.py",
                    "db_worker",
                    "--no-startup-delay",
                    "--no-reload",
                    "--interval",
                    f"{self.interval:g}",
                    "--worker-id",
                    self.worker_id,
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def polling():
            if self.process.poll() is not None:
                raise SystemExit(
                    f"db_worker {self.name} exited:\n" + _tail(self.log_path)
                )
            with open(self.log_path, errors="replace") as log:
                log.seek(started_at)
                return "Starting worker" in log.read()

        if not wait_for(polling, timeout=120, interval=0.05):
            self.kill()
            raise SystemExit(
                f"db_worker {self.name} did not start:\n" + _tail(self.log_path)
            )
        return self

    def kill(self) -> None:
        """SIGKILL: no goodbye, as a crash or the OOM killer."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, as a deployment stops it (it finishes the task it runs)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.kill()

    def errors(self) -> list[str]:
        """Tracebacks' last lines and ERROR records from the worker's log."""
        text = _tail(self.log_path, 200_000)
        return [
            line
            for line in text.splitlines()
            if " ERROR " in line or line.startswith(("Traceback", "django."))
        ]


@contextlib.contextmanager
def workers(env: dict, log_dir: Path, count: int = 1, *, interval: float = 0.1):
    """`count` db_worker processes, started (ready) on entry, stopped on exit."""
    started = []
    try:
        for i in range(count):
            started.append(Worker(env, log_dir, str(i + 1), interval=interval).start())
        yield started
    finally:
        for worker in started:
            worker.stop()


# -- the product's side (Django must be set up) -----------------------------------------


def activate_graph(seed: dict, **overrides):
    """Microsoft Azure Mail (Graph, client credentials) with the seed's values."""
    from tests.tools import activate_azure_mail

    return activate_azure_mail(seed, **overrides)


def activate_smtp_app(sandbox: SandboxClient, **overrides):
    """The SMTP tool with OAuth 2.0 application auth (XOAUTH2), as an admin saves it."""
    from integrations.forms.smtp import SmtpForm
    from integrations.services import integration_save
    from tests.integrations.smtp_support import drawer_data

    form = SmtpForm(drawer_data(sandbox, "oauth_app", **overrides))
    if not form.is_valid():
        raise SystemExit(f"SMTP settings invalid: {form.errors.as_json()}")
    return integration_save(
        provider_key="smtp", cleaned_data=form.cleaned_data, actor=None
    )


def forget_tokens(integration) -> None:
    """Empty the tool's stored token cache, so the next worker starts cold."""
    from integrations.models import Integration

    Integration.objects.filter(pk=integration.pk).update(token_cache="")


FINDINGS_PER_EVENT = 10


def _new_findings(project, first: int, count: int) -> list:
    """`count` high-severity findings of `project`, numbered from `first`."""
    from projects.models import Finding

    return Finding.objects.bulk_create(
        Finding(
            project=project,
            tool_name="BenchScanner",
            fingerprint=f"{i:064x}",
            rule_id=f"PY{i % 1000:03d}",
            rule_name=f"rule_{i}",
            message=f"Potential injection in generated code, finding {i}",
            severity="high",
            path=f"src/pkg/module_{i}.py",
            start_line=10 + i % 500,
        )
        for i in range(first, first + count)
    )


def project_with_findings(slug: str, tools):
    """A project linked to `tools` for new vulnerabilities (the links' default
    minimum severity, High, lets the benchmarks' findings through)."""
    from notifications.models import ToolLink
    from projects.models import Project

    project = Project.objects.create(name=f"Benchmark {slug}", slug=slug)
    for tool in tools:
        ToolLink.objects.create(
            project=project, integration=tool, notify_new_vulnerabilities=True
        )
    return project


def emit_new_vulnerabilities(project, count: int, *, per_transaction: int) -> float:
    """`count` new-vulnerabilities events, each with 10 findings of its own written
    in its transaction, as an import writes the new findings of a scan and emits
    their event; transactions of `per_transaction` events. Each committed
    transaction enqueues one delivery task. Returns the seconds it took."""
    from django.db import transaction

    from notifications.models import EventKind
    from notifications.services import event_emit
    from projects.models import Finding

    first = Finding.objects.filter(project=project).count()
    began = time.perf_counter()
    emitted = 0
    while emitted < count:
        with transaction.atomic():
            for _ in range(min(per_transaction, count - emitted)):
                findings = _new_findings(project, first, FINDINGS_PER_EVENT)
                first += FINDINGS_PER_EVENT
                event_emit(
                    project=project,
                    kind=EventKind.NEW_VULNERABILITIES,
                    payload={
                        "finding_ids": [f.pk for f in findings],
                        "counts": {"high": len(findings)},
                    },
                )
                emitted += 1
    return time.perf_counter() - began


def delivery_states(projects) -> Counter:
    """How many of the projects' deliveries are in each status."""
    from django.db.models import Count

    from notifications.models import Delivery

    rows = (
        Delivery.objects.filter(project__in=projects)
        .values_list("status")
        .annotate(n=Count("pk"))
    )
    return Counter(dict(rows))


OPEN_STATUSES = ("pending", "sending")


def wait_until_settled(
    projects, expected: int, *, timeout: float, stall: float = 90.0
) -> Counter:
    """Poll the database until the projects' `expected` deliveries are all settled
    (sent, failed or not sent), `timeout` passes, or nothing changed for `stall`
    seconds (a worker stuck on a bug); returns the last counts."""
    last, changed = Counter(), time.monotonic()

    def settled():
        nonlocal last, changed
        now = delivery_states(projects)
        if now != last:
            last, changed = now, time.monotonic()
        total = sum(last.values())
        done = total >= expected and not any(last[s] for s in OPEN_STATUSES)
        return done or time.monotonic() - changed > stall

    wait_for(settled, timeout=timeout, interval=0.2)
    return last


def wait_until_queue_drained(*, timeout: float) -> bool:
    """Poll until no task is due (READY and due, or RUNNING): the tasks a mode left
    (its many small `deliver` tasks, which find their rows sent) are its worker's
    to run, not the next mode's."""
    from django_tasks_db.models import DBTaskResult

    return wait_for(
        lambda: (
            not (
                DBTaskResult.objects.ready().exists()
                or DBTaskResult.objects.running().exists()
            )
        ),
        timeout=timeout,
        interval=0.2,
    )


def failed_tasks() -> list[str]:
    """Tasks that ended FAILED (an exception escaped them): name and exception."""
    from django_tasks_db.models import DBTaskResult

    rows = (
        DBTaskResult.objects.filter(status="FAILED")
        .order_by("enqueued_at", "pk")
        .values_list("task_path", "exception_class_path")
    )
    return [f"{path.rpartition('.')[2]}: {exc}" for path, exc in rows]


def first_enqueue_and_last_sent(projects, since: datetime):
    """(first task enqueued at or after `since`, last delivery sent) for the projects,
    from the database rows both processes wrote."""
    from django.db.models import Max
    from django_tasks_db.models import DBTaskResult

    from notifications.models import Delivery

    first = (
        DBTaskResult.objects.filter(enqueued_at__gte=since)
        .order_by("enqueued_at")
        .values_list("enqueued_at", flat=True)
        .first()
    )
    last = Delivery.objects.filter(project__in=projects, status="sent").aggregate(
        last=Max("sent_at")
    )["last"]
    return first, last


def expected_message_ids(projects) -> dict[str, object]:
    """{Message-ID: delivery} for the projects' deliveries, as the product sets it."""
    from notifications.emails import message_id_for
    from notifications.models import Delivery

    return {
        message_id_for(d): d
        for d in Delivery.objects.filter(project__in=projects).select_related(
            "integration"
        )
    }


def tally(messages: list[dict], expected_ids) -> dict:
    """Delivered, lost and doubled (by Message-ID) among the sandbox's `messages`."""
    copies = Counter(m.get("message_id") for m in messages)
    expected_ids = set(expected_ids)
    delivered = sum(1 for mid in expected_ids if copies.get(mid))
    return {
        "expected": len(expected_ids),
        "delivered": delivered,
        "lost": len(expected_ids) - delivered,
        "doubled": sum(n - 1 for mid, n in copies.items() if mid in expected_ids),
        "doubled_messages": sorted(
            mid for mid, n in copies.items() if mid in expected_ids and n > 1
        ),
        "foreign": sum(n for mid, n in copies.items() if mid not in expected_ids),
    }


def counter_delta(before: dict, after: dict) -> dict:
    """after - before, for the sandbox's (nested) counters."""
    delta = {}
    for key, value in after.items():
        if isinstance(value, dict):
            delta[key] = counter_delta(before.get(key, {}), value)
        else:
            delta[key] = value - before.get(key, 0)
    return delta


@contextlib.contextmanager
def workdir(prefix: str, keep: bool = False):
    """A temporary directory for a run (databases, CA, logs), removed at the end
    unless `keep`."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if keep:
            print(f"\n(work directory kept: {path})", flush=True)
        else:
            shutil.rmtree(path, ignore_errors=True)
