"""The lockout answer of the sign-in page, the lockouts page of security admins,
their People page, and the set-password page a new user's link opens."""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm, SetPasswordForm
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import (
    require_GET,
    require_http_methods,
    require_POST,
)

from accounts import selectors, services
from accounts.exceptions import PeopleError
from accounts.forms import PersonCreateForm, UnlockForm
from accounts.selectors import LockoutKind
from integrations.permissions import is_security_admin, security_admin_required
from integrations.text import CONTROL_CHARACTER


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


# -- People -------------------------------------------------------------------------

PEOPLE_PER_PAGE = 50


def _people_page(request, *, form=None, status=200, **context):
    users = Paginator(selectors.people_list(), PEOPLE_PER_PAGE).get_page(
        request.GET.get("page")
    )
    return TemplateResponse(
        request,
        "accounts/people.html",
        {
            "users": users,
            "form": form or PersonCreateForm(),
            **context,
        },
        status=status,
    )


def _with_link(request, response, *, person, path):
    """The page showing `person`'s set-password link, this once: never cached."""
    response.context_data.update(
        link_user=person,
        link_url=f"{settings.SITE_URL}{path}",
        link_expires_at=timezone.now()
        + timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT),
    )
    response["Cache-Control"] = "no-store"
    return response


def _person(user_id):
    person = get_user_model().objects.filter(pk=user_id).first()
    if person is None:
        raise Http404
    return person


@require_GET
@security_admin_required
def people(request):
    return _people_page(request)


@require_POST
@security_admin_required
def person_create(request):
    form = PersonCreateForm(request.POST)
    if form.is_valid():
        try:
            person, path = services.user_create(
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                actor=request.user,
            )
        except PeopleError as exc:
            form.add_error(exc.field or None, exc.message)
        else:
            # Rendered, not redirected: the link exists only in this response.
            messages.success(
                request,
                _("%(user)s is created.") % {"user": person.get_username()},
            )
            return _with_link(request, _people_page(request), person=person, path=path)
    return _people_page(request, form=form, status=400)


@require_POST
@security_admin_required
def password_link_create(request, user_id):
    person = _person(user_id)
    try:
        path = services.user_password_link_create(user=person, actor=request.user)
    except PeopleError as exc:
        return _people_page(request, action_error=exc.message, status=400)
    return _with_link(request, _people_page(request), person=person, path=path)


def _person_action(request, user_id, service, *, done, unchanged):
    """Run a People action on the user `user_id`; a refusal is shown on the page."""
    person = _person(user_id)
    try:
        changed = service(user=person, actor=request.user)
    except PeopleError as exc:
        return _people_page(request, action_error=exc.message, status=400)
    name = {"user": person.get_username()}
    if changed:
        messages.success(request, done % name)
    else:
        messages.info(request, unchanged % name)
    if not is_security_admin(request.user):  # they removed their own role
        return redirect("home")
    return redirect("people:list")


@require_POST
@security_admin_required
def person_deactivate(request, user_id):
    return _person_action(
        request,
        user_id,
        services.user_deactivate,
        done=_("%(user)s is deactivated: they can no longer sign in."),
        unchanged=_("%(user)s was already deactivated."),
    )


@require_POST
@security_admin_required
def person_reactivate(request, user_id):
    return _person_action(
        request,
        user_id,
        services.user_reactivate,
        done=_("%(user)s is active again and can sign in."),
        unchanged=_("%(user)s was already active."),
    )


@require_POST
@security_admin_required
def role_grant(request, user_id):
    return _person_action(
        request,
        user_id,
        services.user_role_grant,
        done=_("%(user)s is now a security admin."),
        unchanged=_("%(user)s was already a security admin."),
    )


@require_POST
@security_admin_required
def role_remove(request, user_id):
    return _person_action(
        request,
        user_id,
        services.user_role_remove,
        done=_("%(user)s is no longer a security admin."),
        unchanged=_("%(user)s was not a security admin."),
    )


@require_GET
@login_required
def people_search(request):
    """Users whose user name or email starts with `q`, for the member field's
    suggestions: security admins and project owners only."""
    if not selectors.can_search_people(request.user):
        raise PermissionDenied(
            _("Only security admins and project owners can look people up.")
        )
    query = request.GET.get("q", "")
    if len(query) > selectors.PEOPLE_SEARCH_MAX_LENGTH or CONTROL_CHARACTER.search(
        query
    ):
        response = JsonResponse(
            {
                "error": _(
                    "Type the beginning of a user name or email address, on one "
                    "line, at most %(limit)d characters."
                )
                % {"limit": selectors.PEOPLE_SEARCH_MAX_LENGTH}
            },
            status=400,
        )
    else:
        response = JsonResponse({"users": selectors.people_search(query=query)})
    response["Cache-Control"] = "private, no-store"
    return response


# -- the set-password link -------------------------------------------------------------

#: Where the link's parts wait, once they have left the address bar.
SET_PASSWORD_SESSION_KEY = "_set_password_link"


@never_cache
@require_http_methods(["GET", "POST"])
def set_password(request):
    """A new user's set-password link (accounts.services.set_password_path).

    Opened with the link's parts in the query, the page keeps them in the session
    and redirects to itself without them, so they leave the address bar, the
    history and any Referer (as Django's PasswordResetConfirmView does). The form
    then sets the password once; the link is dead afterwards.
    """
    if request.method == "GET" and ("u" in request.GET or "t" in request.GET):
        request.session[SET_PASSWORD_SESSION_KEY] = {
            "u": request.GET.get("u", "")[:100],
            "t": request.GET.get("t", "")[:100],
        }
        return redirect("accounts:set_password")
    link = request.session.get(SET_PASSWORD_SESSION_KEY) or {}
    uidb64, token = str(link.get("u", "")), str(link.get("t", ""))
    person = selectors.user_for_password_link(uidb64=uidb64, token=token)
    if person is None:
        request.session.pop(SET_PASSWORD_SESSION_KEY, None)
        return render(
            request, "accounts/set_password.html", {"valid_link": False}, status=400
        )
    form = SetPasswordForm(person, request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.user_password_set(
                uidb64=uidb64, token=token, password=form.cleaned_data["new_password1"]
            )
        except PeopleError:  # used in another tab a moment ago
            request.session.pop(SET_PASSWORD_SESSION_KEY, None)
            return render(
                request,
                "accounts/set_password.html",
                {"valid_link": False},
                status=400,
            )
        request.session.pop(SET_PASSWORD_SESSION_KEY, None)
        messages.success(request, _("Your password is set. Sign in with it now."))
        return redirect("login")
    return render(
        request,
        "accounts/set_password.html",
        {"valid_link": True, "form": form, "person": person},
        status=400 if form.is_bound else 200,
    )
