"""`email_for` as it was before emails were rendered a batch at a time: one delivery
at a time, its own queries (a digest's events, each event's findings), a `reverse()`
per finding, `render_to_string` per template. The reference the batch path must
match byte for byte.

Only what the batch path changed is kept here; the parts it left alone (subject,
sections' wording, headers) are imported, so both follow any later change to them.

The templates are rendered as they were too: `reference_templates/` holds the email
templates in the Django template language, as they were before they moved to Jinja2
(`notifications/email_templates.py`), rendered by a Django engine of their own. So
the comparison also pins that the Jinja2 rendering gives the same bytes.
"""

from functools import cache
from pathlib import Path

from django.template import Context, Engine
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from integrations.providers.base import OutgoingEmail
from notifications.emails import (
    TOP_FINDINGS,
    FindingLine,
    Section,
    _counts_rows,
    _scan_completed,
    _severity_order,
    _subject,
    _test,
    header_text,
    message_id_for,
    severity_label,
    site_url,
    status_label,
)
from notifications.models import Event, EventKind
from notifications.routing import (
    SEVERITIES,
    severities_at_or_above,
    status_changes,
    wanted_changes,
    wanted_counts,
)
from projects.models import Finding


def _finding_line(finding, project) -> FindingLine:
    return FindingLine(
        rule=str(finding.rule_label),
        rule_name=finding.rule_name,
        severity=finding.severity,
        severity_label=severity_label(finding.severity),
        location=finding.location,
        message=(finding.message or "")[:300],
        url=site_url(reverse("projects:finding", args=[project.slug, finding.pk])),
    )


def _new_vulnerabilities(event, link, project) -> Section:
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


def _status_changed(event, link, project) -> Section:
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


def _sections(delivery) -> list[Section]:
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
    order = [
        EventKind.TEST,
        EventKind.NEW_VULNERABILITIES,
        EventKind.STATUS_CHANGED,
        EventKind.SCAN_COMPLETED,
    ]
    sections.sort(key=lambda s: order.index(s.kind))
    return sections


REFERENCE_TEMPLATES = Path(__file__).resolve().parent / "reference_templates"


@cache
def _engine() -> Engine:
    return Engine(
        dirs=[str(REFERENCE_TEMPLATES)],
        libraries={"i18n": "django.templatetags.i18n"},
    )


def render_to_string(name: str, context: dict) -> str:
    """`name` from the reference templates, in the Django template language."""
    return _engine().get_template(name).render(Context(context))


def reference_email_for(delivery) -> OutgoingEmail:
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
