"""Render deliveries into `OutgoingEmail`s: subject, plain text and HTML.

`emails_for` renders a claimed batch: the findings of all its events come from one
query, each project's links from one `reverse()`, and the templates are fetched
once; `email_for` renders one delivery the same way, to the same bytes.

The templates (`templates/notifications/email/`) render with Jinja2 in Django's
escaping and translation tags (`notifications/email_templates.py`): the same bytes
as the Django template language gave, a few times faster, which counts when a
worker renders two of them per message.

Everything that came from a scan (rule ids, paths, messages, project names) is
untrusted: the HTML part relies on autoescaping (Django's HTML escaping), and the
subject is reduced to one line, since a CR or LF there would start a new header.
"""

import re
from collections import namedtuple
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import Case, IntegerField, Value, When
from django.template.loader import get_template
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from integrations.providers.base import OutgoingEmail
from notifications.lookups import pk_in
from notifications.models import Delivery, Event, EventKind
from notifications.routing import (
    SEVERITIES,
    severities_at_or_above,
    status_changes,
    wanted_changes,
    wanted_counts,
)
from projects.models import Finding, FindingStatus, Severity

#: Findings listed in one email; the counts cover the rest.
TOP_FINDINGS = 10
SUBJECT_MAX = 250
#: Finding ids one query of a batch asks for. An event that names more (a first
#: scan's thousands of new findings) has a query of its own, which fetches only the
#: findings it lists.
BATCH_FINDING_IDS = 1000
TEXT_TEMPLATE = "notifications/email/message.txt"
HTML_TEMPLATE = "notifications/email/message.html"
#: Included by the two above, each section of a message.
SECTION_TEMPLATES = (
    "notifications/email/_section.txt",
    "notifications/email/_section.html",
)

_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]+")
_NON_WHITESPACE_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def header_text(text: str, limit: int = SUBJECT_MAX) -> str:
    """`text` without line breaks or control characters, at most `limit` long."""
    text = _NON_WHITESPACE_CONTROL.sub("", _LINE_BREAKS.sub(" ", str(text)))
    text = re.sub(r"\s{2,}", " ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def site_url(path: str = "") -> str:
    return settings.SITE_URL.rstrip("/") + path


def message_id_for(delivery: Delivery) -> str:
    """`<delivery-{uuid}@{site host}>`: the same for every attempt of a delivery."""
    host = urlsplit(settings.SITE_URL).hostname or "localhost"
    return f"<delivery-{delivery.uuid}@{host}>"


def severity_label(value: str) -> str:
    try:
        return str(Severity(value).label)
    except ValueError:
        return str(value)


def status_label(value: str) -> str:
    try:
        return str(FindingStatus(value).label)
    except ValueError:
        return str(value)


def _severity_order():
    return Case(
        *[When(severity=value, then=Value(i)) for i, value in enumerate(SEVERITIES)],
        output_field=IntegerField(),
    )


#: The new-vulnerabilities list: most severe first, then by place in the code.
_FINDING_ORDER = (_severity_order(), "path", "start_line", "pk")


class FindingRow(
    namedtuple(
        "FindingRow",
        [
            "pk",
            "project_id",
            "rule_id",
            "rule_name",
            "severity",
            "path",
            "start_line",
            "start_column",
            "logical_location",
            "message",
        ],
    )
):
    """The columns of a finding that its line in an email shows (`_finding_line`),
    with the model's own `rule_label` and `location`. A batch reads hundreds of
    findings: tuples from `values_list` cost a fraction of model instances, and the
    other columns (timestamps, fingerprints, snippets) nothing."""

    __slots__ = ()
    rule_label = Finding.rule_label
    location = Finding.location


def _finding_rows(queryset) -> list[FindingRow]:
    """`queryset`'s findings (a Finding queryset, filtered and ordered) as rows."""
    return list(map(FindingRow._make, queryset.values_list(*FindingRow._fields)))


@dataclass
class FindingLine:
    rule: str
    rule_name: str
    severity: str
    severity_label: str
    location: str
    message: str
    url: str
    change: str = ""


def _finding_line(finding, links: "_ProjectLinks", labels: dict) -> FindingLine:
    severity = finding.severity
    return FindingLine(
        # "No rule" for a result that names none.
        rule=str(finding.rule_label),
        rule_name=finding.rule_name,
        severity=severity,
        # The batch's labels (`_Batch.labels`): a lazy translation made text once.
        severity_label=labels.get(severity) or severity_label(severity),
        location=finding.location,
        message=(finding.message or "")[:300],
        url=links.finding(finding.pk),
    )


class _ProjectLinks:
    """A project's addresses in emails, each reversed once: a finding's address is
    the reversed address of a placeholder id, with the finding's id put in."""

    _PLACEHOLDER = 999_999_999_999_999_999  # an id of 18 digits, as `<id:...>` takes

    def __init__(self, project):
        self.project = site_url(reverse("projects:detail", args=[project.slug]))
        self.settings = site_url(
            reverse("projects:notification_tools", args=[project.slug])
        )
        path = reverse("projects:finding", args=[project.slug, self._PLACEHOLDER])
        head, _, tail = path.rpartition(str(self._PLACEHOLDER))
        self._head, self._tail = site_url(head), tail

    def finding(self, pk: int) -> str:
        return f"{self._head}{pk}{self._tail}"


def _int_ids(values) -> list[int] | None:
    """`values` when they are all ids (ints), else None: such a list is left to the
    query of its own that it had before (the same answer, or the same error)."""
    if not isinstance(values, list) or not all(type(v) is int for v in values):
        return None
    return values


def _finding_ids(event: Event) -> list[int] | None:
    """The ids of the findings `event`'s section may list, for a batch to fetch;
    None for an event that lists none, or whose ids a batch leaves alone."""
    payload = event.payload if isinstance(event.payload, dict) else {}
    if event.kind == EventKind.NEW_VULNERABILITIES:
        return _int_ids(payload.get("finding_ids") or [])
    if event.kind == EventKind.STATUS_CHANGED:
        try:
            ids = [c.get("finding_id") for c in status_changes(payload)]
        except (AttributeError, TypeError):
            return None
        return _int_ids([i for i in ids if i is not None])
    return None


class _Findings:
    """The findings a batch's emails list: fetched by a few queries for the whole
    batch (one, usually), each in the order the new-vulnerabilities list uses, so
    that an event's top findings are its rows in query order.

    An event the batch did not fetch (too many ids, or ids that are not ints) is
    answered by the query it always had.
    """

    def __init__(self, events: Iterable[Event]):
        self.rows: dict[int, FindingRow] = {}
        #: Event pk -> {finding pk: position in its query's order}.
        self.positions: dict[int, dict[int, int]] = {}
        groups, group, size = [], [], 0
        for event in {e.pk: e for e in events}.values():
            ids = _finding_ids(event)
            if ids is None or len(ids) > BATCH_FINDING_IDS:
                continue
            if size + len(ids) > BATCH_FINDING_IDS:
                groups.append(group)
                group, size = [], 0
            group.append((event.pk, ids))
            size += len(ids)
        if group:
            groups.append(group)
        for group in groups:
            ids = {pk for _event, event_ids in group for pk in event_ids}
            rows = _finding_rows(
                Finding.objects.filter(pk_in(ids)).order_by(*_FINDING_ORDER)
            )
            position = {}
            for i, finding in enumerate(rows):
                self.rows[finding.pk] = finding
                position[finding.pk] = i
            for event_pk, _ids in group:
                self.positions[event_pk] = position

    def top(self, event: Event, project, allowed: list[str]) -> list[FindingRow]:
        """The first TOP_FINDINGS new findings of `event` at `allowed` severities."""
        ids = event.payload.get("finding_ids") or []
        position = self.positions.get(event.pk)
        if position is None:
            return _finding_rows(
                Finding.objects.filter(
                    project=project, pk__in=ids, severity__in=allowed
                ).order_by(*_FINDING_ORDER)[:TOP_FINDINGS]
            )
        found = [
            self.rows[pk]
            for pk in set(ids)
            if pk in position
            and self.rows[pk].project_id == project.pk
            and self.rows[pk].severity in allowed
        ]
        found.sort(key=lambda finding: position[finding.pk])
        return found[:TOP_FINDINGS]

    def by_id(self, event: Event, project, ids: list) -> dict[int, FindingRow]:
        """`event`'s findings among `ids`, by id."""
        if event.pk not in self.positions:
            return {
                f.pk: f
                for f in _finding_rows(
                    Finding.objects.filter(project=project, pk__in=ids)
                )
            }
        return {
            pk: self.rows[pk]
            for pk in ids
            if pk in self.rows and self.rows[pk].project_id == project.pk
        }


@dataclass
class Section:
    kind: str
    title: str = ""
    counts: list = field(default_factory=list)  # [(severity, label, n)]
    total: int = 0
    findings: list = field(default_factory=list)
    more: int = 0
    facts: list = field(default_factory=list)  # [(label, value)]
    top_severity: str = ""


def _counts_rows(counts: dict) -> list[tuple[str, str, int]]:
    return [(s, severity_label(s), counts[s]) for s in SEVERITIES if counts.get(s)]


def _new_vulnerabilities(event: Event, link, project, batch: "_Batch") -> Section:
    counts = (
        wanted_counts(link, event.payload)
        if link
        else {s: n for s, n in (event.payload.get("counts") or {}).items() if n}
    )
    total = sum(counts.values())
    allowed = severities_at_or_above(link.minimum_severity if link else "info")
    findings = batch.findings.top(event, project, allowed)
    links = batch.links(project)
    top = next((s for s in SEVERITIES if counts.get(s)), "")
    return Section(
        kind=EventKind.NEW_VULNERABILITIES,
        title=ngettext(
            "%(count)d new vulnerability", "%(count)d new vulnerabilities", total
        )
        % {"count": total},
        counts=_counts_rows(counts),
        total=total,
        findings=[_finding_line(f, links, batch.labels) for f in findings],
        more=max(0, total - len(findings)),
        top_severity=top,
    )


def _scan_completed(event: Event, project) -> Section:
    payload = event.payload
    facts = [
        (_("New"), payload.get("new", 0)),
        (_("Seen again"), payload.get("seen_again", 0)),
        (_("Resolved"), payload.get("resolved", 0)),
        (_("Re-opened"), payload.get("reopened", 0)),
    ]
    if event.scan_id:
        facts.insert(0, (_("Tool"), event.scan.tool_name))
    counts = {s: n for s, n in (payload.get("counts") or {}).items() if n}
    return Section(
        kind=EventKind.SCAN_COMPLETED,
        title=_("Scan completed"),
        facts=facts,
        counts=_counts_rows(counts),
        total=sum(counts.values()),
    )


def _status_changed(event: Event, link, project, batch: "_Batch") -> Section:
    changes = (
        wanted_changes(link, event.payload) if link else status_changes(event.payload)
    )
    by_id = batch.findings.by_id(event, project, [c.get("finding_id") for c in changes])
    found = [
        (change, by_id[change.get("finding_id")])
        for change in changes
        if change.get("finding_id") in by_id
    ]
    links = batch.links(project)
    lines = []
    for change, finding in found[:TOP_FINDINGS]:
        line = _finding_line(finding, links, batch.labels)
        line.change = _("%(from)s → %(to)s") % {
            "from": status_label(change.get("from", "")),
            "to": status_label(change.get("to", "")),
        }
        lines.append(line)
    severities = {finding.severity for _change, finding in found}
    top = next((s for s in SEVERITIES if s in severities), "")
    return Section(
        kind=EventKind.STATUS_CHANGED,
        title=ngettext(
            "%(count)d status change", "%(count)d status changes", len(found)
        )
        % {"count": len(found)},
        total=len(found),
        findings=lines,
        more=max(0, len(found) - TOP_FINDINGS),
        top_severity=top,
        facts=[("to", changes[0].get("to", ""))] if len(found) == 1 else [],
    )


def _test(event: Event, delivery: Delivery) -> Section:
    return Section(
        kind=EventKind.TEST,
        title=_("Test notification"),
        facts=[(_("Tool"), delivery.integration.provider)],
    )


class _Batch:
    """What the deliveries of a batch share, loaded once: their digests' events,
    the findings their emails list, and each project's links."""

    def __init__(self, deliveries: list[Delivery]):
        wanted = {
            pk
            for delivery in deliveries
            if delivery.is_digest
            and delivery.digest_event_ids
            and (ids := _int_ids(delivery.digest_event_ids))
            for pk in ids
        }
        self.events = (
            Event.objects.select_related("scan").in_bulk(wanted) if wanted else {}
        )
        self.findings = _Findings(
            [d.event for d in deliveries if not d.is_digest or not d.digest_event_ids]
            + list(self.events.values())
        )
        self._links: dict[int, _ProjectLinks] = {}
        #: Severity -> its label in the active language, for the finding lines.
        self.labels = {value: severity_label(value) for value in Severity.values}

    def events_of(self, delivery: Delivery) -> list[Event]:
        """The delivery's events, in order: a digest's by id, else its own."""
        if not (delivery.is_digest and delivery.digest_event_ids):
            return [delivery.event]
        ids = _int_ids(delivery.digest_event_ids)
        if ids is None:
            return list(
                Event.objects.filter(pk__in=delivery.digest_event_ids)
                .select_related("scan")
                .order_by("pk")
            )
        return [self.events[pk] for pk in sorted(set(ids)) if pk in self.events]

    def links(self, project) -> _ProjectLinks:
        if project.pk not in self._links:
            self._links[project.pk] = _ProjectLinks(project)
        return self._links[project.pk]


def _sections(delivery: Delivery, batch: _Batch) -> list[Section]:
    project, link = delivery.project, delivery.link
    sections = []
    for event in batch.events_of(delivery):
        if event.kind == EventKind.NEW_VULNERABILITIES:
            sections.append(_new_vulnerabilities(event, link, project, batch))
        elif event.kind == EventKind.SCAN_COMPLETED:
            sections.append(_scan_completed(event, project))
        elif event.kind == EventKind.STATUS_CHANGED:
            sections.append(_status_changed(event, link, project, batch))
        elif event.kind == EventKind.TEST:
            sections.append(_test(event, delivery))
    # A digest reads best with the new vulnerabilities first, the summary last.
    order = [
        EventKind.TEST,
        EventKind.NEW_VULNERABILITIES,
        EventKind.STATUS_CHANGED,
        EventKind.SCAN_COMPLETED,
    ]
    sections.sort(key=lambda s: order.index(s.kind))
    return sections


def _subject(delivery: Delivery, sections: list[Section]) -> str:
    name = delivery.project.name
    by_kind = {s.kind: s for s in sections}
    new = by_kind.get(EventKind.NEW_VULNERABILITIES)
    changed = by_kind.get(EventKind.STATUS_CHANGED)
    completed = by_kind.get(EventKind.SCAN_COMPLETED)
    prefix = (
        f"[{severity_label(new.top_severity)}] " if new and new.top_severity else ""
    )

    if EventKind.TEST in by_kind:
        return _("Test notification for %(project)s") % {"project": name}
    if len(sections) > 1:
        parts = []
        if new:
            parts.append(new.title)
        if changed:
            parts.append(changed.title)
        if completed:
            facts = dict(completed.facts)
            parts.append(_("%(n)s resolved") % {"n": facts.get(_("Resolved"), 0)})
        return prefix + _("Scan of %(project)s: %(summary)s") % {
            "project": name,
            "summary": ", ".join(str(p) for p in parts),
        }
    if new:
        return prefix + _("%(title)s in %(project)s") % {
            "title": new.title,
            "project": name,
        }
    if changed:
        if changed.total == 1 and changed.findings:
            line = changed.findings[0]
            return f"[{line.severity_label}] " + _(
                "%(rule)s is now %(status)s in %(project)s"
            ) % {
                "rule": line.rule,
                "status": status_label(dict(changed.facts).get("to", "")),
                "project": name,
            }
        return _("%(title)s in %(project)s") % {"title": changed.title, "project": name}
    if completed:
        facts = dict(completed.facts)
        return _(
            "Scan completed in %(project)s: %(new)s new, %(resolved)s resolved"
        ) % {
            "project": name,
            "new": facts.get(_("New"), 0),
            "resolved": facts.get(_("Resolved"), 0),
        }
    return _("Notification for %(project)s") % {"project": name}


TOOL_HEALTH_TEXT_TEMPLATE = "notifications/email/tool_health.txt"
TOOL_HEALTH_HTML_TEMPLATE = "notifications/email/tool_health.html"


def _tool_health_email(delivery: Delivery, *, text_part: bool = True) -> OutgoingEmail:
    """An email about a tool itself (`services.tool_health`): its words were
    written when the event was recorded."""
    payload = delivery.event.payload or {}
    subject = header_text(payload.get("subject") or delivery.subject)
    text = str(payload.get("text") or "")
    action_url = str(payload.get("action_url") or "")
    if action_url and not action_url.startswith(site_url()):
        action_url = ""  # only ever a link to this site
    context = {
        "subject": subject,
        "text": text,
        "paragraphs": [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()],
        "action_url": action_url,
        "action_label": str(payload.get("action_label") or _("Open")),
        "tools_url": site_url(reverse("integrations:notification_tools")),
    }
    return OutgoingEmail(
        to=tuple(delivery.recipients),
        subject=subject,
        text=(
            get_template(TOOL_HEALTH_TEXT_TEMPLATE).render(context) if text_part else ""
        ),
        html=get_template(TOOL_HEALTH_HTML_TEMPLATE).render(context),
        message_id=message_id_for(delivery),
        headers={
            "X-AppSec-Event": delivery.event.kind,
            "X-AppSec-Tool": header_text(str(payload.get("about") or ""), 100),
            "X-AppSec-Delivery": str(delivery.uuid),
        },
    )


def _email(
    delivery: Delivery, batch: _Batch, templates, *, text_part: bool = True
) -> OutgoingEmail:
    if delivery.event.kind == EventKind.TOOL_HEALTH:
        return _tool_health_email(delivery, text_part=text_part)
    project = delivery.project
    sections = _sections(delivery, batch)
    subject = header_text(_subject(delivery, sections))
    links = batch.links(project)
    context = {
        "subject": subject,
        "project": project,
        "project_url": links.project,
        "settings_url": links.settings,
        "sections": sections,
        "is_digest": delivery.is_digest,
    }
    text_template, html_template = templates
    return OutgoingEmail(
        to=tuple(delivery.recipients),
        subject=subject,
        text=text_template.render(context) if text_part else "",
        html=html_template.render(context),
        message_id=message_id_for(delivery),
        headers={
            "X-AppSec-Project": header_text(project.slug, 100),
            "X-AppSec-Event": delivery.event.kind,
            "X-AppSec-Delivery": str(delivery.uuid),
        },
    )


class BatchEmails:
    """A claimed batch's messages: the batch's queries made at once (one for the
    digests' events, one, usually, for the findings of every event), each message
    rendered when asked for (`render`), so that a worker renders the next message
    while the previous one is on the wire. The same bytes as `email_for`."""

    def __init__(self, deliveries: Iterable[Delivery]):
        self._batch = _Batch(list(deliveries))
        self._templates = (get_template(TEXT_TEMPLATE), get_template(HTML_TEMPLATE))

    def render(self, delivery: Delivery, *, text_part: bool = True) -> OutgoingEmail:
        """The message for `delivery`, one of the batch's; with `text_part=False`
        its HTML alone (`text` empty), for a connection that sends no other
        (`Connection.text_part`)."""
        return _email(delivery, self._batch, self._templates, text_part=text_part)


def emails_for(
    deliveries: Iterable[Delivery], *, skip_errors: bool = False
) -> dict[int, OutgoingEmail]:
    """The message for each delivery, by delivery pk, rendered from its events as
    they were recorded; the same bytes as `email_for` gives each one.

    The batch's work is done once (`BatchEmails`): its queries, one `reverse()` of
    each link per project, one template lookup. With `skip_errors`, a delivery that
    cannot be rendered (a bug) is left out instead of failing the others;
    `email_for` then raises its error.
    """
    deliveries = list(deliveries)
    batch = BatchEmails(deliveries)
    emails = {}
    for delivery in deliveries:
        try:
            emails[delivery.pk] = batch.render(delivery)
        except Exception:
            if not skip_errors:
                raise
    return emails


def email_for(delivery: Delivery) -> OutgoingEmail:
    """The message for `delivery`, rendered from its events as they were recorded."""
    return emails_for([delivery])[delivery.pk]
