"""Integrations › Notification Tools: cards, the settings drawer, Test Connection."""

from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from integrations import selectors, services
from integrations.exceptions import IntegrationError
from integrations.models import Integration, IntegrationState
from integrations.permissions import security_admin_required
from integrations.registry import providers


def _provider_or_404(key):
    try:
        return providers()[key]
    except KeyError:
        raise Http404("No such notification tool.")


def _page_context(**extra):
    return {
        "cards": selectors.notification_tool_cards(),
        "test_timeout_ms": int((settings.TEST_CONNECTION_TIMEOUT + 5) * 1000),
        **extra,
    }


def _page(request, *, status=200, **extra):
    return TemplateResponse(
        request,
        "integrations/notification_tools.html",
        _page_context(**extra),
        status=status,
    )


@dataclass
class Drawer:
    """A tool's settings drawer: its provider, saved row and (bound) form."""

    provider_cls: type
    integration: Integration
    form: object

    @classmethod
    def for_request(cls, request, key, *, bound=True):
        provider_cls = _provider_or_404(key)
        integration = selectors.integration_for(key)
        initial = dict(integration.config) if integration.pk else {}
        args = (request.POST, request.FILES) if bound else ()
        form = provider_cls.form_class(
            *args, initial=initial, saved_secrets=set(integration.secrets or ())
        )
        return cls(provider_cls, integration, form)

    @property
    def context(self):
        return {
            "open_tool": self.provider_cls,
            "form": self.form,
            "integration": self.integration,
        }

    def page(self, request, *, status=200, **extra):
        """The Notification Tools page with this drawer open."""
        return _page(request, status=status, **self.context, **extra)


@require_GET
@security_admin_required
def notification_tools(request):
    return _page(request)


@require_http_methods(["GET", "POST"])
@security_admin_required
def tool_settings(request, key):
    """GET opens the drawer; POST saves it (Save)."""
    drawer = Drawer.for_request(request, key, bound=request.method == "POST")
    if request.method == "GET":
        return drawer.page(request)
    if not drawer.form.is_valid():
        return drawer.page(request, status=400)
    if drawer.provider_cls.save_requires_validation:
        return _validate_and_save(request, drawer)
    services.integration_save(
        provider_key=key, cleaned_data=drawer.form.cleaned_data, actor=request.user
    )
    messages.success(
        request, _("%(name)s is active.") % {"name": drawer.provider_cls.name}
    )
    return redirect("integrations:notification_tools")


@require_POST
@security_admin_required
def tool_test(request, key):
    """Test Connection on the drawer's current values, saved or not.

    From the drawer's script (X-Requested-With: fetch) the answer is the result
    partial; without JavaScript, the whole page with the drawer open.
    """
    drawer = Drawer.for_request(request, key)
    if request.headers.get("X-Requested-With") == "fetch":
        template = "integrations/notification_tools.html#test-result"
        context = drawer.context
    else:
        template = "integrations/notification_tools.html"
        context = _page_context(**drawer.context)
    if not drawer.form.is_valid():
        return TemplateResponse(
            request, template, {**context, "invalid": True}, status=400
        )
    if not services.test_connection_allowed(request.user):
        return TemplateResponse(
            request, template, {**context, "rate_limited": True}, status=429
        )
    report = services.integration_test_connection(
        provider_key=key, cleaned_data=drawer.form.cleaned_data, actor=request.user
    )
    return TemplateResponse(request, template, {**context, "report": report})


@require_POST
@security_admin_required
def tool_deactivate(request, key):
    provider_cls = _provider_or_404(key)
    integration = selectors.integration_for(key)
    if integration.pk and integration.state != IntegrationState.INACTIVE:
        services.integration_deactivate(provider_key=key, actor=request.user)
        messages.success(
            request, _("%(name)s is deactivated.") % {"name": provider_cls.name}
        )
    return redirect("integrations:notification_tools")


@require_GET
@security_admin_required
def audit_log(request):
    return TemplateResponse(
        request, "integrations/audit_log.html", {"entries": selectors.audit_entries()}
    )


# --- Validate and Save, Save & Authorize, the OAuth callback ------------------------


def _validate_and_save(request, drawer):
    """Send a validation email to the admin; save only if the server accepted it."""
    provider_cls, form = drawer.provider_cls, drawer.form
    if provider_cls(config=form.cleaned_data, secrets={}).needs_authorization:
        return _authorize(request, drawer)
    try:
        report, saved = services.integration_validate_and_save(
            provider_key=provider_cls.key,
            cleaned_data=form.cleaned_data,
            actor=request.user,
        )
    except IntegrationError as error:
        return drawer.page(request, action_error=error, status=400)
    if saved is None:
        return drawer.page(request, report=report, not_saved=True, status=400)
    messages.success(
        request,
        _(
            "%(name)s settings validated and saved: a validation email was sent "
            "to %(email)s."
        )
        % {"name": provider_cls.name, "email": request.user.email},
    )
    return redirect("integrations:notification_tools")


def _authorize(request, drawer):
    if not request.session.session_key:
        request.session.save()
    try:
        auth_uri = services.integration_authorize_start(
            provider_key=drawer.provider_cls.key,
            cleaned_data=drawer.form.cleaned_data,
            actor=request.user,
            session_key=request.session.session_key,
            redirect_uri=selectors.oauth_redirect_url(),
        )
    except IntegrationError as error:
        return drawer.page(request, action_error=error, status=400)
    # The identity provider's sign-in page (the button opened this in a new tab).
    return redirect(auth_uri)


@require_POST
@security_admin_required
def tool_validate(request, key):
    """Validate and Save: a validation email to the acting admin, then save."""
    drawer = Drawer.for_request(request, key)
    if not drawer.form.is_valid():
        return drawer.page(request, status=400)
    return _validate_and_save(request, drawer)


@require_POST
@security_admin_required
def tool_authorize(request, key):
    """Save & Authorize: save as "authorization pending", then go to the sign-in."""
    drawer = Drawer.for_request(request, key)
    if not drawer.form.is_valid():
        return drawer.page(request, status=400)
    return _authorize(request, drawer)


@require_GET
@security_admin_required
def oauth_callback(request):
    """Where the identity provider sends the admin back after signing in."""
    try:
        integration = services.integration_authorize_complete(
            query=request.GET.dict(),
            actor=request.user,
            session_key=request.session.session_key or "",
        )
    except IntegrationError as error:
        return TemplateResponse(
            request, "integrations/oauth_result.html", {"error": error}, status=400
        )
    provider_cls = providers().get(integration.provider)
    return TemplateResponse(
        request,
        "integrations/oauth_result.html",
        {"integration": integration, "provider": provider_cls},
    )
