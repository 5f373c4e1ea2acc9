"""Reads for projects, always scoped to what the user may see."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from integrations.permissions import is_security_admin
from projects.models import (
    ApiToken,
    Finding,
    FindingStatus,
    FindingStatusChange,
    Membership,
    Project,
    Role,
    Scan,
    Severity,
)
from projects.workflow import next_statuses


@dataclass(frozen=True)
class ProjectAccess:
    """What one user may do in one project."""

    role: str | None  # Role value, or None for a security admin who is not a member
    is_security_admin: bool

    @property
    def can_view(self) -> bool:
        return self.is_security_admin or self.role is not None

    @property
    def can_manage(self) -> bool:
        """Tokens, uploads, finding statuses."""
        return self.is_security_admin or self.role == Role.OWNER

    @property
    def can_manage_members(self) -> bool:
        return self.is_security_admin


def projects_for_user(*, user) -> QuerySet[Project]:
    """The projects `user` may see: all for security admins, else their own."""
    if not user.is_authenticated:
        return Project.objects.none()
    if is_security_admin(user):
        return Project.objects.all()
    return Project.objects.filter(memberships__user=user).distinct()


def project_access(*, user, project: Project) -> ProjectAccess:
    admin = is_security_admin(user)
    role = None
    if user.is_authenticated and user.is_active:
        role = (
            Membership.objects.filter(project=project, user=user)
            .values_list("role", flat=True)
            .first()
        )
    return ProjectAccess(role=role, is_security_admin=admin)


def project_get_for_user(*, user, slug: str) -> tuple[Project, ProjectAccess]:
    """The project and the user's access; Project.DoesNotExist if they may not see it.

    Unknown and forbidden projects look the same, so existence is not revealed.
    """
    project = Project.objects.get(slug=slug)
    access = project_access(user=user, project=project)
    if not access.can_view:
        raise Project.DoesNotExist
    return project, access


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
    from django.db.models import Case, IntegerField, Value, When

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


def memberships_for_project(*, project: Project) -> QuerySet[Membership]:
    return Membership.objects.filter(project=project).select_related("user")


def api_tokens_for_project(*, project: Project) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(project=project).select_related("created_by")
