"""Writes for projects: creation, membership, API tokens, scan imports, statuses."""

from __future__ import annotations

import hashlib
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import timedelta
from typing import IO

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.text import slugify
from django.utils.translation import gettext as _

from integrations.models import AuditAction
from integrations.services.audit import audit_record
from integrations.text import single_line
from notifications.models import EventKind
from notifications.services import event_emit
from operations import metrics
from projects.access import TokenStatus, api_token_state, project_access
from projects.bulk import ImportStage
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
    ScanStatus,
    Severity,
)
from projects.sarif import SarifRun, sarif_open
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


def _project_audit(*, project: Project, action: AuditAction, actor, detail: str):
    audit_record(
        provider_key="",
        action=action,
        actor=actor,
        subject=f"project:{project.slug}",
        detail=single_line(detail, 500),
    )


# Every membership change goes through these two functions (the settings page, the
# admin's inline), so that each is audited. Tokens follow at once: see
# projects.access.api_token_state.


@transaction.atomic
def membership_set(*, project: Project, user, role: str, actor=None) -> Membership:
    """Make `user` an owner or member of `project` (adding or changing the role).

    Audited as "member added" or "member role changed"; setting the role a member
    has already changes nothing. Lowering an owner to member disables the API
    tokens they created at once.
    """
    if role not in Role.values:
        raise MembershipError(_("Choose Owner or Member as the role."))
    if not user.is_active:
        raise MembershipError(
            _("%(user)s is deactivated and cannot join a project.") % {"user": user}
        )
    membership, created = Membership.objects.select_for_update().get_or_create(
        project=project, user=user, defaults={"role": role}
    )
    name = user.get_username()
    if created:
        _project_audit(
            project=project,
            action=AuditAction.MEMBER_ADDED,
            actor=actor,
            detail=f"{name}: added as {role}",
        )
    elif membership.role != role:
        before = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        _project_audit(
            project=project,
            action=AuditAction.MEMBER_ROLE_CHANGED,
            actor=actor,
            detail=f"{name}: {before} → {role}",
        )
    return membership


@transaction.atomic
def membership_remove(*, project: Project, user, actor=None) -> None:
    """Take `user` out of `project`. Their past actions stay recorded; the API tokens
    they created stop working at once. Audited as "member removed"."""
    membership = (
        Membership.objects.select_for_update()
        .filter(project=project, user=user)
        .first()
    )
    if membership is None:
        return
    membership.delete()
    _project_audit(
        project=project,
        action=AuditAction.MEMBER_REMOVED,
        actor=actor,
        detail=f"{user.get_username()}: removed (was {membership.role})",
    )


# -- API tokens -----------------------------------------------------------------


def _token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _token_detail(token: ApiToken) -> str:
    return f"token {token.prefix} ({token.name})"


@transaction.atomic
def api_token_create(
    *, project: Project, name: str, actor, expires_in_days: int | None = None
) -> tuple[ApiToken, str]:
    """Create a token for `project`. Returns the row and the raw token, shown once.

    The token acts with `actor`'s access, as it is at each request: `actor` must
    manage the project (an owner or a security admin). It expires after
    `expires_in_days` (default: API_TOKEN_DEFAULT_DAYS; 0: never). Audited.
    """
    name = single_line(name, 1000)
    if not name:
        raise ProjectError(_("Give the token a name, e.g. the CI pipeline using it."))
    if actor is None or not project_access(user=actor, project=project).can_manage:
        raise ProjectError(
            _("Only an owner of the project or a security admin can create tokens.")
        )
    if expires_in_days is None:
        expires_in_days = settings.API_TOKEN_DEFAULT_DAYS
    if type(expires_in_days) is not int or not 0 <= expires_in_days <= 3650:
        raise ProjectError(
            _("Choose an expiry from 1 to 3650 days, or no expiry."),
            code="invalid_expiry",
        )
    now = timezone.now()
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        project=project,
        name=name[:100],
        prefix=raw[:TOKEN_PREFIX_SHOWN],
        token_hash=_token_hash(raw),
        created_by=actor,
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    _project_audit(
        project=project,
        action=AuditAction.TOKEN_CREATED,
        actor=actor,
        detail=_token_detail(token),
    )
    return token, raw


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor=None) -> ApiToken:
    """Revoke `token` for good. Revoking twice keeps the first time. Audited."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        _project_audit(
            project=token.project,
            action=AuditAction.TOKEN_REVOKED,
            actor=actor,
            detail=_token_detail(token),
        )
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
        ApiToken.objects.select_related("project", "created_by")
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
    now = timezone.now()
    # Decided now, from the creator's account and membership as they are.
    state = api_token_state(token=token, now=now)
    if state.status == TokenStatus.REVOKED:
        raise TokenError(
            _("The token was revoked. Create a new one in the project's Settings."),
            code="token_revoked",
        )
    if state.status == TokenStatus.EXPIRED:
        raise TokenError(
            _(
                "The token expired on %(when)s. Create a new one in the project's "
                "Settings › API tokens."
            )
            % {"when": token.expires_at.isoformat(timespec="seconds")},
            code="token_expired",
        )
    if state.status == TokenStatus.DISABLED:
        raise TokenError(
            _(
                "The token is disabled: %(reason)s A token acts with its creator's "
                "current access; an owner of the project can create a new one."
            )
            % {"reason": state.reason},
            code="token_disabled",
        )
    if (
        token.last_used_at is None
        or now - token.last_used_at > TOKEN_LAST_USED_RESOLUTION
    ):
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


# -- scan import ------------------------------------------------------------------

# An import's `progress` callback is called after this many results, and at the end.
PROGRESS_EVERY = 1000
MAX_CATEGORY = 255
MAX_TOOL_NOTIFICATIONS = 20
# Unseekable input (stdin) up to this size is spooled in memory, beyond it to a file.
SPOOL_IN_MEMORY = 8 * 1024 * 1024


def _severity_counts(counts: dict[str, int]) -> dict[str, int]:
    return {severity: counts.get(severity, 0) for severity in Severity.values}


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _too_large(size: int, limit: int) -> SarifTooLarge:
    return SarifTooLarge(
        _(
            "The file is %(size)s; the limit is %(limit)s. Import fewer results "
            "per file (e.g. one per tool or per directory) or raise "
            "SARIF_MAX_BYTES."
        )
        % {"size": _megabytes(size), "limit": _megabytes(limit)}
    )


@contextmanager
def _sarif_source(sarif, limit: int):
    """`sarif` as sarif_open() takes it, after checking its size against `limit`
    without reading it. A stream that cannot seek (stdin) is spooled first."""
    if isinstance(sarif, (bytes, bytearray, memoryview)):
        if len(sarif) > limit:
            raise _too_large(len(sarif), limit)
        yield sarif
    elif isinstance(sarif, (str, os.PathLike)):
        try:
            size = os.path.getsize(sarif)
        except OSError:
            size = 0  # sarif_open says what is wrong with the path
        if size > limit:
            raise _too_large(size, limit)
        yield sarif
    elif hasattr(sarif, "read"):
        size = getattr(sarif, "size", None)  # Django's UploadedFile knows it
        seekable = getattr(sarif, "seekable", lambda: True)()
        if seekable and not isinstance(size, int):
            start = sarif.tell()
            size = sarif.seek(0, os.SEEK_END) - start
            sarif.seek(start)
        if seekable:
            if size > limit:
                raise _too_large(size, limit)
            yield sarif
            return
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            copied = 0
            while chunk := sarif.read(64 * 1024):
                copied += len(chunk)
                if copied > limit:
                    raise _too_large(copied, limit)
                spool.write(chunk)
            spool.seek(0)
            yield spool
    else:
        raise TypeError("sarif must be bytes, a path or a binary file")


def scan_category_clean(*, category: str) -> str:
    """`category` stripped; ProjectError (code invalid_category) unless it is at
    most MAX_CATEGORY printable characters. The upload form and the API check it
    with this before queueing a file; scan_import checks it again."""
    category = (category or "").strip()
    if len(category) > MAX_CATEGORY or not category.isprintable():
        raise ProjectError(
            _(
                "The category must be at most %(max)s printable characters (no "
                "tabs, line breaks or control characters), e.g. "
                "“codeql-javascript”."
            )
            % {"max": MAX_CATEGORY},
            code="invalid_category",
        )
    return category


def _staged(results, progress) -> Iterator[tuple]:
    """The rows ImportStage.fill() takes, numbered in file order."""
    done = 0
    for done, r in enumerate(results, 1):
        yield (
            done,
            r.identity,
            r.tool_name,
            r.category,
            r.rule_id,
            r.rule_name,
            r.message,
            r.severity,
            r.path,
            r.start_line,
            r.start_column,
            r.logical_location,
        )
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(done)
    if progress is not None:
        progress(done)


def _joined(values, limit: int) -> str:
    return ", ".join(dict.fromkeys(v for v in values if v))[:limit]


def scan_import(
    *,
    project: Project,
    sarif: bytes | str | os.PathLike | IO[bytes],
    source: str = ScanSource.UPLOAD,
    actor=None,
    category: str = "",
    scan: Scan | None = None,
    progress: Callable[[int], None] | None = None,
) -> Scan:
    """Import a SARIF 2.1.0 report into `project` and return its Scan.

    `sarif` is bytes, a path, or a binary file. `category`, when given, is the
    category of every run (else each run's automationDetails.id gives its own). With
    `scan`, a queued Scan of `project`, that row is filled in instead of a new one.
    `progress`, if given, is called with the number of results read so far (it
    must not use the database: it runs while the results are being staged).

    The file is checked (size, JSON, SARIF structure) before anything is written: a
    SarifError says what to fix. The results are then streamed into a temporary table
    and compared with the project's findings in a fixed number of statements
    (projects/bulk.py), in one transaction with the events they cause: a failure
    leaves neither half a scan nor its events (a given `scan` stays as it was, for
    the caller to mark failed).

    A scan replaces the earlier results of its tool and category only: their active
    findings it does not report are resolved, unless the run was incomplete (failed,
    or `results` null), which resolves nothing. Identical results are one finding
    that records how many times it occurred.
    """
    if source not in ScanSource.values:
        raise ValueError(f"unknown scan source {source!r}")
    if scan is not None and scan.project_id != project.pk:
        raise ValueError("the scan belongs to another project")
    category = scan_category_clean(category=category)
    started = timezone.now()
    with _sarif_source(sarif, settings.SARIF_MAX_BYTES) as readable:
        document = sarif_open(readable, category=category)
        if not document.runs:
            raise SarifError(
                _("The file has no runs: there is no tool and no result to import.")
            )
        with ImportStage() as stage:
            # Read and staged before the import's transaction, so that parsing a
            # large file holds no lock; inside a caller's transaction, a savepoint
            # keeps a failure here from breaking it.
            with transaction.atomic() if connection.in_atomic_block else nullcontext():
                stage.fill(_staged(document.results(), progress))
            return _scan_record(
                project=project,
                runs=document.runs,
                stage=stage,
                source=source,
                actor=actor,
                scan=scan,
                started=started,
            )


@transaction.atomic
def _scan_record(
    *,
    project: Project,
    runs: list[SarifRun],
    stage: ImportStage,
    source: str,
    actor,
    scan: Scan | None,
    started,
) -> Scan:
    # One import per project at a time (a no-op on SQLite, whose writes are serial).
    Project.objects.select_for_update().filter(pk=project.pk).exists()
    now = timezone.now()
    incomplete = {(run.tool_name, run.category) for run in runs if not run.complete}
    # Only a complete run proves that what it does not report is gone.
    scopes = sorted(
        {(run.tool_name, run.category) for run in runs if run.complete} - incomplete
    )
    described = {
        "tool_name": _joined((run.tool_name for run in runs), 200),
        "tool_version": _joined((run.tool_version for run in runs), 100),
        "category": _joined((run.category for run in runs), MAX_CATEGORY),
        "incomplete": bool(incomplete),
        "tool_notifications": [
            {"tool": run.tool_name, "category": run.category, "message": message}
            for run in runs
            for message in run.notifications
        ][:MAX_TOOL_NOTIFICATIONS],
    }
    if scan is None:
        # Its findings and events refer to it; its counts are filled in last.
        scan = Scan.objects.create(
            project=project,
            source=source,
            created_by=actor,
            status=ScanStatus.COMPLETE,
            started_at=started,
            **described,
        )

    stage.classify(project_id=project.pk)
    try:
        stage.insert_new(project_id=project.pk, scan_id=scan.pk, now=now)
    except IntegrityError:
        raise SarifError(
            _("Another import of this project changed its findings. Try again.")
        ) from None
    stage.update_seen(project_id=project.pk, scan_id=scan.pk, now=now)
    stage.record_status_changes(
        project_id=project.pk,
        scan_id=scan.pk,
        scopes=scopes,
        resolvable=sorted(ACTIVE_STATUSES),
        now=now,
    )
    stage.resolve_recorded(scan_id=scan.pk, now=now)

    totals = stage.totals()
    new_ids = list(
        Finding.objects.filter(first_seen_scan=scan)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    changes = [
        {"finding_id": finding_id, "from": from_status, "to": to_status}
        for finding_id, from_status, to_status in FindingStatusChange.objects.filter(
            scan=scan
        )
        .order_by("pk")
        .values_list("finding_id", "from_status", "to_status")
    ]
    reopened_ids = [c["finding_id"] for c in changes if c["to"] == "reopened"]
    counts = {
        "new_count": sum(new for _s, _n, _r, new, _o in totals),
        "reopened_count": len(reopened_ids),
        "resolved_count": len(changes) - len(reopened_ids),
        "duplicate_count": sum(r - n for _s, n, r, _new, _o in totals),
    }
    counts["seen_again_count"] = (
        sum(n for _s, n, _r, _new, _o in totals)
        - counts["new_count"]
        - counts["reopened_count"]
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
                    {s: new + reopened for s, _n, _r, new, reopened in totals}
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
            "new": counts["new_count"],
            "seen_again": counts["seen_again_count"],
            "resolved": counts["resolved_count"],
            "reopened": counts["reopened_count"],
            "duplicates": counts["duplicate_count"],
            "category": described["category"],
            "incomplete": described["incomplete"],
            "counts": _severity_counts({s: n for s, n, _r, _new, _o in totals}),
        },
    )

    finished = {
        **described,
        **counts,
        "status": ScanStatus.COMPLETE,
        "error": "",
        "started_at": scan.started_at or started,
        "finished_at": timezone.now(),
    }
    Scan.objects.filter(pk=scan.pk).update(**finished)
    for name, value in finished.items():
        setattr(scan, name, value)
    metrics.scan_imported(source=source, findings_created=counts["new_count"])
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
