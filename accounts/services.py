"""Writes around django-axes (the client address it counts by, the audit entry of
a lockout, and unlocking) and the People page's (creating users, their set-password
link, deactivating and reactivating them, the security-admin role)."""

import ipaddress
from urllib.parse import urlencode

from axes.utils import reset as axes_reset
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.tokens import default_token_generator
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext as _

from accounts.exceptions import PeopleError
from accounts.selectors import (
    is_security_admin_member,
    sign_in_failures,
    user_for_password_link,
)
from integrations.models import AuditAction, AuditEntry
from integrations.permissions import SECURITY_ADMINS_GROUP
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


# -- People: users, their set-password link and the security-admin role --------------

#: The longest email address accepted (RFC 5321's path limit, Django's EmailField).
EMAIL_LIMIT = 254


def _user_audit(*, action: AuditAction, user, actor, detail: str) -> AuditEntry:
    return audit_record(
        provider_key="",
        action=action,
        actor=actor,
        subject=f"user:{single_line(user.get_username(), USERNAME_LIMIT)}",
        detail=single_line(detail, 500),
    )


def set_password_path(*, user) -> str:
    """The set-password link of `user` (path and query, no host).

    Django's password-reset token (`default_token_generator`): it is valid for
    PASSWORD_RESET_TIMEOUT and only until the password, or the last sign-in, changes,
    so it works once. In the query rather than the path: the server's access log
    records paths only (config/gunicorn.conf.py). Never emailed, logged or stored.
    """
    query = urlencode(
        {
            "u": urlsafe_base64_encode(force_bytes(user.pk)),
            "t": default_token_generator.make_token(user),
        }
    )
    return f"{reverse('accounts:set_password')}?{query}"


def _clean_username(username: str) -> str:
    username = (username or "").strip()
    if not username:
        raise PeopleError(_("Enter a user name."), code="invalid", field="username")
    if len(username) > USERNAME_LIMIT:
        raise PeopleError(
            _("A user name has at most %(limit)d characters.")
            % {"limit": USERNAME_LIMIT},
            code="invalid",
            field="username",
        )
    try:
        UnicodeUsernameValidator()(username)
    except ValidationError:
        raise PeopleError(
            _(
                "A user name may contain only letters, digits and the characters "
                "@ . + - _ (no spaces)."
            ),
            code="invalid",
            field="username",
        )
    return username


def _clean_email(email: str) -> str:
    email = (email or "").strip()
    if not email:
        raise PeopleError(_("Enter an email address."), code="invalid", field="email")
    try:
        if len(email) > EMAIL_LIMIT:
            raise ValidationError("too long")
        validate_email(email)
    except ValidationError:
        raise PeopleError(
            _("Enter a valid email address, e.g. alex@contoso.com."),
            code="invalid",
            field="email",
        )
    return email


@transaction.atomic
def user_create(*, username: str, email: str, actor) -> tuple:
    """Create an active user with no password, and return it with its set-password
    link (`set_password_path`), which the creator hands over. Audited.

    A user name or an email address that another user has already, in any case,
    is refused: people tell users apart by them.
    """
    username = _clean_username(username)
    email = _clean_email(email)
    users = get_user_model().objects
    if users.filter(username__iexact=username).exists():
        raise PeopleError(
            _("A user called “%(username)s” already exists.") % {"username": username},
            code="username_taken",
            field="username",
        )
    if users.filter(email__iexact=email).exists():
        raise PeopleError(
            _("Another user already has the email address %(email)s.")
            % {"email": email},
            code="email_taken",
            field="email",
        )
    user = get_user_model()(username=username, email=email, is_active=True)
    user.set_unusable_password()
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:  # created by someone else in the meantime
        raise PeopleError(
            _("A user called “%(username)s” already exists.") % {"username": username},
            code="username_taken",
            field="username",
        )
    _user_audit(
        action=AuditAction.USER_CREATED,
        user=user,
        actor=actor,
        detail=f"Created with the email address {email} and a set-password link",
    )
    return user, set_password_path(user=user)


@transaction.atomic
def user_password_link_create(*, user, actor) -> str:
    """A new set-password link for a user who has not set a password yet (the first
    one was lost). Earlier links stop working. Audited.

    Refused for a user who has a password: a security admin does not choose or
    reset another person's password, which would let them sign in as that person.
    """
    user = get_user_model().objects.select_for_update().get(pk=user.pk)
    if user.has_usable_password():
        raise PeopleError(
            _(
                "%(user)s has set a password already; a new link is only for "
                "someone who has not."
            )
            % {"user": user.get_username()},
            code="password_already_set",
        )
    if not user.is_active:
        raise PeopleError(
            _("%(user)s is deactivated: reactivate them first.")
            % {"user": user.get_username()},
            code="user_inactive",
        )
    # A new unusable password changes what the token is made from: older links die.
    user.set_unusable_password()
    user.save(update_fields=["password"])
    _user_audit(
        action=AuditAction.PASSWORD_LINK_CREATED,
        user=user,
        actor=actor,
        detail="New set-password link; earlier links no longer work",
    )
    return set_password_path(user=user)


@transaction.atomic
def user_password_set(*, uidb64: str, token: str, password: str):
    """Set the password of the user a set-password link names, once: the row is
    locked and the token checked again, and the new password makes the token
    invalid. The password must already have passed the password validators.
    Returns the user; PeopleError when the link is not (or no longer) valid."""
    user = user_for_password_link(uidb64=uidb64, token=token, for_update=True)
    if user is None:
        raise PeopleError(_("This link is no longer valid."), code="invalid_link")
    user.set_password(password)
    user.save(update_fields=["password"])
    _user_audit(
        action=AuditAction.PASSWORD_SET,
        user=user,
        actor=user,
        detail="Password set through a set-password link",
    )
    return user


def _security_admins_group(*, lock: bool) -> Group:
    """The role's group, locked when asked: every role change and deactivation of a
    security admin takes this lock, so two of them cannot remove the last one."""
    group, _created = Group.objects.get_or_create(name=SECURITY_ADMINS_GROUP)
    if lock:
        group = Group.objects.select_for_update().get(pk=group.pk)
    return group


def _other_active_security_admins(*, user) -> int:
    users = get_user_model().objects.filter(is_active=True).exclude(pk=user.pk)
    return (
        users.filter(groups__name=SECURITY_ADMINS_GROUP).count()
        + users.filter(is_superuser=True)
        .exclude(groups__name=SECURITY_ADMINS_GROUP)
        .count()
    )


def _locked_user(user):
    return get_user_model().objects.select_for_update().get(pk=user.pk)


@transaction.atomic
def user_deactivate(*, user, actor) -> bool:
    """Deactivate `user`: they can no longer sign in, their sessions end at their
    next request, and the API tokens they created stop working. Their past actions
    stay recorded. Not yourself, and never the last security admin. Audited.
    Returns False when they were already deactivated."""
    if actor is not None and user.pk == actor.pk:
        raise PeopleError(
            _("You cannot deactivate yourself; ask another security admin."),
            code="self_deactivation",
        )
    _security_admins_group(lock=True)
    user = _locked_user(user)
    if not user.is_active:
        return False
    if (
        user.is_superuser or is_security_admin_member(user)
    ) and not _other_active_security_admins(user=user):
        raise PeopleError(
            _("%(user)s is the last security admin and cannot be deactivated.")
            % {"user": user.get_username()},
            code="last_security_admin",
        )
    user.is_active = False
    user.save(update_fields=["is_active"])
    _user_audit(action=AuditAction.USER_DEACTIVATED, user=user, actor=actor, detail="")
    return True


@transaction.atomic
def user_reactivate(*, user, actor) -> bool:
    """Let a deactivated user sign in again (with the roles they had). Audited.
    Returns False when they were active already."""
    user = _locked_user(user)
    if user.is_active:
        return False
    user.is_active = True
    user.save(update_fields=["is_active"])
    _user_audit(action=AuditAction.USER_REACTIVATED, user=user, actor=actor, detail="")
    return True


@transaction.atomic
def user_role_grant(*, user, actor) -> bool:
    """Make `user` a security admin (the SECURITY_ADMINS_GROUP group). Audited.
    Returns False when they were one already."""
    group = _security_admins_group(lock=True)
    user = _locked_user(user)
    if not user.is_active:
        raise PeopleError(
            _("%(user)s is deactivated: reactivate them first.")
            % {"user": user.get_username()},
            code="user_inactive",
        )
    if user.is_superuser or is_security_admin_member(user):
        return False
    user.groups.add(group)
    _user_audit(
        action=AuditAction.ROLE_GRANTED,
        user=user,
        actor=actor,
        detail=f"Added to the group “{SECURITY_ADMINS_GROUP}”",
    )
    return True


@transaction.atomic
def user_role_remove(*, user, actor) -> bool:
    """Take the security-admin role from `user`, yourself included, unless that
    leaves no active security admin. Audited. Returns False when they did not have
    it."""
    group = _security_admins_group(lock=True)
    user = _locked_user(user)
    if user.is_superuser:
        raise PeopleError(
            _(
                "%(user)s is a superuser, a security admin whatever their role; "
                "remove that in Django's admin."
            )
            % {"user": user.get_username()},
            code="superuser",
        )
    if not is_security_admin_member(user):
        return False
    if user.is_active and not _other_active_security_admins(user=user):
        raise PeopleError(
            _(
                "%(user)s is the last security admin: make someone else a security "
                "admin first."
            )
            % {"user": user.get_username()},
            code="last_security_admin",
        )
    user.groups.remove(group)
    _user_audit(
        action=AuditAction.ROLE_REMOVED,
        user=user,
        actor=actor,
        detail=f"Removed from the group “{SECURITY_ADMINS_GROUP}”",
    )
    return True
