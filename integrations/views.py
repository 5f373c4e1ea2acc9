"""Integrations › Notification Tools: cards, the settings drawer, Test Connection."""

from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from integrations import selectors, services, streaming
from integrations.exceptions import AuthorizationSettingsChanged, IntegrationError
from integrations.forms.tool_health import ToolHealthRecipientsForm
from integrations.models import Integration, IntegrationState
from integrations.permissions import security_admin_required
from integrations.registry import providers
from integrations.services.health import tool_health_recipients_save

#: On a field a plain Save may not change for an authorized delegated tool.
NEEDS_SAVE_AND_AUTHORIZE = gettext_lazy(
    "The authorization was given for the saved value: use Save & Authorize to "
    "change it."
)

#: Saved anyway (Save does not test), but it will be refused: the words of the
#: "secret_id_pasted" troubleshooting, as a warning.
SECRET_ID_SAVED = gettext_lazy(
    "Saved, but the Client Secret looks like the Secret ID (a GUID), not the "
    "secret's Value, and will be refused. In Microsoft Entra ID › App registrations "
    "› your app › Certificates & secrets, copy the Value column (shown only right "
    "after the secret is created; if it is hidden, create a new client secret), "
    "paste it into Client Secret and save again."
)


def _provider_or_404(key):
    try:
        return providers()[key]
    except KeyError:
        raise Http404("No such notification tool.")


def _page_context(**extra):
    if "health_recipients_form" not in extra:
        extra["health_recipients_form"] = ToolHealthRecipientsForm(
            initial={"recipients": selectors.tool_health_recipients_chosen()}
        )
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
            # A delegated tool's grant: "Authorized as ..." and the plain Save.
            "authorization": selectors.delegated_authorization(self.integration),
            # For the Deactivate confirmation (a <dialog> in the drawer).
            "paused_projects": selectors.projects_paused_by_deactivation(
                self.integration
            ),
            # The tool's health checks and sends that changed its state.
            "health_history": selectors.health_history(self.integration),
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
    if services.client_secret_looks_like_id(drawer.form.cleaned_data):
        messages.warning(request, SECRET_ID_SAVED)
    return redirect("integrations:notification_tools")


@require_POST
@security_admin_required
def tool_test(request, key):
    """Test Connection on the drawer's current values, saved or not.

    From the drawer's script (X-Requested-With: fetch) the answer is the result
    partial, or, when it accepts application/x-ndjson, the steps as they end and
    then that partial (`streaming`); without JavaScript, the whole page with the
    drawer open.
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
    if streaming.ACCEPTED in request.headers.get("Accept", ""):
        return streaming.test_connection_stream(
            request,
            provider_key=key,
            cleaned_data=drawer.form.cleaned_data,
            context=context,
        )
    report = services.integration_test_connection(
        provider_key=key, cleaned_data=drawer.form.cleaned_data, actor=request.user
    )
    return TemplateResponse(request, template, {**context, "report": report})


@require_http_methods(["GET", "POST"])
@security_admin_required
def tool_deactivate(request, key):
    """GET asks for confirmation, naming the projects it pauses (the drawer asks in
    a dialog; this page is for browsers without JavaScript); POST deactivates."""
    provider_cls = _provider_or_404(key)
    integration = selectors.integration_for(key)
    active = integration.pk and integration.state != IntegrationState.INACTIVE
    if request.method == "GET":
        if not active:
            messages.info(
                request, _("%(name)s is not active.") % {"name": provider_cls.name}
            )
            return redirect("integrations:notification_tools")
        return TemplateResponse(
            request,
            "integrations/deactivate_confirm.html",
            {
                "open_tool": provider_cls,
                "paused_projects": selectors.projects_paused_by_deactivation(
                    integration
                ),
            },
        )
    if active:
        paused = selectors.projects_paused_by_deactivation(integration)
        services.integration_deactivate(provider_key=key, actor=request.user)
        text = _("%(name)s is deactivated.") % {"name": provider_cls.name}
        if paused:
            text += " " + _("Notifications are paused for: %(projects)s.") % {
                "projects": ", ".join(paused)
            }
        messages.success(request, text)
    return redirect("integrations:notification_tools")


@require_POST
@security_admin_required
def tool_health_recipients(request):
    """The "Tool health emails go to" form on the Notification Tools page."""
    form = ToolHealthRecipientsForm(request.POST)
    if not form.is_valid():
        return _page(request, status=400, health_recipients_form=form)
    row = tool_health_recipients_save(
        recipients=form.cleaned_data["recipients"], actor=request.user
    )
    if row.recipients:
        text = _("Tool health emails go to %(addresses)s.") % {
            "addresses": ", ".join(row.recipients)
        }
    else:
        text = _("Tool health emails go to every security admin.")
    messages.success(request, text)
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


#: Session key: the sign-in runs in a popup the drawer opened (the button's script
#: posts popup=1), so the callback page closes itself once it has told the drawer.
OAUTH_POPUP_SESSION_KEY = "integrations:oauth-popup"


def _authorize(request, drawer):
    request.session[OAUTH_POPUP_SESSION_KEY] = request.POST.get("popup") == "1"
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
def tool_save(request, key):
    """Save for an authorized delegated tool: keep its grant. A change to a setting
    the grant was given for is refused, on the fields, with words that say to use
    Save & Authorize."""
    drawer = Drawer.for_request(request, key)
    form = drawer.form
    if not form.is_valid():
        return drawer.page(request, status=400)
    try:
        services.integration_save_keeping_authorization(
            provider_key=key, cleaned_data=form.cleaned_data, actor=request.user
        )
    except AuthorizationSettingsChanged as error:
        for name in error.fields:
            if name in form.fields:
                form.add_error(name, NEEDS_SAVE_AND_AUTHORIZE)
        words = error.troubleshooting
        form.add_error(None, f"{words.title}. {words.text}")
        return drawer.page(request, status=400)
    except IntegrationError as error:
        return drawer.page(request, action_error=error, status=400)
    messages.success(
        request,
        _("%(name)s settings saved; the authorization is kept.")
        % {"name": drawer.provider_cls.name},
    )
    return redirect("integrations:notification_tools")


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
    """Where the identity provider sends the admin back after signing in.

    The page tells the drawer's tab (static/js/oauth_round_trip.js) and, in the
    popup the drawer opened, closes itself; otherwise it says to close the tab."""
    popup = bool(request.session.pop(OAUTH_POPUP_SESSION_KEY, False))
    try:
        integration = services.integration_authorize_complete(
            query=request.GET.dict(),
            actor=request.user,
            session_key=request.session.session_key or "",
        )
    except IntegrationError as error:
        return TemplateResponse(
            request,
            "integrations/oauth_result.html",
            {"error": error, "popup": popup},
            status=400,
        )
    provider_cls = providers().get(integration.provider)
    return TemplateResponse(
        request,
        "integrations/oauth_result.html",
        {
            "integration": integration,
            "provider": provider_cls,
            "authorization": selectors.delegated_authorization(integration),
            "popup": popup,
        },
    )
