"""Project › Settings › Notification Tools, and the delivery logs.

Each view parses the request, calls one service, renders. Owners (and security
admins) change; members read; anyone else gets the same 404 as an unknown project.
"""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from integrations.models import Integration
from integrations.permissions import security_admin_required
from notifications import selectors, services
from notifications.exceptions import NotificationError
from notifications.forms import ToolLinkForm
from notifications.models import Delivery, DeliveryStatus, ToolLink
from projects.access import project_view

DELIVERIES_PER_PAGE = 50


def _tools_url(project) -> str:
    return reverse("projects:notification_tools", kwargs={"slug": project.slug})


def _link_or_404(project, link_id) -> ToolLink:
    try:
        return selectors.link_get(project=project, link_id=link_id)
    except ToolLink.DoesNotExist:
        raise Http404 from None


def _tools_page(request, project, access, *, forms=None, status=200):
    forms = forms or {}
    rows = selectors.project_tools(project=project)
    for row in rows:
        if row.link is not None:
            form = forms.get(row.link.pk) or ToolLinkForm(link=row.link)
            if not access.can_manage:
                for field in form.fields.values():
                    field.disabled = True
            row.form = form
    return render(
        request,
        "notifications/project_tools.html",
        {
            "project": project,
            "access": access,
            "rows": rows,
            "deliveries_url": reverse(
                "projects:deliveries", kwargs={"slug": project.slug}
            ),
        },
        status=status,
    )


@project_view()
@require_GET
def notification_tools(request, project, access):
    return _tools_page(request, project, access)


@project_view("manage")
@require_POST
def link_create(request, project, access, integration_id):
    integration = get_object_or_404(Integration, pk=integration_id)
    try:
        services.link_create(
            project=project, integration=integration, actor=request.user
        )
    except NotificationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, _("Linked. Choose the events and recipients below."))
    return redirect(_tools_url(project))


@project_view("manage")
@require_POST
def link_update(request, project, access, link_id):
    link = _link_or_404(project, link_id)
    form = ToolLinkForm(request.POST, link=link)
    if not form.is_valid():
        return _tools_page(request, project, access, forms={link.pk: form}, status=400)
    data = form.cleaned_data
    try:
        services.link_update(
            link=link,
            enabled=data["enabled"],
            notify_new_vulnerabilities=data["notify_new_vulnerabilities"],
            minimum_severity=data["minimum_severity"],
            notify_scan_completed=data["notify_scan_completed"],
            notify_status_changed=data["notify_status_changed"],
            status_transitions=data["status_transitions"],
            recipients=data["recipients"],
            delivery_mode=data["delivery_mode"],
            actor=request.user,
        )
    except NotificationError as exc:
        # A refused recipient is shown on the Project recipients field.
        form.add_error(getattr(exc, "field", None), exc.message)
        return _tools_page(request, project, access, forms={link.pk: form}, status=400)
    messages.success(request, _("Notification settings saved."))
    return redirect(_tools_url(project))


@project_view("manage")
@require_POST
def link_delete(request, project, access, link_id):
    link = _link_or_404(project, link_id)
    services.link_delete(link=link)
    messages.success(request, _("Unlinked. This project no longer sends through it."))
    return redirect(_tools_url(project))


@project_view("manage")
@require_POST
def link_test(request, project, access, link_id):
    link = _link_or_404(project, link_id)
    try:
        delivery = services.link_send_test(link=link, actor=request.user)
    except NotificationError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            _("Test notification queued for %(recipients)s. See the delivery log.")
            % {"recipients": ", ".join(delivery.recipients) or _("nobody")},
        )
    return redirect(_tools_url(project))


def _log_page(request, deliveries, context):
    page = Paginator(deliveries, DELIVERIES_PER_PAGE).get_page(request.GET.get("page"))
    page.object_list = selectors.annotate_for_log(page.object_list)
    return render(
        request,
        "notifications/deliveries.html",
        {"page": page, "resendable": DeliveryStatus.FAILED, **context},
    )


@project_view()
@require_GET
def project_deliveries(request, project, access):
    return _log_page(
        request,
        selectors.deliveries_for_log(project=project),
        {"project": project, "access": access, "can_resend": access.can_manage},
    )


def _resend(request, delivery):
    if delivery.status not in (DeliveryStatus.FAILED, DeliveryStatus.SKIPPED):
        messages.error(request, _("Only a failed delivery can be sent again."))
        return
    services.delivery_resend(delivery=delivery)
    messages.success(request, _("Sending again."))


@project_view()
@require_POST
def project_delivery_resend(request, project, access, delivery_uuid):
    if not access.can_manage:
        raise PermissionDenied
    try:
        delivery = selectors.delivery_get(uuid=delivery_uuid, project=project)
    except Delivery.DoesNotExist:
        raise Http404 from None
    _resend(request, delivery)
    return redirect(reverse("projects:deliveries", kwargs={"slug": project.slug}))


@security_admin_required
@require_GET
def all_deliveries(request):
    return _log_page(
        request,
        selectors.deliveries_for_log(),
        {"project": None, "can_resend": True},
    )


@security_admin_required
@require_http_methods(["POST"])
def delivery_resend(request, delivery_uuid):
    try:
        delivery = selectors.delivery_get(uuid=delivery_uuid)
    except Delivery.DoesNotExist:
        raise Http404 from None
    _resend(request, delivery)
    return redirect("notifications:deliveries")
