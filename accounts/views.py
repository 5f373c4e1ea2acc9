"""The lockout answer of the sign-in page, and the lockouts page of security admins."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import redirect, render
from django.template.response import TemplateResponse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from accounts import selectors, services
from accounts.forms import UnlockForm
from accounts.selectors import LockoutKind
from integrations.permissions import security_admin_required


def sign_in_locked_out(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: the sign-in page again, status 429, saying why.

    The same words whether or not the user name exists, and whether the user name
    or the address reached the limit.
    """
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = ""
    context = {
        "form": AuthenticationForm(request),
        "locked_out": True,
        "cooloff_minutes": services.cooloff_minutes(),
        "next": next_url,
    }
    return render(
        request,
        "registration/login.html",
        context,
        status=settings.AXES_HTTP_RESPONSE_CODE,
    )


@require_GET
@security_admin_required
def lockouts(request):
    return _lockouts_page(request)


def _lockouts_page(request, *, form=None, status=200):
    return TemplateResponse(
        request,
        "accounts/lockouts.html",
        {
            "lockouts": selectors.sign_in_lockouts(),
            "failure_limit": settings.AXES_FAILURE_LIMIT,
            "cooloff_minutes": services.cooloff_minutes(),
            "form": form,
        },
        status=status,
    )


@require_POST
@security_admin_required
def unlock(request):
    form = UnlockForm(request.POST)
    if not form.is_valid():
        return _lockouts_page(request, form=form, status=400)
    kind, value = form.cleaned_data["kind"], form.cleaned_data["value"]
    if kind == LockoutKind.USER:
        count = services.sign_in_unlock(actor=request.user, username=value)
        done = _("Sign-in is unlocked for the user name %(value)s.")
    else:
        count = services.sign_in_unlock(actor=request.user, ip_address=value.strip())
        done = _("Sign-in is unlocked for the address %(value)s.")
    if count:
        messages.success(request, done % {"value": value})
    else:
        messages.info(request, _("That lockout had already ended."))
    return redirect("accounts:lockouts")
