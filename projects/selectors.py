"""Reads for projects, always scoped to what the user may see (`projects.access`
says what that is)."""

from __future__ import annotations

from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.utils import timezone

from integrations.permissions import is_security_admin
from projects.access import api_token_state, project_access
from projects.models import (
    ApiToken,
    Finding,
    FindingStatus,
    FindingStatusChange,
    Membership,
    Project,
    Scan,
    Severity,
)
from projects.workflow import next_statuses


def projects_for_user(*, user) -> QuerySet[Project]:
    """The projects `user` may see: all for security admins, else their own."""
    if not user.is_authenticated:
        return Project.objects.none()
    if is_security_admin(user):
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user).distinct()


def findings_for_project(
    *, project: Project, status: str | None = None, severity: str | None = None
) -> QuerySet[Finding]:
    """Findings of `project`, most severe first; unknown filter values are ignored."""
    findings = Finding.objects.filter(project=project)
    if status in FindingStatus.values:
        findings = findings.filter(status=status)
    if severity in Severity.values:
        findings = findings.filter(severity=severity)
    return findings.order_by(_severity_order(), "path", "start_line", "pk")


def _severity_order():
    return Case(
        *[
            When(severity=value, then=Value(i))
            for i, value in enumerate(Severity.values)
        ],
        output_field=IntegerField(),
    )


def finding_get(*, project: Project, finding_id) -> Finding:
    """A finding of `project`; Finding.DoesNotExist for another project's finding."""
    return Finding.objects.select_related("first_seen_scan", "last_seen_scan").get(
        project=project, pk=finding_id
    )


def finding_history(*, finding: Finding) -> QuerySet[FindingStatusChange]:
    return finding.status_changes.select_related("actor", "scan")


def finding_next_statuses(*, finding: Finding) -> list[tuple[str, str]]:
    """(value, label) pairs a person may move the finding to."""
    return [(s, FindingStatus(s).label) for s in next_statuses(finding.status)]


def scans_for_project(*, project: Project) -> QuerySet[Scan]:
    return Scan.objects.filter(project=project).select_related("created_by")


def scan_get(*, project: Project, scan_id) -> Scan:
    """A scan of `project`; Scan.DoesNotExist for another project's scan."""
    return Scan.objects.select_related("project", "created_by").get(
        project=project, pk=scan_id
    )


def memberships_for_project(*, project: Project) -> QuerySet[Membership]:
    return Membership.objects.filter(project=project).select_related("user")


def api_tokens_for_project(*, project: Project) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(project=project).select_related("created_by")


def api_tokens_with_state(*, project: Project) -> list[ApiToken]:
    """The project's tokens, each with `state` (access.TokenState: active, revoked,
    expired or disabled, and why), decided now as the API decides it."""
    tokens = list(api_tokens_for_project(project=project))
    accesses = {}

    def access_of(user):
        if user.pk not in accesses:
            accesses[user.pk] = project_access(user=user, project=project)
        return accesses[user.pk]

    now = timezone.now()
    for token in tokens:
        token.state = api_token_state(token=token, now=now, access_of=access_of)
    return tokens
