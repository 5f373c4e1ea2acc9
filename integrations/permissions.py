"""Who may manage notification tools."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

SECURITY_ADMINS_GROUP = "Security admins"


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
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return wrapper
