"""Reads: who is locked out of signing in now (django-axes' attempt records)."""

from dataclasses import dataclass
from datetime import datetime

from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Max, Sum
from django.utils import timezone


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
