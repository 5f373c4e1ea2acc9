"""Who may do what in a project, and the decorator every project page goes through.

Used by the views of both `projects` and `notifications` (whose project pages live
under /projects/<slug>/), so that neither app's views import the other's.
"""

from dataclasses import dataclass
from datetime import datetime
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import TextChoices
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.time_zones import display_time
from integrations.permissions import is_security_admin
from projects.models import ApiToken, Membership, Project, Role

#: Why a project page or form is read-only for the viewer: on the 403 page when a
#: change is refused, and beside a form shown read-only.
ONLY_OWNERS = _("Only project owners can change this.")
ONLY_SECURITY_ADMINS_MEMBERS = _(
    "Only security admins can add or remove project members."
)


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
                raise PermissionDenied(ONLY_OWNERS)
            if permission == "members" and not access.can_manage_members:
                raise PermissionDenied(ONLY_SECURITY_ADMINS_MEMBERS)
            return view(request, project, access, *args, **kwargs)

        return wrapper

    return decorator


# -- API tokens: a token acts with its creator's current access ----------------------


class TokenStatus(TextChoices):
    ACTIVE = "active", _("Active")
    REVOKED = "revoked", _("Revoked")
    EXPIRED = "expired", _("Expired")
    DISABLED = "disabled", _("Disabled")


@dataclass(frozen=True)
class TokenState:
    """Whether a token may act now, and if not, why (in words for people)."""

    status: str  # TokenStatus value
    reason: str = ""

    @property
    def usable(self) -> bool:
        return self.status == TokenStatus.ACTIVE

    @property
    def label(self) -> str:
        return TokenStatus(self.status).label


def _when(moment: datetime) -> str:
    """As every page writes a moment: "2026-12-01 14:05 UTC", in the viewer's zone."""
    return display_time(moment)


def api_token_state(
    *, token: ApiToken, now: datetime | None = None, access_of=None
) -> TokenState:
    """Whether `token` may act at `now` (default: now), decided from the rows as they
    are: revoked, expired, or disabled because its creator may no longer manage the
    project (removed from it, made a plain member, deactivated or deleted).

    Nothing is stored when a membership changes: the answer is always current.
    `access_of(user)` may be given to reuse one creator's access across tokens.
    """
    now = now or timezone.now()
    if token.revoked_at is not None:
        return TokenState(
            TokenStatus.REVOKED,
            _("Revoked %(when)s.") % {"when": _when(token.revoked_at)},
        )
    if token.expires_at is not None and token.expires_at <= now:
        return TokenState(
            TokenStatus.EXPIRED,
            _("Expired %(when)s.") % {"when": _when(token.expires_at)},
        )
    creator = token.created_by
    if creator is None:
        return TokenState(
            TokenStatus.DISABLED, _("The account that created it was deleted.")
        )
    name = creator.get_username()
    if not creator.is_active:
        return TokenState(
            TokenStatus.DISABLED,
            _("%(user)s, who created it, is deactivated.") % {"user": name},
        )
    if access_of is not None:
        access = access_of(creator)
    else:
        access = project_access(user=creator, project=token.project)
    if access.can_manage:
        return TokenState(TokenStatus.ACTIVE)
    if access.role is None:
        reason = _(
            "%(user)s, who created it, is no longer a member of this project."
        ) % {"user": name}
    else:
        reason = _(
            "%(user)s, who created it, is now a %(role)s of this project; a token "
            "needs its creator to be an Owner."
        ) % {"user": name, "role": Role(access.role).label}
    return TokenState(TokenStatus.DISABLED, reason)
