"""Writes for projects: creation, membership, API tokens, scan imports, statuses."""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from datetime import timedelta
from typing import IO

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from notifications.models import EventKind
from notifications.services import event_emit
from projects.bulk import ids_update, rows_insert
from projects.exceptions import (
    MembershipError,
    ProjectError,
    SarifError,
    SarifTooLarge,
    StatusTransitionError,
    TokenError,
)
from projects.models import (
    ApiToken,
    Finding,
    FindingStatus,
    FindingStatusChange,
    Membership,
    Project,
    Role,
    Scan,
    ScanSource,
    Severity,
)
from projects.sarif import SarifReport, sarif_parse
from projects.workflow import ACTIVE_STATUSES, next_statuses

# Tokens look like "m365as_<43 url-safe characters>"; the fixed prefix lets secret
# scanners recognise a leaked one.
TOKEN_PREFIX = "m365as_"
TOKEN_PREFIX_SHOWN = len(TOKEN_PREFIX) + 6
# last_used_at is written at most this often per token.
TOKEN_LAST_USED_RESOLUTION = timedelta(minutes=1)


# -- projects and members ---------------------------------------------------------


@transaction.atomic
def project_create(*, name: str, slug: str = "") -> Project:
    """Create a project. An empty `slug` is made from the name."""
    name = name.strip()
    if not name:
        raise ProjectError(_("Give the project a name."))
    slug = slugify(slug or name)[:100]
    if not slug:
        raise ProjectError(
            _("Give the project a slug of letters, numbers, hyphens or underscores.")
        )
    if Project.objects.filter(slug=slug).exists():
        raise ProjectError(
            _('A project with the slug "%(slug)s" exists already. Choose another.')
            % {"slug": slug}
        )
    return Project.objects.create(name=name, slug=slug)


@transaction.atomic
def membership_set(*, project: Project, user, role: str) -> Membership:
    """Make `user` an owner or member of `project` (adding or changing the role)."""
    if role not in Role.values:
        raise MembershipError(_("Choose Owner or Member as the role."))
    if not user.is_active:
        raise MembershipError(
            _("%(user)s is deactivated and cannot join a project.") % {"user": user}
        )
    membership, _created = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership


@transaction.atomic
def membership_remove(*, project: Project, user) -> None:
    """Take `user` out of `project`. Their past actions stay recorded."""
    Membership.objects.filter(project=project, user=user).delete()


# -- API tokens -----------------------------------------------------------------


def _token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@transaction.atomic
def api_token_create(
    *, project: Project, name: str, actor=None
) -> tuple[ApiToken, str]:
    """Create a token for `project`. Returns the row and the raw token, shown once."""
    name = name.strip()
    if not name:
        raise ProjectError(_("Give the token a name, e.g. the CI pipeline using it."))
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        project=project,
        name=name[:100],
        prefix=raw[:TOKEN_PREFIX_SHOWN],
        token_hash=_token_hash(raw),
        created_by=actor,
    )
    return token, raw


@transaction.atomic
def api_token_revoke(*, token: ApiToken) -> ApiToken:
    """Revoke `token` for good. Revoking twice keeps the first time."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def api_token_authenticate(*, authorization: str | None) -> ApiToken:
    """Find the active token in an `Authorization: Bearer <token>` header value.

    Records when it was used (at most once a minute). Raises TokenError.
    """
    if not authorization:
        raise TokenError(
            _("Send the project token as an 'Authorization: Bearer <token>' header."),
            code="token_missing",
        )
    scheme, _sep, raw = authorization.strip().partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw:
        raise TokenError(
            _("Use the Bearer scheme: 'Authorization: Bearer <token>'."),
            code="token_missing",
        )
    token = (
        ApiToken.objects.select_related("project")
        .filter(token_hash=_token_hash(raw))
        .first()
    )
    if token is None:
        raise TokenError(
            _(
                "The token is not valid. Create one in the project's "
                "Settings › API tokens."
            ),
            code="token_invalid",
        )
    if token.revoked_at is not None:
        raise TokenError(
            _("The token was revoked. Create a new one in the project's Settings."),
            code="token_revoked",
        )
    now = timezone.now()
    if (
        token.last_used_at is None
        or now - token.last_used_at > TOKEN_LAST_USED_RESOLUTION
    ):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


# -- scan import ------------------------------------------------------------------


def _severity_counts(severities) -> dict[str, int]:
    counter = Counter(severities)
    return {severity: counter.get(severity, 0) for severity in Severity.values}


def _sarif_bytes(sarif, limit: int) -> bytes:
    def too_large(size):
        return SarifTooLarge(
            _(
                "The file is %(size)s; the limit is %(limit)s. Import fewer results "
                "per file (e.g. one per tool or per directory) or raise "
                "SARIF_MAX_BYTES."
            )
            % {"size": _megabytes(size), "limit": _megabytes(limit)}
        )

    if isinstance(sarif, str):
        data = sarif.encode("utf-8")
    elif isinstance(sarif, (bytes, bytearray, memoryview)):
        data = bytes(sarif)
    elif hasattr(sarif, "read"):
        size = getattr(sarif, "size", None)
        if isinstance(size, int) and size > limit:
            raise too_large(size)
        data = sarif.read(limit + 1)
        if isinstance(data, str):
            data = data.encode("utf-8")
    else:
        raise TypeError("sarif must be bytes, str or a binary file")
    if len(data) > limit:
        raise too_large(len(data))
    return data


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def scan_import(
    *,
    project: Project,
    sarif: bytes | IO[bytes],
    source: str = ScanSource.UPLOAD,
    actor=None,
) -> Scan:
    """Import a SARIF 2.1.0 report into `project` and return the new Scan.

    Validation (size, JSON, version, structure) happens first and writes nothing:
    a SarifError says what to fix. The writes then happen in one transaction with
    the events they cause, so a failure leaves neither half a scan nor its events.
    See projects/sarif.py for fingerprints and severities.
    """
    if source not in ScanSource.values:
        raise ValueError(f"unknown scan source {source!r}")
    limit = settings.SARIF_MAX_BYTES
    # Parsed outside the transaction: a large file should not hold the write lock.
    report = sarif_parse(_sarif_bytes(sarif, limit))
    if not report.runs:
        raise SarifError(
            _("The file has no runs: there is no tool and no result to import.")
        )
    return _scan_record(project=project, report=report, source=source, actor=actor)


@transaction.atomic
def _scan_record(*, project: Project, report: SarifReport, source: str, actor) -> Scan:
    # One import per project at a time (a no-op on SQLite, whose writes are serial).
    Project.objects.select_for_update().filter(pk=project.pk).exists()
    now = timezone.now()
    tools = set(report.tool_names)

    # The only read of existing findings: one query, whatever the size.
    existing = {
        fingerprint: (pk, status, tool_name)
        for fingerprint, pk, status, tool_name in Finding.objects.filter(
            project=project
        ).values_list("fingerprint", "pk", "status", "tool_name")
    }
    new_rows, seen_ids, reopened_ids = [], [], []
    reopened_severity = []
    for result in report.results:
        known = existing.get(result.fingerprint)
        if known is None:
            new_rows.append(
                {
                    "tool_name": result.tool_name,
                    "fingerprint": result.fingerprint,
                    "rule_id": result.rule_id,
                    "rule_name": result.rule_name,
                    "message": result.message,
                    "severity": result.severity,
                    "path": result.path,
                    "start_line": result.start_line,
                }
            )
        elif known[1] == FindingStatus.RESOLVED:
            reopened_ids.append(known[0])
            reopened_severity.append(result.severity)
        else:
            seen_ids.append(known[0])
    reported = {result.fingerprint for result in report.results}
    resolved = [
        (pk, status)
        for fingerprint, (pk, status, tool_name) in existing.items()
        if tool_name in tools
        and status in ACTIVE_STATUSES
        and fingerprint not in reported
    ]

    scan = Scan.objects.create(
        project=project,
        tool_name=", ".join(report.tool_names)[:200],
        tool_version=", ".join(
            dict.fromkeys(run.tool_version for run in report.runs if run.tool_version)
        )[:100],
        source=source,
        created_by=actor,
        new_count=len(new_rows),
        seen_again_count=len(seen_ids),
        resolved_count=len(resolved),
        reopened_count=len(reopened_ids),
    )
    try:
        rows_insert(
            Finding,
            new_rows,
            constants={
                "project": project,
                "status": FindingStatus.OPEN,
                "first_seen_scan": scan,
                "last_seen_scan": scan,
                "created_at": now,
                "updated_at": now,
            },
        )
    except IntegrityError:
        raise SarifError(
            _("Another import of this project changed its findings. Try again.")
        ) from None
    new_ids = (
        list(
            Finding.objects.filter(project=project, first_seen_scan=scan)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if new_rows
        else []
    )
    ids_update(Finding.objects, seen_ids, last_seen_scan=scan, updated_at=now)
    ids_update(
        Finding.objects,
        reopened_ids,
        status=FindingStatus.REOPENED,
        last_seen_scan=scan,
        updated_at=now,
    )
    ids_update(
        Finding.objects,
        [pk for pk, _status in resolved],
        status=FindingStatus.RESOLVED,
        updated_at=now,
    )
    changes = [
        {"finding_id": pk, "from": "resolved", "to": "reopened"} for pk in reopened_ids
    ] + [
        {"finding_id": pk, "from": status, "to": "resolved"} for pk, status in resolved
    ]
    rows_insert(
        FindingStatusChange,
        [
            {
                "finding_id": c["finding_id"],
                "from_status": c["from"],
                "to_status": c["to"],
            }
            for c in changes
        ],
        constants={"scan": scan, "actor": None, "created_at": now},
    )

    if new_ids or reopened_ids:
        event_emit(
            project=project,
            kind=EventKind.NEW_VULNERABILITIES,
            scan=scan,
            actor=actor,
            payload={
                "finding_ids": new_ids + reopened_ids,
                "counts": _severity_counts(
                    [row["severity"] for row in new_rows] + reopened_severity
                ),
            },
        )
    if changes:
        event_emit(
            project=project,
            kind=EventKind.STATUS_CHANGED,
            scan=scan,
            actor=None,
            payload={"changes": changes},
        )
    event_emit(
        project=project,
        kind=EventKind.SCAN_COMPLETED,
        scan=scan,
        actor=actor,
        payload={
            "scan_id": scan.pk,
            "new": scan.new_count,
            "seen_again": scan.seen_again_count,
            "resolved": scan.resolved_count,
            "reopened": scan.reopened_count,
            "counts": _severity_counts(result.severity for result in report.results),
        },
    )
    return scan


# -- finding status ---------------------------------------------------------------


@transaction.atomic
def finding_status_change(*, finding: Finding, status: str, actor) -> Finding:
    """Move `finding` to `status` by hand, record it, and emit STATUS_CHANGED."""
    if status not in FindingStatus.values:
        raise StatusTransitionError(
            _('"%(status)s" is not a status. Use one of: %(choices)s.')
            % {"status": str(status)[:40], "choices": ", ".join(FindingStatus.values)}
        )
    locked = Finding.objects.select_for_update().get(pk=finding.pk)
    current = locked.status
    if status == current:
        raise StatusTransitionError(
            _("The finding is %(status)s already.")
            % {"status": FindingStatus(current).label}
        )
    allowed = next_statuses(current)
    if status not in allowed:
        raise StatusTransitionError(
            _("A finding that is %(current)s can be moved to: %(allowed)s.")
            % {
                "current": FindingStatus(current).label,
                "allowed": ", ".join(str(FindingStatus(s).label) for s in allowed),
            }
        )
    locked.status = status
    locked.save(update_fields=["status", "updated_at"])
    FindingStatusChange.objects.create(
        finding=locked, from_status=current, to_status=status, actor=actor
    )
    event_emit(
        project=locked.project,
        kind=EventKind.STATUS_CHANGED,
        actor=actor,
        payload={"finding_id": locked.pk, "from": str(current), "to": str(status)},
    )
    finding.status = locked.status
    finding.updated_at = locked.updated_at
    return finding
