"""Writes around django-axes: the client address it counts by, the audit entry of
a lockout, and unlocking."""

import ipaddress

from axes.utils import reset as axes_reset
from django.conf import settings
from django.db import transaction

from accounts.selectors import sign_in_failures
from integrations.models import AuditAction, AuditEntry
from integrations.services.audit import audit_record
from integrations.text import single_line

#: The longest user name kept in an audit subject (Django's own limit is 150).
USERNAME_LIMIT = 150


def _ip_or_none(text: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address((text or "").strip()))
    except ValueError:
        return None


def client_address(request) -> str | None:
    """The address failed sign-ins are counted against (AXES_CLIENT_IP_CALLABLE).

    REMOTE_ADDR, unless SIGN_IN_TRUSTED_PROXY_COUNT reverse proxies stand in front:
    each appends the address it received from to X-Forwarded-For, so the client is
    that many entries from the right; entries further left are whatever the client
    sent. A header too short or not an address falls back to REMOTE_ADDR.
    """
    remote = request.META.get("REMOTE_ADDR")
    proxies = settings.SIGN_IN_TRUSTED_PROXY_COUNT
    if proxies:
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= proxies:
            address = _ip_or_none(forwarded[-proxies])
            if address:
                return address
    return remote


def cooloff_minutes() -> int:
    """How long a lockout lasts, in whole minutes (at least one)."""
    return max(1, int(settings.AXES_COOLOFF_TIME.total_seconds() // 60))


def sign_in_lockout_record(
    *, username: str | None, ip_address: str | None
) -> AuditEntry:
    """Audit a lockout: the user name as subject, the address and what reached the
    limit as detail. The password is never passed here."""
    name = single_line(username or "", USERNAME_LIMIT)
    address = _ip_or_none(ip_address) or "an unknown address"
    limit = settings.AXES_FAILURE_LIMIT
    reached = []
    if username and sign_in_failures(username=username) >= limit:
        reached.append("user name")
    if ip_address and sign_in_failures(ip_address=ip_address) >= limit:
        reached.append("address")
    detail = (
        f"From {address}: {limit} failed sign-ins for the "
        f"{' and the '.join(reached) or 'user name or address'}; "
        f"sign-in locked for {cooloff_minutes()} minutes."
    )
    return audit_record(
        provider_key="",
        action=AuditAction.SIGN_IN_LOCKED_OUT,
        subject=f"user:{name}",
        detail=single_line(detail, 500),
        succeeded=False,
        error_code="too_many_failed_sign_ins",
    )


@transaction.atomic
def sign_in_unlock(
    *,
    actor=None,
    username: str | None = None,
    ip_address: str | None = None,
    everything: bool = False,
    via: str = "",
) -> int:
    """Clear the failed sign-ins of one user name, of one address, or all of them,
    ending any lockout they caused. Audited when something was cleared. Returns
    the number of attempt records removed.

    `via` says where the unlock came from when there is no actor (a command).
    """
    if sum([username is not None, ip_address is not None, everything]) != 1:
        raise ValueError("Give exactly one of username, ip_address and everything.")
    if username is not None:
        # axes' reset() clears everything when given no user name: never pass ""
        if not username.strip():
            raise ValueError("The user name is empty.")
        count = axes_reset(username=username)
        subject = f"user:{single_line(username, USERNAME_LIMIT)}"
    elif ip_address is not None:
        address = _ip_or_none(ip_address)
        if address is None:
            raise ValueError("This is not an IP address.")
        count = axes_reset(ip=address)
        subject = f"address:{address}"
    else:
        count = axes_reset()
        subject = "all"
    if count:
        detail = f"{count} failed sign-in record{'s' if count != 1 else ''} cleared"
        audit_record(
            provider_key="",
            action=AuditAction.SIGN_IN_UNLOCKED,
            actor=actor,
            subject=subject,
            detail=single_line(f"{detail}{f' ({via})' if via else ''}.", 500),
        )
    return count
