"""Per-request settings of the signed-in user."""

from django.utils import timezone

from accounts.time_zones import activate_for


class TimeZoneMiddleware:
    """Activate the signed-in user's time zone (Your settings) for the request, so
    that every page shows times in it; anyone else sees the server's TIME_ZONE.

    Placed after AuthenticationMiddleware. A signed-in request reads the profile's
    time zone (one small query); the zone is switched back off afterwards, so that
    a thread serving the next request starts from the server's.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            activate_for(user)
        else:
            timezone.deactivate()
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
