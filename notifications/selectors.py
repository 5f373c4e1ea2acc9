"""Reads for tool links and the delivery log, always scoped by the caller."""

import logging
from dataclasses import dataclass, field

from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from integrations.models import Integration, IntegrationState
from integrations.registry import providers
from integrations.selectors import active_integrations
from integrations.troubleshooting import troubleshooting_for
from notifications.bounces import status_meaning
from notifications.emails import emails_for
from notifications.models import (
    BouncedRecipient,
    Delivery,
    DeliveryReport,
    Event,
    EventKind,
    MailboxReading,
    ToolLink,
)
from notifications.routing import (
    SEVERITIES,
    severities_at_or_above,
    status_changes,
    wanted_changes,
)
from notifications.troubleshooting import delivery_troubleshooting
from projects.models import Finding

logger = logging.getLogger(__name__)


@dataclass
class ProjectTool:
    """One row of Project › Settings › Notification Tools."""

    integration: Integration
    name: str
    link: ToolLink | None
    default_recipients: list[str]
    #: The link's addresses that bounced (`bounced_recipients_by_link`).
    bounced: list = field(default_factory=list)

    @property
    def inactive(self) -> bool:
        """Linked, but an admin deactivated the tool: it sends nothing."""
        return self.integration.state == IntegrationState.INACTIVE

    @property
    def needs_attention(self) -> bool:
        """The tool cannot send until someone fixes it (attention or
        re-authorization): its deliveries wait."""
        return self.integration.state in (
            IntegrationState.NEEDS_ATTENTION,
            IntegrationState.NEEDS_REAUTHORIZATION,
        )

    @property
    def attention_reason(self) -> str:
        """Why the tool needs attention, in words (the card's reason)."""
        return self.integration.attention_detail


def project_tools(*, project) -> list[ProjectTool]:
    """The globally active tools, and any tool linked to `project` (even if inactive)."""
    links = {
        link.integration_id: link
        for link in ToolLink.objects.filter(project=project).select_related(
            "integration"
        )
    }
    registered = providers()
    integrations = {i.pk: i for i in active_integrations().defer("token_cache")}
    for link in links.values():
        if link.integration.provider in registered:
            integrations.setdefault(link.integration_id, link.integration)
    bounced = bounced_recipients_by_link(link.pk for link in links.values())
    rows = []
    for integration in sorted(integrations.values(), key=lambda i: i.provider):
        cls = registered[integration.provider]
        link = links.get(integration.pk)
        rows.append(
            ProjectTool(
                integration=integration,
                name=str(cls.name),
                link=link,
                default_recipients=list(integration.config.get("recipients") or []),
                bounced=bounced.get(link.pk, []) if link else [],
            )
        )
    return rows


def link_get(*, project, link_id) -> ToolLink:
    """A link of `project`; ToolLink.DoesNotExist for another project's link."""
    return ToolLink.objects.select_related("integration", "project").get(
        project=project, pk=link_id
    )


def deliveries_for_log(*, project=None, status: str = "") -> QuerySet[Delivery]:
    """The delivery log, newest first: one project's, or every project's, with what
    the recipients' servers reported (bounces, delays); `status` filters."""
    deliveries = (
        Delivery.objects.select_related("project", "event", "integration")
        .defer("integration__secrets", "integration__token_cache")
        .prefetch_related(
            Prefetch(
                "reports", queryset=DeliveryReport.objects.order_by("recipient", "kind")
            )
        )
    )
    if project is not None:
        deliveries = deliveries.filter(project=project)
    if status:
        deliveries = deliveries.filter(status=status)
    return deliveries.order_by("-created_at", "-id")


def delivery_get(*, uuid, project=None) -> Delivery:
    deliveries = Delivery.objects.select_related("project", "link", "integration")
    if project is not None:
        deliveries = deliveries.filter(project=project)
    return deliveries.get(uuid=uuid)


def annotate_for_log(deliveries) -> list[Delivery]:
    """Attach the tool's name and the error's words to each delivery for display."""
    names = {key: str(cls.name) for key, cls in providers().items()}
    rows = list(deliveries)
    for delivery in rows:
        delivery.tool_name = names.get(
            delivery.integration.provider, delivery.integration.provider
        )
        delivery.troubleshooting = delivery_troubleshooting(delivery.error_code)
        for report in delivery.reports.all():
            report.meaning = status_meaning(report.status_code)
    return rows


def bounced_recipients_by_link(link_ids) -> dict[int, list[BouncedRecipient]]:
    """Each link's bounced addresses, most bounces first, with the reason in words."""
    by_link: dict[int, list[BouncedRecipient]] = {}
    for row in BouncedRecipient.objects.filter(link_id__in=list(link_ids)).order_by(
        "-bounce_count", "address"
    ):
        row.meaning = status_meaning(row.last_status_code)
        by_link.setdefault(row.link_id, []).append(row)
    return by_link


def email_box_status(*, integration) -> dict:
    """For the tool's card: the Email box's last read (or its error, in words) and
    the addresses that bounced through the tool, on every project's link."""
    reading = MailboxReading.objects.filter(integration=integration).first()
    bounced = list(
        BouncedRecipient.objects.filter(link__integration=integration)
        .select_related("link__project")
        .order_by("-bounce_count", "address")[:20]
    )
    for row in bounced:
        row.meaning = status_meaning(row.last_status_code)
    return {
        "email_box_on": bool((integration.config or {}).get("email_box")),
        "reading": reading,
        "reading_error": (
            troubleshooting_for(reading.last_error_code)
            if reading and reading.last_error_code
            else None
        ),
        "bounced": bounced,
        "suppressed_count": sum(1 for row in bounced if row.suppressed_at),
    }


# --- The findings a delivery is about (the log's links, the message view) -----------

#: Finding ids of one delivery looked at for its links: a first scan's event may
#: name thousands; its most severe among the first ones are linked, the count says
#: how many there are.
FINDING_IDS_PER_DELIVERY = 200
#: Ids per query (well under SQLite's limit of host parameters).
FINDING_IDS_PER_QUERY = 500


@dataclass
class DeliveryFindings:
    """What one delivery's email is about: its findings (the most severe first,
    at most `limit`), how many more there are, and its scans."""

    findings: list = field(default_factory=list)
    more: int = 0
    scan_ids: list = field(default_factory=list)


def _int_list(values) -> list[int]:
    if not isinstance(values, list):
        return []
    return list(dict.fromkeys(v for v in values if type(v) is int and v > 0))


def _wanted_ids(event: Event, link) -> tuple[list[int], set[str] | None]:
    """The finding ids `event` names that the email lists (the link's wishes, as
    the email applies them), and the severities allowed (None: any)."""
    payload = event.payload if isinstance(event.payload, dict) else {}
    if event.kind == EventKind.NEW_VULNERABILITIES:
        allowed = severities_at_or_above(link.minimum_severity if link else "info")
        return _int_list(payload.get("finding_ids")), set(allowed)
    if event.kind == EventKind.STATUS_CHANGED:
        try:
            changes = wanted_changes(link, payload) if link else status_changes(payload)
            ids = [change.get("finding_id") for change in changes]
        except (AttributeError, TypeError):
            ids = []
        return _int_list(ids), None
    return [], None


def _events_by_delivery(deliveries) -> dict[int, list[Event]]:
    """Each delivery's events: a digest's, by id (one query for all), else its own."""
    wanted = {
        pk
        for delivery in deliveries
        if delivery.is_digest
        for pk in _int_list(delivery.digest_event_ids)
    }
    digests = Event.objects.in_bulk(wanted) if wanted else {}
    events = {}
    for delivery in deliveries:
        ids = _int_list(delivery.digest_event_ids) if delivery.is_digest else []
        found = [digests[pk] for pk in sorted(ids) if pk in digests]
        events[delivery.pk] = found or [delivery.event]
    return events


def findings_for_deliveries(deliveries, *, limit: int) -> dict[int, DeliveryFindings]:
    """By delivery pk: the findings its email is about, most severe first, at most
    `limit` of them, each of its own project. Findings come from a few queries for
    all `deliveries` together (the ids are read from the events' payloads)."""
    deliveries = list(deliveries)
    events = _events_by_delivery(deliveries)
    link_ids = {d.link_id for d in deliveries if d.link_id}
    links = ToolLink.objects.in_bulk(link_ids) if link_ids else {}
    wanted: dict[int, list[tuple[list[int], set[str] | None]]] = {}
    all_ids: set[int] = set()
    for delivery in deliveries:
        rows = []
        for event in events[delivery.pk]:
            ids, allowed = _wanted_ids(event, links.get(delivery.link_id))
            rows.append((ids, allowed))
            all_ids.update(ids[:FINDING_IDS_PER_DELIVERY])
        wanted[delivery.pk] = rows
    ordered = sorted(all_ids)
    found = {}
    for start in range(0, len(ordered), FINDING_IDS_PER_QUERY):
        chunk = ordered[start : start + FINDING_IDS_PER_QUERY]
        found.update(
            Finding.objects.filter(pk__in=chunk)
            .only("pk", "project_id", "severity", "rule_id", "rule_name")
            .in_bulk()
        )
    rank = {severity: i for i, severity in enumerate(SEVERITIES)}
    answer = {}
    for delivery in deliveries:
        linked, unseen = {}, 0
        for ids, allowed in wanted[delivery.pk]:
            for pk in ids[:FINDING_IDS_PER_DELIVERY]:
                finding = found.get(pk)
                if (
                    finding is not None
                    and finding.project_id == delivery.project_id
                    and (allowed is None or finding.severity in allowed)
                ):
                    linked[pk] = finding
            # Ids beyond those looked at are counted, not linked.
            unseen += max(0, len(ids) - FINDING_IDS_PER_DELIVERY)
        shown = sorted(
            linked.values(), key=lambda f: (rank.get(f.severity, len(rank)), f.pk)
        )[:limit]
        answer[delivery.pk] = DeliveryFindings(
            findings=shown,
            more=len(linked) + unseen - len(shown),
            scan_ids=list(
                dict.fromkeys(e.scan_id for e in events[delivery.pk] if e.scan_id)
            ),
        )
    return answer


def delivery_for_message(*, uuid, project=None) -> Delivery:
    """A delivery with what its message view shows; Delivery.DoesNotExist for an
    unknown one, or one of another project than `project`."""
    deliveries = (
        Delivery.objects.select_related("project", "event", "link", "integration")
        .defer("integration__token_cache")
        .prefetch_related(
            Prefetch(
                "reports", queryset=DeliveryReport.objects.order_by("recipient", "kind")
            )
        )
    )
    if project is not None:
        deliveries = deliveries.filter(project=project)
    return deliveries.get(uuid=uuid)


def attach_findings(deliveries, *, limit: int) -> list[Delivery]:
    """Set `about` (DeliveryFindings) on each delivery, for display."""
    deliveries = list(deliveries)
    about = findings_for_deliveries(deliveries, limit=limit)
    for delivery in deliveries:
        delivery.about = about[delivery.pk]
    return deliveries


def delivery_message(delivery: Delivery):
    """The delivery's message as `email_for` renders it to send it (from its events
    as they were recorded), or None when it cannot be rendered (logged). In the
    server's time zone, as the worker renders it, not the viewer's."""
    with timezone.override(None):
        email = emails_for([delivery], skip_errors=True).get(delivery.pk)
    if email is None:
        logger.warning("Delivery %s: its message could not be rendered", delivery.uuid)
    return email
