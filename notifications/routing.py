"""Which events a tool link wants: pure functions of a link and an event's payload."""

from notifications.models import EventKind
from projects.models import Severity

SEVERITIES = list(Severity.values)  # most severe first


def severities_at_or_above(minimum: str) -> list[str]:
    """["critical", "high"] for "high"; every severity for an unknown value."""
    if minimum not in SEVERITIES:
        return SEVERITIES
    return SEVERITIES[: SEVERITIES.index(minimum) + 1]


def status_changes(payload: dict) -> list[dict]:
    """A STATUS_CHANGED payload as a list of {"finding_id", "from", "to"}."""
    if "changes" in payload:
        return list(payload.get("changes") or [])
    if "finding_id" in payload:
        return [
            {
                "finding_id": payload["finding_id"],
                "from": payload.get("from", ""),
                "to": payload.get("to", ""),
            }
        ]
    return []


def wanted_changes(link, payload: dict) -> list[dict]:
    """The status changes of `payload` that `link` wants to hear about."""
    changes = status_changes(payload)
    if link.status_transitions:
        allowed = set(link.status_transitions)
        changes = [c for c in changes if c.get("to") in allowed]
    return changes


def wanted_counts(link, payload: dict) -> dict[str, int]:
    """NEW_VULNERABILITIES counts by severity, only at or above the link's minimum."""
    counts = payload.get("counts") or {}
    return {
        severity: int(counts.get(severity) or 0)
        for severity in severities_at_or_above(link.minimum_severity)
        if counts.get(severity)
    }


def link_wants(link, kind: str, payload: dict) -> bool:
    """Whether an event of `kind` with `payload` produces an email through `link`."""
    if kind == EventKind.NEW_VULNERABILITIES:
        return link.notify_new_vulnerabilities and bool(wanted_counts(link, payload))
    if kind == EventKind.SCAN_COMPLETED:
        return link.notify_scan_completed
    if kind == EventKind.STATUS_CHANGED:
        return link.notify_status_changed and bool(wanted_changes(link, payload))
    return False
