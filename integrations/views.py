"""Integrations › Notification Tools: cards, the settings drawer, Test Connection."""

from django.conf import settings
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from integrations import selectors, services
from integrations.exceptions import IntegrationError
from integrations.models import IntegrationState
from integrations.permissions import security_admin_required
from integrations.registry import providers


def _provider_or_404(key):
    try:
        return providers()[key]
    except KeyError:
        raise Http404("No such notification tool.")


def _drawer_form(provider_cls, integration, data=None, files=None):
    initial = dict(integration.config) if integration.pk else {}
    return provider_cls.form_class(
        data, files, initial=initial, saved_secrets=set(integration.secrets or ())
    )


def _page(request, *, open_tool=None, form=None, report=None, status=200, **extra):
    context = {
        "cards": selectors.notification_tool_cards(),
        "open_tool": open_tool,
        "form": form,
        "report": report,
        "test_timeout_ms": int((settings.TEST_CONNECTION_TIMEOUT + 5) * 1000),
        **extra,
    }
    return TemplateResponse(
        request, "integrations/notification_tools.html", context, status=status
    )


@require_GET
@security_admin_required
def notification_tools(request):
    return _page(request)


@require_http_methods(["GET", "POST"])
@security_admin_required
def tool_settings(request, key):
    """GET opens the drawer; POST saves it (Save)."""
    provider_cls = _provider_or_404(key)
    integration = selectors.integration_for(key)
    if request.method == "GET":
        form = _drawer_form(provider_cls, integration)
        return _page(
            request, open_tool=provider_cls, form=form, integration=integration
        )
    form = _drawer_form(provider_cls, integration, request.POST, request.FILES)
    if not form.is_valid():
        return _page(
            request,
            open_tool=provider_cls,
            form=form,
            integration=integration,
            status=400,
        )
    if provider_cls.save_requires_validation:
        return _validate_and_save(request, provider_cls, integration, form)
    services.integration_save(
        provider_key=key, cleaned_data=form.cleaned_data, actor=request.user
    )
    messages.success(request, _("%(name)s is active.") % {"name": provider_cls.name})
    return redirect("integrations:notification_tools")


@require_POST
@security_admin_required
def tool_test(request, key):
    """Test Connection on the drawer's current values, saved or not."""
    provider_cls = _provider_or_404(key)
    integration = selectors.integration_for(key)
    form = _drawer_form(provider_cls, integration, request.POST, request.FILES)
    partial = request.headers.get("X-Requested-With") == "fetch"
    template = (
        "integrations/notification_tools.html#test-result"
        if partial
        else "integrations/notification_tools.html"
    )
    context = {"open_tool": provider_cls, "form": form, "integration": integration}
    if not partial:
        context["cards"] = selectors.notification_tool_cards()
        context["test_timeout_ms"] = int((settings.TEST_CONNECTION_TIMEOUT + 5) * 1000)
    if not form.is_valid():
        return TemplateResponse(
            request, template, {**context, "invalid": True}, status=400
        )
    if not services.test_connection_allowed(request.user):
        return TemplateResponse(
            request, template, {**context, "rate_limited": True}, status=429
        )
    report = services.integration_test_connection(
        provider_key=key, cleaned_data=form.cleaned_data, actor=request.user
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


def _validate_and_save(request, provider_cls, integration, form):
    """Send a validation email to the admin; save only if the server accepted it."""
    key = provider_cls.key
    provider = provider_cls(config=form.cleaned_data, secrets={})
    if provider.needs_authorization:
        return _authorize(request, provider_cls, integration, form)
    drawer = {"open_tool": provider_cls, "form": form, "integration": integration}
    try:
        report, saved = services.integration_validate_and_save(
            provider_key=key, cleaned_data=form.cleaned_data, actor=request.user
        )
    except IntegrationError as error:
        return _page(request, **drawer, action_error=error, status=400)
    if saved is None:
        return _page(request, **drawer, report=report, not_saved=True, status=400)
    messages.success(
        request,
        _(
            "%(name)s settings validated and saved: a validation email was sent to %(email)s."
        )
        % {"name": provider_cls.name, "email": request.user.email},
    )
    return redirect("integrations:notification_tools")


def _authorize(request, provider_cls, integration, form):
    if not request.session.session_key:
        request.session.save()
    try:
        auth_uri = services.integration_authorize_start(
            provider_key=provider_cls.key,
            cleaned_data=form.cleaned_data,
            actor=request.user,
            session_key=request.session.session_key,
            redirect_uri=selectors.oauth_redirect_url(),
        )
    except IntegrationError as error:
        return _page(
            request,
            open_tool=provider_cls,
            form=form,
            integration=integration,
            action_error=error,
            status=400,
        )
    # The identity provider's sign-in page (the button opened this in a new tab).
    return redirect(auth_uri)


@require_POST
@security_admin_required
def tool_validate(request, key):
    """Validate and Save: a validation email to the acting admin, then save."""
    provider_cls = _provider_or_404(key)
    integration = selectors.integration_for(key)
    form = _drawer_form(provider_cls, integration, request.POST, request.FILES)
    if not form.is_valid():
        return _page(
            request,
            open_tool=provider_cls,
            form=form,
            integration=integration,
            status=400,
        )
    return _validate_and_save(request, provider_cls, integration, form)


@require_POST
@security_admin_required
def tool_authorize(request, key):
    """Save & Authorize: save as "authorization pending", then go to the sign-in."""
    provider_cls = _provider_or_404(key)
    integration = selectors.integration_for(key)
    form = _drawer_form(provider_cls, integration, request.POST, request.FILES)
    if not form.is_valid():
        return _page(
            request,
            open_tool=provider_cls,
            form=form,
            integration=integration,
            status=400,
        )
    return _authorize(request, provider_cls, integration, form)


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
