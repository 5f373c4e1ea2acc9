"""Scale-out drill: two gunicorn instances and three task workers on PostgreSQL with
the cache on Redis (issue 12, item 8). Nothing may be lost or doubled, and the
limits must hold across processes.

    .venv/bin/python bench/scale_out.py [--deliveries 5000] [--uploads 5]
        [--tasks-backend database|rq] [--database-url URL] [--redis-url URL]
        [--json PATH] [--keep]

Starts the sandbox in a process of its own, creates a throwaway database on the
--database-url PostgreSQL server and empties the --redis-url Redis database (the
cache: Test Connection's rate limit, per-mailbox pacing). It runs the release
commands of docs/deploy/Procfile (migrate, collectstatic, run_periodic --book), then
starts two instances of the Procfile's web command (gunicorn, WEB_CONCURRENCY=2 each,
on loopback ports through GUNICORN_CMD_ARGS) and three of its worker command
(`manage.py db_worker`, with the bench's --worker-id and polling interval), all with
DEBUG off and one environment, as a deployment would. Only the scheme differs from
production: plain http on loopback (SITE_URL http://127.0.0.1, no https redirect, no
secure-only cookies), since no TLS proxy stands in front.

Microsoft Azure Mail (Graph, as notifications@, later security-alerts@ after an
admin's Save) and the SMTP tool (XOAUTH2, as smtp-alerts@) are linked to one project;
--deliveries / 2 new-vulnerabilities events are committed in transactions of 25 (one
delivery per event and tool). While the workers send, --uploads SARIF files (a real
bandit report from tests/fixtures/sarif/real/) are posted per web instance through
the API with a project token; they are larger than SARIF_ASYNC_THRESHOLD_BYTES here,
so each is answered 202 and imported by a task worker. Once a quarter of the
deliveries are sent, a worker running a delivery task is killed with SIGKILL and
started again. No fault is injected: 0 doubled is the target.

With --tasks-backend rq the same drill runs with TASKS_BACKEND=rq: the tasks go to RQ
on the Redis database after --redis-url's (emptied as well), and the three workers
are `manage.py rqworker --with-scheduler --job-class django_tasks_rq.Job default`
(config/settings.py's task-backend block); the killed one is one RQ lists as busy
with a delivery task.

Then the shared limits, through both web instances: (a) Test Connection,
TEST_CONNECTION_RATE_LIMIT + 1 attempts by one security admin alternating between the
instances, exactly TEST_CONNECTION_RATE_LIMIT allowed in all; (b) sign-in lockout,
SIGN_IN_FAILURE_LIMIT failed sign-ins for one account alternating between the
instances (each from an address of its own, so only the account can be locked), after
which its correct password is refused on both.

Pacing is on, through Redis: every tool's budget is NOTIFICATIONS_MAX_MESSAGES_PER_
MINUTE=12000 per sender mailbox (200 a second), far above what this machine sends, so
the run takes a minute or two and pacing never waits. It prints expected, delivered,
lost, doubled (by Message-ID among the sandbox's stored messages), duration and
messages per second, token requests against what one worker would make, uploads
accepted and imported per instance, and the limits; exit status 1 if anything was lost
or doubled, an upload was not imported, or a limit was not shared.
"""

import argparse
import contextlib
import json
import math
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import (  # noqa: E402
    DEFAULT_POSTGRES,
    ROOT,
    SandboxProcess,
    Worker,
    _tail,
    activate_graph,
    activate_smtp_app,
    counter_delta,
    delivery_states,
    django_setup,
    emit_new_vulnerabilities,
    expected_message_ids,
    failed_tasks,
    free_port,
    heading,
    postgres_database,
    product_env,
    project_with_findings,
    row,
    tally,
    wait_for,
    wait_until_settled,
    workdir,
)
from fault_drill import SMTP_MAILBOX, THIRD_MAILBOX, prepare_sandbox  # noqa: E402

DEFAULT_REDIS = "redis://127.0.0.1:6379/12"
PROCFILE = ROOT / "docs" / "deploy" / "Procfile"
SARIF_FILE = ROOT / "tests" / "fixtures" / "sarif" / "real" / "bandit-1.9.4.sarif"
EVENTS_PER_TRANSACTION = 25
#: Give up when no delivery changed status for this long (a stuck queue).
STALL_SECONDS = 150.0
WEB_INSTANCES = 2
#: The app may read its mailboxes' Sent Items (Graph): a send whose outcome a killed
#: worker never wrote is looked up there before it is sent again. SMTP cannot look.
GRAPH_GRANT = "Mail.ReadBasic.All"
GRANT = [GRAPH_GRANT]
TASK_WORKERS = 3
ADMIN = ("scale-admin", "pw-scale-admin-8410")
LOCKED = ("scale-victim", "pw-scale-victim-8410")

#: Retries and leases scaled down (a killed worker's claims come back in seconds);
#: pacing on, through Redis, with a budget this machine cannot reach.
SETTINGS = {
    "NOTIFICATIONS_RETRY_BASE_SECONDS": 0.5,
    "NOTIFICATIONS_RETRY_MAX_SECONDS": 5,
    "NOTIFICATIONS_LEASE_SECONDS": 5,
    "NOTIFICATIONS_MAX_MESSAGES_PER_MINUTE": 12000,
    "TEST_CONNECTION_RATE_LIMIT": 10,
    "SIGN_IN_FAILURE_LIMIT": 5,
    # Half the bandit report's size: every upload is queued (202) for a worker.
    "SARIF_ASYNC_THRESHOLD_BYTES": 16384,
    # One proxy's worth of X-Forwarded-For: the lockout drill gives each failed
    # sign-in an address of its own, so only the account (not 127.0.0.1) is locked.
    "SIGN_IN_TRUSTED_PROXY_COUNT": 1,
    "WEB_CONCURRENCY": 2,
}


# -- the Procfile's commands -------------------------------------------------------


def procfile() -> dict[str, list[list[str]]]:
    """Each process type's commands (a `&&` chain split up), programs resolved to
    this virtualenv's (as tests/operations/test_production_server.py reads it)."""
    programs = {
        "python": sys.executable,
        "gunicorn": str(Path(sys.executable).parent / "gunicorn"),
    }
    processes = {}
    for line in PROCFILE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _sep, command = line.partition(":")
        commands = []
        for part in command.split("&&"):
            args = shlex.split(part)
            if args[0] not in programs:
                raise SystemExit(f"Procfile {name}: unexpected program {args[0]}")
            commands.append([programs[args[0]], *args[1:]])
        processes[name.strip()] = commands
    return processes


class WebInstance:
    """One gunicorn instance (the Procfile's web command) on a loopback port."""

    def __init__(self, command: list[str], env: dict, log_dir: Path, name: str):
        self.name = name
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.command = command
        self.env = dict(env, PORT=str(self.port))
        # gunicorn's own variable, read after the config file's 0.0.0.0: loopback.
        self.env["GUNICORN_CMD_ARGS"] = f"--bind 127.0.0.1:{self.port}"
        self.log_path = Path(log_dir) / f"web-{name}.log"
        self.process = None

    def start(self) -> "WebInstance":
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=log, stderr=log
            )

        def answers():
            if self.process.poll() is not None:
                raise SystemExit(
                    f"gunicorn {self.name} exited:\n{_tail(self.log_path)}"
                )
            try:
                return requests.get(self.base_url + "/healthz", timeout=5).ok
            except requests.RequestException:
                return False

        if not wait_for(answers, timeout=90, interval=0.2):
            self.stop()
            raise SystemExit(
                f"gunicorn {self.name} did not answer:\n" + _tail(self.log_path)
            )
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def run_release(env: dict, log_dir: Path) -> None:
    for command in procfile()["release"]:
        completed = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        (log_dir / "release.log").open("a").write(completed.stdout + completed.stderr)
        if completed.returncode:
            raise SystemExit(
                f"release command {' '.join(command[1:])} failed:\n"
                + completed.stderr[-3000:]
            )


def worker_command_is_procfiles() -> None:
    (command,) = procfile()["worker"]
    if command[1:3] != ["manage.py", "db_worker"]:
        raise SystemExit(f"the Procfile's worker is not db_worker: {command}")


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    client.flushdb()
    client.close()


# -- browsers and API clients ---------------------------------------------------------

_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def _form_token(session: requests.Session, url: str, headers: dict) -> str:
    response = session.get(url, headers=headers, timeout=30)
    match = _CSRF.search(response.text)
    if not match:
        raise SystemExit(f"no CSRF token on {url} ({response.status_code})")
    return match.group(1)


def sign_in(web: WebInstance, username: str, password: str, address: str):
    """A browser session's sign-in on `web` from `address`: (session, status)."""
    from django.urls import reverse

    session = requests.Session()
    session.trust_env = False
    headers = {"X-Forwarded-For": address}
    url = web.base_url + reverse("login")
    token = _form_token(session, url, headers)
    response = session.post(
        url,
        data={
            "username": username,
            "password": password,
            "csrfmiddlewaretoken": token,
        },
        headers={**headers, "Referer": url},
        allow_redirects=False,
        timeout=30,
    )
    return session, response.status_code


def signed_in(status: int) -> bool:
    return status == 302


class Uploads:
    """SARIF files posted through the API, alternating between the instances, in a
    thread of their own; then each queued scan's status polled until final."""

    def __init__(self, instances, slug: str, token: str, per_instance: int):
        self.instances = instances
        self.slug = slug
        self.per_instance = per_instance
        self.headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        }
        self.body = SARIF_FILE.read_bytes()
        self.posted = []  # (instance name, status code, scan url or error)
        self.errors = []
        self.thread = threading.Thread(target=self._post_all, daemon=True)

    def start(self, spacing: float) -> None:
        self.spacing = spacing
        self.thread.start()

    def _post_all(self) -> None:
        session = requests.Session()
        session.trust_env = False
        for i in range(self.per_instance * len(self.instances)):
            web = self.instances[i % len(self.instances)]
            url = f"{web.base_url}/api/v1/projects/{self.slug}/scans"
            try:
                response = session.post(
                    url, data=self.body, headers=self.headers, timeout=120
                )
                scan = response.json().get("scan", {}) if response.content else {}
                self.posted.append(
                    (web.name, response.status_code, scan.get("url") or "")
                )
            except (requests.RequestException, ValueError) as exc:
                self.errors.append(f"{web.name}: {type(exc).__name__}: {exc}"[:300])
                self.posted.append((web.name, 0, ""))
            time.sleep(self.spacing)  # arrivals spread over the drill, not a wait

    def finish(self, timeout: float) -> dict:
        """Wait for the posts, then for every queued scan to end; per instance:
        {name: {"posted", "accepted", "imported", "statuses"}}."""
        self.thread.join(timeout)
        by_name = {web.name: web for web in self.instances}
        session = requests.Session()
        session.trust_env = False
        final = {}

        def status_of(index, name, url):
            base = by_name[name].base_url
            response = session.get(
                base + url if url.startswith("/") else url,
                headers=self.headers,
                timeout=30,
            )
            return response.json()["scan"]["status"]

        def all_final():
            for index, (name, code, url) in enumerate(self.posted):
                if code not in (201, 202) or not url or index in final:
                    continue
                status = status_of(index, name, url)
                if status in ("complete", "failed"):
                    final[index] = status
            pending = [
                i
                for i, (_n, code, url) in enumerate(self.posted)
                if code in (201, 202) and url and i not in final
            ]
            return not pending

        wait_for(all_final, timeout=timeout, interval=0.5)
        figures = {}
        for web in self.instances:
            mine = [i for i, p in enumerate(self.posted) if p[0] == web.name]
            figures[web.name] = {
                "posted": self.per_instance,
                "accepted": sum(1 for i in mine if self.posted[i][1] in (201, 202)),
                "imported": sum(1 for i in mine if final.get(i) == "complete"),
                "statuses": dict(Counter(final.get(i, "unfinished") for i in mine)),
            }
        return figures


# -- the shared limits ---------------------------------------------------------------


def test_connection_limit(instances, tool_values: dict) -> dict:
    """TEST_CONNECTION_RATE_LIMIT + 1 Test Connection attempts by one security
    admin, alternating between the instances: how many were allowed."""
    from django.conf import settings
    from django.urls import reverse

    limit = settings.TEST_CONNECTION_RATE_LIMIT
    key = "microsoft_azure_mail"
    sessions = []
    for web in instances:
        session, status = sign_in(web, *ADMIN, address="192.0.2.10")
        if not signed_in(status):
            raise SystemExit(
                f"the security admin cannot sign in on {web.name}: {status}"
            )
        headers = {"X-Forwarded-For": "192.0.2.10"}
        token = _form_token(
            session, web.base_url + reverse("integrations:tool", args=[key]), headers
        )
        sessions.append((web, session, token))
    # The limit counts per clock minute: start early in one, so all attempts share it.
    wait_for(lambda: time.time() % 60 < 40, timeout=65, interval=0.5)
    minute = int(time.time() // 60)
    codes = []
    for i in range(limit + 1):
        web, session, token = sessions[i % len(sessions)]
        url = web.base_url + reverse("integrations:test", args=[key])
        response = session.post(
            url,
            data={**tool_values, "csrfmiddlewaretoken": token},
            headers={
                "X-Requested-With": "fetch",
                "X-Forwarded-For": "192.0.2.10",
                "Referer": url,
            },
            timeout=120,
        )
        codes.append((web.name, response.status_code))
    same_minute = int(time.time() // 60) == minute
    allowed = sum(1 for _name, code in codes if code != 429)
    return {
        "limit": limit,
        "attempts": len(codes),
        "allowed": allowed,
        "refused": sum(1 for _name, code in codes if code == 429),
        "by_instance": {
            web.name: dict(Counter(str(c) for n, c in codes if n == web.name))
            for web in instances
        },
        "same_minute": same_minute,
        "shared": allowed == limit and same_minute,
    }


def sign_in_lockout(instances) -> dict:
    """SIGN_IN_FAILURE_LIMIT failed sign-ins for one account alternating between
    the instances, each from its own address; then its correct password on both."""
    from django.conf import settings

    limit = settings.AXES_FAILURE_LIMIT
    failures = []
    for i in range(limit):
        web = instances[i % len(instances)]
        _session, status = sign_in(
            web, LOCKED[0], "wrong-password", f"198.51.100.{i + 1}"
        )
        failures.append((web.name, status))
    after = {}
    for j, web in enumerate(instances):
        _session, status = sign_in(web, *LOCKED, address=f"203.0.113.{j + 1}")
        after[web.name] = status
    # Fewer failures than the limit on any one instance: only a shared count locks.
    per_instance = Counter(name for name, _status in failures)
    return {
        "limit": limit,
        "failures_by_instance": dict(per_instance),
        "failure_answers": [status for _name, status in failures],
        "correct_password_after": after,
        "shared": max(per_instance.values()) < limit
        and all(status == 429 for status in after.values()),
    }


# -- RQ (TASKS_BACKEND=rq) ---------------------------------------------------------

#: The worker command for TASKS_BACKEND=rq (config/settings.py's task-backend block).
RQ_WORKER_ARGS = [
    "manage.py",
    "rqworker",
    "--worker-class",
    "rq.worker.SimpleWorker",
    "--with-scheduler",
    "--job-class",
    "django_tasks_rq.Job",
    "default",
]


def rq_connection(url: str):
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=5)


class RqWorker(Worker):
    """A real `manage.py rqworker` process (TASKS_BACKEND=rq), with Worker's
    interface: ready once RQ lists a worker with its process id."""

    def __init__(self, env: dict, log_dir: Path, name: str, *, rq_url: str):
        super().__init__(env, log_dir, name)
        self.rq_url = rq_url

    @property
    def command(self) -> str:
        return " ".join(RQ_WORKER_ARGS)

    def rq_worker(self):
        from rq import Worker as RQWorkerModel

        with rq_connection(self.rq_url) as connection:
            for worker in RQWorkerModel.all(connection=connection):
                if worker.pid == self.process.pid:
                    return worker
        return None

    def start(self) -> "RqWorker":
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, *RQ_WORKER_ARGS],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def listed():
            if self.process.poll() is not None:
                raise SystemExit(
                    f"rqworker {self.name} exited:\n" + _tail(self.log_path)
                )
            worker = self.rq_worker()
            if worker is not None:
                self.worker_id = worker.name
            return worker is not None

        if not wait_for(listed, timeout=120, interval=0.1):
            self.kill()
            raise SystemExit(
                f"rqworker {self.name} did not start:\n" + _tail(self.log_path)
            )
        return self

    def _children(self) -> list[int]:
        """Its child processes (RQ's work horse, forked per job), from /proc."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                children.append(int(stat.parent.name))
        return children

    def kill(self) -> None:
        """SIGKILL to the worker and its work horse: the job in flight dies with it,
        as with a db_worker (killing the worker alone leaves the horse finishing it)."""
        if self.process is None or self.process.poll() is not None:
            return
        horses = self._children()
        self.process.send_signal(signal.SIGKILL)
        for pid in horses:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        horses = (
            self._children() if self.process and self.process.poll() is None else []
        )
        super().stop()
        for pid in horses:  # a horse outliving its worker
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def busy_with(self) -> str:
        """The task path of the job it runs now ("" when idle)."""
        worker = self.rq_worker() if self.process.poll() is None else None
        if worker is None or worker.get_state() != "busy":
            return ""
        with rq_connection(self.rq_url) as connection:
            worker.connection = connection
            job = worker.get_current_job()
            return job.func_name if job is not None else ""


def rq_failed_jobs(rq_url: str) -> list[str]:
    """Jobs in RQ's failed-job registry: their task path and why."""
    from rq import Queue
    from rq.registry import FailedJobRegistry

    with rq_connection(rq_url) as connection:
        registry = FailedJobRegistry(queue=Queue("default", connection=connection))
        jobs = [
            registry.job_class.fetch(i, connection=connection)
            for i in registry.get_job_ids()
        ]
        return [
            f"{job.func_name.rpartition('.')[2]}: "
            + ((job.latest_result().exc_string or "").strip().splitlines() or ["?"])[
                -1
            ][:120]
            for job in jobs
        ]


# -- the drill -----------------------------------------------------------------------


def doubled_breakdown(messages, figures, expected) -> dict:
    """The doubles by transport, and how many of them the product marked on its
    delivery log as sent again after a lost outcome (`resent_unconfirmed`)."""
    from django.conf import settings

    from notifications.models import Delivery

    seen = Counter(m["message_id"] for m in messages)
    transports = Counter()
    for m in messages:
        if seen[m["message_id"]] > 1:
            transports[m.get("transport", "?")] += 1
            seen[m["message_id"]] -= 1
    doubled_ids = figures["doubled_messages"]
    marked = Delivery.objects.filter(
        pk__in=[expected[mid].pk for mid in doubled_ids], resent_unconfirmed=True
    ).count()
    return {
        "graph": transports["graph"],
        "smtp": transports["smtp"],
        "marked": marked,
        "unmarked": len(doubled_ids) - marked,
        "bound": int(settings.NOTIFICATIONS_OUTCOME_FLUSH) + 1,
    }


def running_delivery_worker(started: list[Worker]) -> Worker | None:
    """A live worker running a delivery task now (not a SARIF import)."""
    if started and isinstance(started[0], RqWorker):
        for worker in started:
            if worker.busy_with().startswith("notifications."):
                return worker
        return None
    from django_tasks_db.models import DBTaskResult

    running = DBTaskResult.objects.filter(
        status="RUNNING", task_path__contains="notifications"
    ).values_list("worker_ids", flat=True)
    busy = {worker_id for ids in running for worker_id in (ids or [])}
    for worker in started:
        if worker.worker_id in busy and worker.process.poll() is None:
            return worker
    return None


def drill(
    *,
    deliveries: int,
    uploads: int,
    database_url: str,
    redis_url: str,
    keep: bool = False,
    timeout: float | None = None,
    worker_interval: float = 0.1,
    tasks_backend: str = "database",
) -> dict:
    """Run the drill, print its figures as they come, and return them.

    tasks_backend "rq": the tasks go to RQ (TASKS_BACKEND=rq) on the next Redis
    database after `redis_url`'s (emptied too), run by `manage.py rqworker`."""
    timeout = timeout or 180 + deliveries / 10
    worker_command_is_procfiles()
    flush_redis(redis_url)
    rq_url = ""
    backend_env = {"TASKS_BACKEND": "database"}
    if tasks_backend == "rq":
        rq_url = next_redis_database(redis_url)
        flush_redis(rq_url)
        backend_env = {"TASKS_BACKEND": "rq", "REDIS_URL": rq_url}
    result = {"deliveries": deliveries, "tasks_backend": tasks_backend}
    with workdir("bench-scale-out-", keep=keep) as work:
        with SandboxProcess(work / "sandbox", grant=GRANT) as sandbox:
            with postgres_database(database_url, "bench_scale") as url:
                env = product_env(
                    sandbox,
                    database_url=url,
                    var_dir=work,
                    CACHE_URL=redis_url,
                    SITE_URL="http://127.0.0.1",
                    ALLOWED_HOSTS="127.0.0.1,localhost",
                    SECURE_SSL_REDIRECT="False",
                    SESSION_COOKIE_SECURE="False",
                    CSRF_COOKIE_SECURE="False",
                    **backend_env,
                    **SETTINGS,
                )
                run_release(env, work)
                django_setup(env)
                return _drill(
                    result,
                    sandbox=sandbox,
                    env=env,
                    work=work,
                    deliveries=deliveries,
                    uploads=uploads,
                    timeout=timeout,
                    worker_interval=worker_interval,
                    rq_url=rq_url,
                )


def next_redis_database(url: str) -> str:
    base, _slash, number = url.rpartition("/")
    return f"{base}/{int(number) + 1}"


def _drill(
    result,
    *,
    sandbox,
    env,
    work,
    deliveries,
    uploads,
    timeout,
    worker_interval,
    rq_url="",
):
    from django.contrib.auth.models import Group, User

    from integrations.permissions import SECURITY_ADMINS_GROUP
    from notifications.models import Delivery
    from projects.models import Project
    from projects.services import api_token_create

    count = deliveries
    prepare_sandbox(sandbox)
    seed = sandbox.seed
    graph = activate_graph(seed)
    smtp = activate_smtp_app(sandbox, sender=SMTP_MAILBOX)
    project = project_with_findings("scale-out", [graph, smtp])
    admin = User.objects.create_user(ADMIN[0], password=ADMIN[1])
    admin.groups.add(Group.objects.get_or_create(name=SECURITY_ADMINS_GROUP)[0])
    User.objects.create_user(LOCKED[0], password=LOCKED[1])
    uploads_project = Project.objects.create(name="Scale-out uploads", slug="uploads")
    _token, raw_token = api_token_create(
        project=uploads_project, name="scale-out CI", actor=admin
    )
    print(
        f"Scale-out drill: {count:,} deliveries, PostgreSQL, Redis cache, tasks on "
        + ("RQ (Redis)" if rq_url else "the database")
        + ", "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs (a shared machine)",
        flush=True,
    )
    row("release", " && ".join(" ".join(c[1:]) for c in procfile()["release"]))
    web_command = procfile()["web"][0]
    instances = [
        WebInstance(web_command, env, work, name)
        for name in ("web-a", "web-b")[:WEB_INSTANCES]
    ]
    started: list[Worker] = []
    try:
        for web in instances:
            web.start()
        row(
            "web",
            f"{len(instances)} x gunicorn -c config/gunicorn.conf.py config.wsgi "
            f"(WEB_CONCURRENCY={SETTINGS['WEB_CONCURRENCY']}), ports "
            + ", ".join(str(w.port) for w in instances),
        )
        row(
            "tools",
            f"Graph as {seed['sender']} (later {THIRD_MAILBOX}); "
            f"SMTP XOAUTH2 as {SMTP_MAILBOX}",
        )
        row("settings", ", ".join(f"{k}={v}" for k, v in SETTINGS.items()))
        emit_new_vulnerabilities(
            project, count // 2, per_transaction=EVENTS_PER_TRANSACTION
        )
        expected = expected_message_ids([project])
        sandbox.clear_messages()
        before = sandbox.counters()

        heading("drill")
        upload_run = Uploads(instances, uploads_project.slug, raw_token, uploads)
        began = time.monotonic()
        for i in range(TASK_WORKERS):
            if rq_url:
                worker = RqWorker(env, work, str(i + 1), rq_url=rq_url)
            else:
                worker = Worker(env, work, str(i + 1), interval=worker_interval)
            started.append(worker.start())
        row("workers", f"{len(started)} x {started[0].command}")
        # Spread the uploads over roughly the first half of the sending.
        upload_run.start(
            spacing=max(0.2, count / 400 / max(1, uploads * len(instances)))
        )

        def sent():
            return delivery_states([project]).get("sent", 0)

        def sent_by_graph():
            return Delivery.objects.filter(
                project=project, integration=graph, status="sent"
            ).count()

        wait_for(lambda: sent_by_graph() >= count // 8, timeout=timeout)
        at = sent_by_graph()
        activate_graph(seed, sender=THIRD_MAILBOX)
        row(
            "sender changed",
            f"Graph tool's From -> {THIRD_MAILBOX} at {at}/{count // 2} sent through it",
        )
        victim = wait_for(
            lambda: sent() >= count // 4 and running_delivery_worker(started),
            timeout=timeout,
            interval=0.05,
        )
        mid_task = bool(victim)
        victim = victim or started[0]
        at = sent()
        victim.kill()
        row(
            "killed",
            f"worker {victim.name} with SIGKILL at {at}/{count} sent, "
            + ("while it ran a delivery task" if mid_task else "NOT mid-task"),
        )
        victim.start()
        row("restarted", f"worker {victim.name}, at {sent()}/{count} sent")
        result["killed_mid_task"] = mid_task
        left = max(1.0, timeout - (time.monotonic() - began))
        # Patience for the recovery of a killed worker's claims: its `recover` task
        # runs once they look stale (NOTIFICATIONS_TASK_STALE_SECONDS at most).
        states = wait_until_settled([project], count, timeout=left, stall=STALL_SECONDS)
        seconds = time.monotonic() - began
        upload_figures = upload_run.finish(timeout=max(60.0, left))
        delta = counter_delta(before, sandbox.counters())
        messages = sandbox.messages()
        figures = tally(messages, expected)

        heading("deliveries")
        open_ = sum(states.get(s, 0) for s in ("pending", "sending"))
        row("expected", figures["expected"])
        row("delivered", figures["delivered"])
        row("lost", figures["lost"])
        row("doubled", f"{figures['doubled']} (extra copies of one Message-ID)")
        doubles = doubled_breakdown(messages, figures, expected)
        row(
            "  of which",
            f"Graph {doubles['graph']}, SMTP {doubles['smtp']}; "
            f"{doubles['marked']} marked on the delivery log as sent again after a "
            f"lost outcome (the killed worker's), {doubles['unmarked']} not; the "
            f"product allows up to {doubles['bound']} per killed worker "
            "(NOTIFICATIONS_OUTCOME_FLUSH + the one in flight)",
        )
        row(
            "duration",
            f"{seconds:.1f} s, {figures['delivered'] / seconds:.0f} msg/s "
            "(first worker start to last settled)"
            + (
                f"; gave up with {open_} still open ("
                + ", ".join(f"{n} {st}" for st, n in sorted(states.items()))
                + f"; nothing changed for {STALL_SECONDS:.0f} s)"
                if open_
                else ""
            ),
        )
        senders = Counter(f"{m.get('from')} ({m.get('transport')})" for m in messages)
        row(
            "sender mailboxes",
            ", ".join(f"{k} {n}" for k, n in sorted(senders.items())),
        )
        tokens = delta["token_requests"]["client_credentials"]
        mailboxes = len(senders)
        lifetimes = math.ceil(seconds / 3600)
        one_worker = mailboxes * lifetimes
        row(
            "token requests",
            f"{tokens} client-credentials (sandbox counter, all mailboxes together); "
            f"one worker would make at most {one_worker} "
            f"({mailboxes} tool-mailboxes x {lifetimes} token lifetime(s) of 1 h)",
        )
        heading("uploads")
        for name, upload in upload_figures.items():
            row(
                name,
                f"{upload['posted']} posted, {upload['accepted']} accepted, "
                f"{upload['imported']} imported ({upload['statuses']})",
            )
        if upload_run.errors:
            row("upload errors", "; ".join(upload_run.errors[:3]))

        heading("shared limits")
        tool_values = {
            "tenant_id": seed["tenant_id"],
            "client_id": seed["client_id"],
            "client_secret": "",  # the saved one
            "sender": THIRD_MAILBOX,
            "recipients": seed["recipient"],
            "cloud": "global",
            "secret_expires_on": "",
        }
        rate = test_connection_limit(instances, tool_values)
        row(
            "Test Connection",
            f"{rate['allowed']} of {rate['attempts']} allowed across both instances "
            f"(limit {rate['limit']}; {rate['by_instance']})"
            + ("" if rate["same_minute"] else "; crossed a minute boundary")
            + (" - shared" if rate["shared"] else " - NOT SHARED"),
        )
        lockout = sign_in_lockout(instances)
        row(
            "sign-in lockout",
            f"{lockout['limit']} failures split {lockout['failures_by_instance']}; "
            f"correct password afterwards answered {lockout['correct_password_after']}"
            + (" - locked on both" if lockout["shared"] else " - NOT SHARED"),
        )
        failed = rq_failed_jobs(rq_url) if rq_url else failed_tasks()
        if failed:
            row(
                "FAILED tasks",
                f"{len(failed)}: " + ", ".join(sorted(set(failed)))[:300],
            )
        errors = [e for w in started for e in w.errors()]
        if errors:
            row("worker errors", f"{len(errors)}; first: {errors[0][:200]}")
        if figures["lost"]:
            missing = sorted(set(expected) - {m["message_id"] for m in messages})
            row("LOST", ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
        result.update(
            expected=figures["expected"],
            delivered=figures["delivered"],
            lost=figures["lost"],
            doubled=figures["doubled"],
            doubles=doubles,
            seconds=round(seconds, 1),
            per_second=round(figures["delivered"] / seconds, 1),
            sender_mailboxes=dict(senders),
            token_requests=tokens,
            token_requests_one_worker=one_worker,
            uploads=upload_figures,
            test_connection=rate,
            lockout=lockout,
            failed_tasks=failed,
        )
        return result
    finally:
        for worker in started:
            worker.stop()
        for web in instances:
            web.stop()


def verdict(result: dict) -> list[str]:
    """What failed, if anything (empty: the drill passed)."""
    problems = []
    if result["lost"]:
        problems.append(f"{result['lost']} lost")
    if result["doubled"]:
        problems.append(f"{result['doubled']} doubled")
    if result["token_requests"] > result["token_requests_one_worker"]:
        problems.append("more token requests than one worker would make")
    for name, upload in result["uploads"].items():
        if upload["imported"] != upload["posted"]:
            problems.append(f"{name}: {upload['imported']}/{upload['posted']} imported")
    if not result["test_connection"]["shared"]:
        problems.append("Test Connection limit not shared")
    if not result["lockout"]["shared"]:
        problems.append("sign-in lockout not shared")
    return problems


def _stop_on_sigterm(signum, frame):
    raise SystemExit(f"stopped by signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--deliveries",
        type=int,
        default=5000,
        metavar="N",
        help="deliveries, half through each tool (default: %(default)s)",
    )
    parser.add_argument(
        "--uploads",
        type=int,
        default=5,
        metavar="N",
        help="SARIF uploads through the API per web instance (default: %(default)s)",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_POSTGRES,
        metavar="URL",
        help="the PostgreSQL server; the drill makes a database of its own there "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--redis-url",
        default=DEFAULT_REDIS,
        metavar="URL",
        help="the Redis database used as the cache; EMPTIED at the start "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="give up waiting for the deliveries after S seconds "
        "(default: 180 + N / 10)",
    )
    parser.add_argument(
        "--tasks-backend",
        choices=["database", "rq"],
        default="database",
        help="the task queue: the database (db_worker) or RQ on Redis (rqworker, "
        "TASKS_BACKEND=rq, on the --redis-url database + 1) (default: %(default)s)",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write the figures to PATH as JSON"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (logs)"
    )
    args = parser.parse_args()
    if args.deliveries < 8 or args.deliveries % 2:
        parser.error("--deliveries must be an even number, 8 or more")
    if not 1 <= args.uploads <= 1000:
        parser.error("--uploads must be from 1 to 1000")
    if not re.fullmatch(r"redis://[^/]+/\d+", args.redis_url):
        parser.error("--redis-url must name a database: redis://host:port/N")
    if not args.database_url.startswith(("postgres://", "postgresql://")):
        parser.error("--database-url must be a PostgreSQL URL (postgres://...)")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    result = drill(
        deliveries=args.deliveries,
        uploads=args.uploads,
        database_url=args.database_url,
        redis_url=args.redis_url,
        keep=args.keep,
        timeout=args.timeout,
        tasks_backend=args.tasks_backend,
    )
    problems = verdict(result)
    result["problems"] = problems
    heading("verdict")
    row("result", "PASS" if not problems else "FAIL: " + "; ".join(problems))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
