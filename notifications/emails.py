"""Render a delivery into an `OutgoingEmail`: subject, plain text and HTML.

Everything that came from a scan (rule ids, paths, messages, project names) is
untrusted: the HTML part relies on Django's autoescaping, and the subject is reduced
to one line, since a CR or LF there would start a new header.
"""

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import Case, IntegerField, Value, When
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from integrations.providers.base import OutgoingEmail
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


def _finding_line(finding, project) -> FindingLine:
    return FindingLine(
        # "No rule" for a result that names none.
        rule=str(finding.rule_label),
        rule_name=finding.rule_name,
        severity=finding.severity,
        severity_label=severity_label(finding.severity),
        location=finding.location,
        message=(finding.message or "")[:300],
        url=site_url(reverse("projects:finding", args=[project.slug, finding.pk])),
    )


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


def _new_vulnerabilities(event: Event, link, project) -> Section:
    counts = (
        wanted_counts(link, event.payload)
        if link
        else {s: n for s, n in (event.payload.get("counts") or {}).items() if n}
    )
    total = sum(counts.values())
    allowed = severities_at_or_above(link.minimum_severity if link else "info")
    findings = list(
        Finding.objects.filter(
            project=project,
            pk__in=event.payload.get("finding_ids") or [],
            severity__in=allowed,
        ).order_by(_severity_order(), "path", "start_line", "pk")[:TOP_FINDINGS]
    )
    top = next((s for s in SEVERITIES if counts.get(s)), "")
    return Section(
        kind=EventKind.NEW_VULNERABILITIES,
        title=ngettext(
            "%(count)d new vulnerability", "%(count)d new vulnerabilities", total
        )
        % {"count": total},
        counts=_counts_rows(counts),
        total=total,
        findings=[_finding_line(f, project) for f in findings],
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


def _status_changed(event: Event, link, project) -> Section:
    changes = (
        wanted_changes(link, event.payload) if link else status_changes(event.payload)
    )
    by_id = {
        f.pk: f
        for f in Finding.objects.filter(
            project=project, pk__in=[c.get("finding_id") for c in changes]
        )
    }
    lines = []
    for change in changes:
        finding = by_id.get(change.get("finding_id"))
        if finding is None:
            continue
        line = _finding_line(finding, project)
        line.change = _("%(from)s → %(to)s") % {
            "from": status_label(change.get("from", "")),
            "to": status_label(change.get("to", "")),
        }
        lines.append(line)
    top = next((s for s in SEVERITIES if any(x.severity == s for x in lines)), "")
    return Section(
        kind=EventKind.STATUS_CHANGED,
        title=ngettext(
            "%(count)d status change", "%(count)d status changes", len(lines)
        )
        % {"count": len(lines)},
        total=len(lines),
        findings=lines[:TOP_FINDINGS],
        more=max(0, len(lines) - TOP_FINDINGS),
        top_severity=top,
        facts=[("to", changes[0].get("to", ""))] if len(lines) == 1 else [],
    )


def _test(event: Event, delivery: Delivery) -> Section:
    return Section(
        kind=EventKind.TEST,
        title=_("Test notification"),
        facts=[(_("Tool"), delivery.integration.provider)],
    )


def _sections(delivery: Delivery) -> list[Section]:
    project, link = delivery.project, delivery.link
    if delivery.is_digest and delivery.digest_event_ids:
        events = list(
            Event.objects.filter(pk__in=delivery.digest_event_ids)
            .select_related("scan")
            .order_by("pk")
        )
    else:
        events = [delivery.event]
    sections = []
    for event in events:
        if event.kind == EventKind.NEW_VULNERABILITIES:
            sections.append(_new_vulnerabilities(event, link, project))
        elif event.kind == EventKind.SCAN_COMPLETED:
            sections.append(_scan_completed(event, project))
        elif event.kind == EventKind.STATUS_CHANGED:
            sections.append(_status_changed(event, link, project))
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


def email_for(delivery: Delivery) -> OutgoingEmail:
    """The message for `delivery`, rendered from its events as they were recorded."""
    project = delivery.project
    sections = _sections(delivery)
    subject = header_text(_subject(delivery, sections))
    context = {
        "subject": subject,
        "project": project,
        "project_url": site_url(reverse("projects:detail", args=[project.slug])),
        "settings_url": site_url(
            reverse("projects:notification_tools", args=[project.slug])
        ),
        "sections": sections,
        "is_digest": delivery.is_digest,
    }
    return OutgoingEmail(
        to=tuple(delivery.recipients),
        subject=subject,
        text=render_to_string("notifications/email/message.txt", context),
        html=render_to_string("notifications/email/message.html", context),
        message_id=message_id_for(delivery),
        headers={
            "X-AppSec-Project": header_text(project.slug, 100),
            "X-AppSec-Event": delivery.event.kind,
            "X-AppSec-Delivery": str(delivery.uuid),
        },
    )
