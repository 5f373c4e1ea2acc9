"""Reads: who is locked out of signing in now (django-axes' attempt records), and
the People page's users."""

from dataclasses import dataclass
from datetime import datetime

from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import default_token_generator
from django.db.models import Exists, Max, OuterRef, Q, Sum
from django.utils import timezone
from django.utils.encoding import force_str
from django.utils.http import urlsafe_base64_decode

from integrations.permissions import SECURITY_ADMINS_GROUP, is_security_admin
from projects.models import Membership, Role


class LockoutKind:
    USER = "user"
    ADDRESS = "address"


@dataclass(frozen=True)
class SignInLockout:
    """A user name or a client address with too many recent failed sign-ins."""

    kind: str  # LockoutKind.USER or LockoutKind.ADDRESS
    value: str
    failures: int
    last_failure: datetime

    @property
    def unlocks_at(self) -> datetime:
        """When the lockout ends by itself (the cool-off after the last failure)."""
        return self.last_failure + settings.AXES_COOLOFF_TIME


def _recent_attempts():
    """Attempt records still inside the cool-off, as axes counts them."""
    return AccessAttempt.objects.filter(
        attempt_time__gte=timezone.now() - settings.AXES_COOLOFF_TIME
    )


def sign_in_failures(*, username: str | None = None, ip_address: str | None = None):
    """Recent failed sign-ins for one user name, or from one address."""
    if (username is None) == (ip_address is None):
        raise ValueError("Give exactly one of username and ip_address.")
    field = "username" if username is not None else "ip_address"
    attempts = _recent_attempts().filter(**{field: username or ip_address})
    return attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0


def sign_in_lockouts() -> list[SignInLockout]:
    """Every user name and address locked out now, the latest failure first."""
    lockouts = []
    for kind, field in (
        (LockoutKind.USER, "username"),
        (LockoutKind.ADDRESS, "ip_address"),
    ):
        attempts = _recent_attempts().exclude(**{f"{field}__isnull": True})
        # No empty user name (an address column is never compared with "": on
        # SQLite that makes invalid SQL).
        if field == "username":
            attempts = attempts.exclude(username="")
        rows = (
            attempts.values(field)
            .annotate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
            .filter(failures__gte=settings.AXES_FAILURE_LIMIT)
        )
        lockouts += [
            SignInLockout(kind, row[field], row["failures"], row["last"])
            for row in rows
        ]
    return sorted(lockouts, key=lambda lockout: lockout.last_failure, reverse=True)


# -- People ------------------------------------------------------------------------

#: The most users the member search answers with.
PEOPLE_SEARCH_LIMIT = 10
#: The longest search text accepted (a user name's or an email's length).
PEOPLE_SEARCH_MAX_LENGTH = 254
#: A set-password link's parts are short; anything longer is not one.
_LINK_PART_LIMIT = 100


def is_security_admin_member(user) -> bool:
    """Whether `user` has the security-admin role (the group), active or not."""
    return user.groups.filter(name=SECURITY_ADMINS_GROUP).exists()


def people_list():
    """Every user for the People page, by user name, with `has_admin_role` (in the
    security admins' group) annotated."""
    User = get_user_model()
    in_group = User.groups.through.objects.filter(
        user_id=OuterRef("pk"), group__name=SECURITY_ADMINS_GROUP
    )
    return User.objects.annotate(has_admin_role=Exists(in_group)).order_by("username")


def active_security_admin_count() -> int:
    """How many active users are security admins (by the role, or superusers)."""
    return (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(groups__name=SECURITY_ADMINS_GROUP) | Q(is_superuser=True))
        .distinct()
        .count()
    )


def can_search_people(user) -> bool:
    """Who may look users up by name (adding project members): security admins
    and project owners."""
    if is_security_admin(user):
        return True
    return (
        user.is_authenticated
        and user.is_active
        and Membership.objects.filter(user=user, role=Role.OWNER).exists()
    )


def people_search(*, query: str) -> list[dict]:
    """At most PEOPLE_SEARCH_LIMIT active users whose user name or email starts
    with `query` (any case), by user name: their user name and email only."""
    query = query.strip()
    if not query:
        return []
    users = (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(username__istartswith=query) | Q(email__istartswith=query))
        .order_by("username")
    )
    return [
        {"username": username, "email": email}
        for username, email in users.values_list("username", "email")[
            :PEOPLE_SEARCH_LIMIT
        ]
    ]


def user_for_password_link(*, uidb64: str, token: str, for_update: bool = False):
    """The active user a set-password link names, if its token is valid now
    (default_token_generator, PASSWORD_RESET_TIMEOUT); None otherwise."""
    if not uidb64 or not token:
        return None
    if len(uidb64) > _LINK_PART_LIMIT or len(token) > _LINK_PART_LIMIT:
        return None
    try:
        pk = int(force_str(urlsafe_base64_decode(uidb64)))
    except (TypeError, ValueError, OverflowError, UnicodeDecodeError):
        return None
    users = get_user_model().objects.filter(is_active=True)
    if for_update:
        users = users.select_for_update()
    user = users.filter(pk=pk).first()
    if user is None or not default_token_generator.check_token(user, token):
        return None
    return user
