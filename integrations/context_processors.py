"""Template context shared by every page."""

from integrations.permissions import is_security_admin


def roles(request):
    user = getattr(request, "user", None)
    return {"is_security_admin": bool(user and is_security_admin(user))}
