"""Who may do what in a project, and the decorator every project page goes through.

Used by the views of both `projects` and `notifications` (whose project pages live
under /projects/<slug>/), so that neither app's views import the other's.
"""

from dataclasses import dataclass
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404

from integrations.permissions import is_security_admin
from projects.models import Membership, Project, Role


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


def project_view(permission="view"):
    """Sign-in required; the project is resolved from `slug` for the user.

    Projects the user may not see are a 404, the same as unknown ones. Members who try
    to change something get a 403: they know the project exists.
    """

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapper(request, slug, *args, **kwargs):
            try:
                project, access = project_get_for_user(user=request.user, slug=slug)
            except Project.DoesNotExist:
                raise Http404 from None
            if permission == "manage" and not access.can_manage:
                raise PermissionDenied
            if permission == "members" and not access.can_manage_members:
                raise PermissionDenied
            return view(request, project, access, *args, **kwargs)

        return wrapper

    return decorator
