"""Who may manage notification tools."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext_lazy as _

SECURITY_ADMINS_GROUP = "Security admins"

#: The reason shown on the 403 page (templates/403.html) to everyone else.
ONLY_SECURITY_ADMINS = _("Only security admins can see and use this page.")


def is_security_admin(user) -> bool:
    """A superuser, or an active member of the "Security admins" group."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return user.groups.filter(name=SECURITY_ADMINS_GROUP).exists()


def security_admin_required(view):
    """Anonymous users go to sign in; other signed-in users get 403."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not is_security_admin(request.user):
            raise PermissionDenied(ONLY_SECURITY_ADMINS)
        return view(request, *args, **kwargs)

    return wrapper
