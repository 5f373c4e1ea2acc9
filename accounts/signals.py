"""Receivers of django-axes' signals. Thin: the service decides what is recorded."""

from accounts import services


def audit_sign_in_locked_out(sender, request, username, ip_address, **kwargs):
    """axes' `user_locked_out`: audit the failure that locked sign-in out.

    axes also sends the signal for every attempt refused while the lockout lasts;
    those were not counted (`axes_failures_since_start` stays None on the request)
    and start no new lockout, so they are not audited again.
    """
    if getattr(request, "axes_failures_since_start", None) is None:
        return
    services.sign_in_lockout_record(username=username, ip_address=ip_address)
