"""Prometheus metrics: the instruments the product's code calls, and `GET /metrics`.

Two kinds of figures:

- **Counted where they happen** (deliveries by tool and outcome, send latency, token
  requests, throttling replies, imports and findings created): prometheus-client
  counters and histograms, incremented by one small call at each place (the
  functions below). Each process counts its own. With PROMETHEUS_MULTIPROC_DIR set
  (in the environment of every web and task worker process, before they start)
  prometheus-client keeps them in files in that directory and `/metrics` adds up
  every process's files (`MultiProcessCollector`); gunicorn's `child_exit` hook
  calls `mark_process_dead`. Without it, `/metrics` shows the counters of the one
  web process that answers the scrape only.
- **Read from the database at scrape time** (`DatabaseCollector`: the delivery queue
  and its oldest pending delivery, periodic job runs and failures): always complete,
  however many processes there are.

https://prometheus.github.io/client_python/multiprocess/
"""

import hmac
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Count, Min
from django.http import Http404, HttpResponse, HttpResponseNotAllowed
from django.utils import timezone
from django.views.decorators.cache import never_cache
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector

from integrations.providers.replies import PendingReply

logger = logging.getLogger(__name__)

PREFIX = "appsec_mail"

#: This process's instruments (in multi-process mode their values live in files).
_registry = CollectorRegistry(auto_describe=True)

DELIVERIES = Counter(
    f"{PREFIX}_deliveries",
    "Delivery outcomes written by the task workers, by tool and outcome "
    "(sent, failed, skipped, retrying).",
    ["tool", "outcome"],
    registry=_registry,
)
SEND_SECONDS = Histogram(
    f"{PREFIX}_send_seconds",
    "Time one message submission took (the network part of a send), by tool; "
    "failed and throttled submissions included.",
    ["tool"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=_registry,
)
TOKEN_REQUESTS = Counter(
    f"{PREFIX}_token_requests",
    "Answers from the Microsoft identity platform's token endpoint (msal's cache "
    "hits and requests that got no answer not counted), by grant and outcome "
    "(acquired, refused).",
    ["grant", "outcome"],
    registry=_registry,
)
THROTTLED = Counter(
    f"{PREFIX}_throttled_replies",
    "Throttling replies met while delivering (HTTP 429, SMTP 4.3.2 or 421), by tool "
    "and reply.",
    ["tool", "reply"],
    registry=_registry,
)
IMPORTS = Counter(
    f"{PREFIX}_scan_imports",
    "SARIF imports committed, by source (upload, api, command).",
    ["source"],
    registry=_registry,
)
FINDINGS_CREATED = Counter(
    f"{PREFIX}_findings_created",
    "New findings created by imports, by source.",
    ["source"],
    registry=_registry,
)

#: Outcome labels, by the delivery status written.
_OUTCOMES = {"sent": "sent", "failed": "failed", "skipped": "skipped"}
_GRANTS = frozenset({"client_credentials", "authorization_code", "refresh_token"})


# -- instruments: one call at each place ------------------------------------------


def delivery_outcome(*, tool: str, status: str) -> None:
    """A delivery's outcome was written (`status`: sent, failed, skipped; pending
    counts as "retrying")."""
    DELIVERIES.labels(tool=tool, outcome=_OUTCOMES.get(str(status), "retrying")).inc()


T = TypeVar("T")


def timed_send(tool: str, submit: Callable[[], T]) -> Callable[[], T]:
    """`submit` (a prepared submission), timed into the send latency histogram each
    time it runs (a throttled one runs again); a reply left pending is timed
    until it is read."""

    def timed() -> T:
        started = time.perf_counter()

        def observe() -> None:
            SEND_SECONDS.labels(tool=tool).observe(time.perf_counter() - started)

        try:
            answer = submit()
        except BaseException:
            observe()
            raise
        if not isinstance(answer, PendingReply):
            observe()
            return answer

        def reply():
            # Timed until the reply is read: the server's time is the send's.
            try:
                return answer.result()
            finally:
                observe()

        return answer.read_with(reply)

    return timed


def throttle_reply(*, tool: str, error) -> None:
    """The server asked to slow down (`error`: an integrations Throttled)."""
    status = getattr(error, "status", None)
    if "4.3.2" in (getattr(error, "request_id", "") or ""):
        reply = "4.3.2"
    elif status in (429, 421):
        reply = str(status)
    else:
        reply = "other"
    THROTTLED.labels(tool=tool, reply=reply).inc()


def token_request(*, grant: str, result: dict) -> None:
    """msal answered a token request (`result`, its dict). Counted only when the
    answer came from the token endpoint, not from msal's cache."""
    if result.get("token_source") == "cache":
        return
    outcome = "acquired" if "access_token" in result else "refused"
    TOKEN_REQUESTS.labels(
        grant=grant if grant in _GRANTS else "other", outcome=outcome
    ).inc()


def scan_imported(*, source: str, findings_created: int) -> None:
    """An import's scan was recorded: counted once its transaction commits."""

    def count():
        IMPORTS.labels(source=source).inc()
        if findings_created > 0:
            FINDINGS_CREATED.labels(source=source).inc(findings_created)

    transaction.on_commit(count)


# -- scrape time --------------------------------------------------------------------


class _ThisProcess:
    """This process's instruments, when not in multi-process mode."""

    def collect(self):
        return _registry.collect()


class DatabaseCollector:
    """Figures read from the database at each scrape: complete whatever the number
    of processes. A database that does not answer gives
    `appsec_mail_database_up 0` and leaves the rest out."""

    def collect(self):
        up = GaugeMetricFamily(
            f"{PREFIX}_database_up",
            "Whether the database answered this scrape's queries (1) or not (0).",
        )
        try:
            families = [*self._queue(), *self._periodic()]
        except DatabaseError as error:
            logger.warning("Metrics: the database did not answer: %s", type(error))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    @staticmethod
    def _queue():
        from notifications.models import Delivery, DeliveryStatus

        open_statuses = [DeliveryStatus.PENDING, DeliveryStatus.SENDING]
        queued = GaugeMetricFamily(
            f"{PREFIX}_deliveries_queued",
            "Deliveries waiting to be sent (pending) or being sent (sending), by tool.",
            labels=["tool", "status"],
        )
        rows = (
            Delivery.objects.filter(status__in=open_statuses)
            .values("integration__provider", "status")
            .annotate(n=Count("pk"))
            .order_by()
        )
        for row in rows:
            queued.add_metric([row["integration__provider"], row["status"]], row["n"])
        oldest = Delivery.objects.filter(status__in=open_statuses).aggregate(
            at=Min("created_at")
        )["at"]
        age = GaugeMetricFamily(
            f"{PREFIX}_delivery_oldest_pending_age_seconds",
            "Age of the oldest delivery not sent yet (pending or sending); 0 when "
            "there is none.",
        )
        age.add_metric(
            [], max(0.0, (timezone.now() - oldest).total_seconds()) if oldest else 0.0
        )
        return [queued, age]

    @staticmethod
    def _periodic():
        try:
            from operations.models import PeriodicJob
        except ImportError:  # the periodic jobs' table is not there yet
            return []
        runs = CounterMetricFamily(
            f"{PREFIX}_periodic_job_runs",
            "Runs of each periodic job (from its PeriodicJob row).",
            labels=["job"],
        )
        failures = CounterMetricFamily(
            f"{PREFIX}_periodic_job_failures",
            "Failed runs of each periodic job (from its PeriodicJob row).",
            labels=["job"],
        )
        for name, run_count, failure_count in PeriodicJob.objects.order_by(
            "name"
        ).values_list("name", "runs", "failures"):
            runs.add_metric([name], run_count)
            failures.add_metric([name], failure_count)
        return [runs, failures]


def exposition() -> bytes:
    """Every metric, in the Prometheus text format (0.0.4)."""
    registry = CollectorRegistry(auto_describe=False)
    directory = settings.PROMETHEUS_MULTIPROC_DIR
    if directory:
        # Every process's files (this one's included), added up.
        MultiProcessCollector(registry, path=directory)
    else:
        registry.register(_ThisProcess())
    registry.register(DatabaseCollector())
    return generate_latest(registry)


def _authorized(request) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = settings.METRICS_TOKEN
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode("utf-8"), expected.encode("utf-8")
    )


@never_cache
def metrics_view(request):
    """`GET /metrics` for Prometheus, with `Authorization: Bearer <METRICS_TOKEN>`.

    Without METRICS_TOKEN the route is switched off (404 to every method); a
    missing or wrong token is a 401.
    """
    if not settings.METRICS_TOKEN:
        raise Http404("Metrics are switched off.")
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    if not _authorized(request):
        response = HttpResponse(
            "A bearer token is required.\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_PLAIN_0_0_4)
