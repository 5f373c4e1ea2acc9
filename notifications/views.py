"""Project › Settings › Notification Tools, and the delivery logs.

Each view parses the request, calls one service, renders. Owners (and security
admins) change; members read; anyone else gets the same 404 as an unknown project.
"""

from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
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
from notifications.forms import (
    BouncedRecipientClearForm,
    DeliveryFilterForm,
    ToolLinkForm,
)
from notifications.models import Delivery, DeliveryStatus, ToolLink
from projects.access import ONLY_OWNERS, project_view

DELIVERIES_PER_PAGE = 50
#: Findings linked from a row of the delivery log; its message view lists more.
FINDINGS_PER_ROW = 3
FINDINGS_PER_MESSAGE = 50


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
            "read_only_reason": "" if access.can_manage else ONLY_OWNERS,
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
def bounced_recipient_clear(request, project, access, link_id):
    link = _link_or_404(project, link_id)
    form = BouncedRecipientClearForm(request.POST)
    if not form.is_valid():
        messages.error(request, form.errors.as_text())
    elif services.bounced_recipient_clear(
        link=link, address=form.cleaned_data["address"]
    ):
        messages.success(
            request,
            _("%(address)s cleared: it is sent to again.")
            % {"address": form.cleaned_data["address"]},
        )
    else:
        messages.error(request, _("That address has no bounces on this link."))
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


def _log_page(request, *, project=None, context):
    """The delivery log, filtered by `?status=` (validated: an unknown status is a
    400 that says which ones exist, never an empty page that looks like no mail)."""
    filters = DeliveryFilterForm(request.GET)
    status = 200
    if filters.is_valid():
        deliveries = selectors.deliveries_for_log(
            project=project, status=filters.cleaned_data["status"]
        )
    else:
        deliveries, status = Delivery.objects.none(), 400
    page = Paginator(deliveries, DELIVERIES_PER_PAGE).get_page(request.GET.get("page"))
    page.object_list = selectors.annotate_for_log(page.object_list)
    selectors.attach_findings(page.object_list, limit=FINDINGS_PER_ROW)
    return render(
        request,
        "notifications/deliveries.html",
        {
            "page": page,
            "filters": filters,
            "filter_query": filters.query_string(),
            "resendable": DeliveryStatus.FAILED,
            "project": project,
            **context,
        },
        status=status,
    )


@project_view()
@require_GET
def project_deliveries(request, project, access):
    return _log_page(
        request,
        project=project,
        context={"access": access, "can_resend": access.can_manage},
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
        raise PermissionDenied(ONLY_OWNERS)
    try:
        delivery = selectors.delivery_get(uuid=delivery_uuid, project=project)
    except Delivery.DoesNotExist:
        raise Http404 from None
    _resend(request, delivery)
    return redirect(reverse("projects:deliveries", kwargs={"slug": project.slug}))


@security_admin_required
@require_GET
def all_deliveries(request):
    return _log_page(request, context={"can_resend": True})


@security_admin_required
@require_http_methods(["POST"])
def delivery_resend(request, delivery_uuid):
    try:
        delivery = selectors.delivery_get(uuid=delivery_uuid)
    except Delivery.DoesNotExist:
        raise Http404 from None
    _resend(request, delivery)
    return redirect("notifications:deliveries")


# --- The message as sent (issue 15, item 10) -------------------------------------------

#: The message's HTML is shown in `<iframe sandbox srcdoc>`, which takes this page's
#: policy: the emails style with `style` attributes, which this allows on this page
#: only (no script runs in the frame, and the page's own markup is escaped).
_MESSAGE_CSP = {"style-src-attr": [UNSAFE_INLINE]}


def _message_page(request, delivery, *, project=None):
    """Subject, recipients and status of one delivery, and its message rendered
    again from its recorded events as it was sent: the HTML in a sandboxed frame
    (no script, no form, no same origin), the plain text as text."""
    selectors.annotate_for_log([delivery])
    selectors.attach_findings([delivery], limit=FINDINGS_PER_MESSAGE)
    return render(
        request,
        "notifications/delivery.html",
        {
            "delivery": delivery,
            "project": project,
            "email": selectors.delivery_message(delivery),
            "log_url": (
                reverse("projects:deliveries", kwargs={"slug": project.slug})
                if project
                else reverse("notifications:deliveries")
            ),
        },
    )


@csp_update(_MESSAGE_CSP)
@project_view()
@require_GET
def project_delivery_message(request, project, access, delivery_uuid):
    try:
        delivery = selectors.delivery_for_message(uuid=delivery_uuid, project=project)
    except Delivery.DoesNotExist:
        raise Http404 from None
    return _message_page(request, delivery, project=project)


@csp_update(_MESSAGE_CSP)
@security_admin_required
@require_GET
def delivery_message(request, delivery_uuid):
    try:
        delivery = selectors.delivery_for_message(uuid=delivery_uuid)
    except Delivery.DoesNotExist:
        raise Http404 from None
    return _message_page(request, delivery)
