"""Project pages. Each view parses the request, calls one service, renders."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from integrations.permissions import is_security_admin
from projects import scan_queue, selectors, services
from projects.access import ONLY_OWNERS, project_view
from projects.exceptions import ProjectError
from projects.forms import (
    ApiTokenForm,
    FindingFilterForm,
    FindingStatusForm,
    MembershipForm,
    ProjectCreateForm,
    ScanUploadForm,
)
from projects.models import Finding, Membership, Scan, ScanSource, ScanStatus
from projects.workflow import ACTIVE_STATUSES

FINDINGS_PER_PAGE = 50


@login_required
@require_http_methods(["GET", "POST"])
def project_list(request):
    can_create = is_security_admin(request.user)
    form = ProjectCreateForm(request.POST or None) if can_create else None
    if request.method == "POST":
        if not can_create:
            raise PermissionDenied(_("Only security admins can create projects."))
        if form.is_valid():
            try:
                project = services.project_create(
                    name=form.cleaned_data["name"],
                    slug=form.cleaned_data["slug"],
                )
            except ProjectError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(
                    request,
                    _("Project “%(name)s” created. Now add its owners.")
                    % {"name": project.name},
                )
                return redirect("projects:settings", slug=project.slug)
    projects = selectors.projects_for_user(user=request.user).annotate(
        active_findings=Count(
            "findings", filter=Q(findings__status__in=ACTIVE_STATUSES)
        )
    )
    return render(
        request,
        "projects/list.html",
        {"projects": projects, "form": form, "can_create": can_create},
        status=400 if form is not None and form.errors else 200,
    )


@require_GET
@project_view()
def project_detail(request, project, access):
    filters = FindingFilterForm(request.GET or None)
    status = severity = None
    if filters.is_bound:
        # An unknown value is ignored on its own: a bad severity keeps the status.
        filters.is_valid()
        status = filters.cleaned_data.get("status") or None
        severity = filters.cleaned_data.get("severity") or None
    findings = selectors.findings_for_project(
        project=project, status=status, severity=severity
    )
    page = Paginator(findings, FINDINGS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "projects/detail.html",
        {
            "project": project,
            "access": access,
            "filters": filters,
            "page": page,
            "query": query.urlencode(),
            "scans": selectors.scans_for_project(project=project)[:5],
            "upload_form": ScanUploadForm() if access.can_manage else None,
            "async_threshold": settings.SARIF_ASYNC_THRESHOLD_BYTES,
        },
    )


@require_POST
@project_view("manage")
def scan_upload(request, project, access):
    form = ScanUploadForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            scan = scan_queue.scan_submit(
                project=project,
                sarif=form.cleaned_data["file"],
                source=ScanSource.UPLOAD,
                actor=request.user,
                category=form.cleaned_data.get("category") or "",
            )
        except ProjectError as exc:
            form.add_error("file", exc.message)
        else:
            if scan.status == ScanStatus.QUEUED:
                # Too large to import inside this request: the worker does it, and
                # the scan's page follows it.
                return redirect("projects:scan", slug=project.slug, scan_id=scan.pk)
            messages.success(
                request,
                _(
                    "Scan imported: %(new)s new, %(seen)s seen again, %(resolved)s "
                    "resolved, %(reopened)s re-opened."
                )
                % {
                    "new": scan.new_count,
                    "seen": scan.seen_again_count,
                    "resolved": scan.resolved_count,
                    "reopened": scan.reopened_count,
                },
            )
            if scan.incomplete:
                messages.warning(
                    request,
                    _(
                        "A run in this file failed or sent no results, so its tool "
                        "and category resolved no findings. See the scan's notes."
                    ),
                )
            return redirect("projects:detail", slug=project.slug)
    return render(
        request,
        "projects/upload.html",
        {
            "project": project,
            "access": access,
            "upload_form": form,
            "async_threshold": settings.SARIF_ASYNC_THRESHOLD_BYTES,
        },
        status=400,
    )


@require_GET
@project_view()
def scan_detail(request, project, access, scan_id):
    """A scan's status and summary. A queued import's page asks again every few
    seconds (static/js/scan_status.js, with X-Requested-With: fetch) for the status
    part only, until the scan is complete or failed."""
    try:
        scan = selectors.scan_get(project=project, scan_id=scan_id)
    except Scan.DoesNotExist:
        raise Http404 from None
    template = "projects/scan.html"
    if request.headers.get("X-Requested-With") == "fetch":
        template += "#status"
    response = render(
        request,
        template,
        {
            "project": project,
            "access": access,
            "scan": scan,
            "final": scan.status in scan_queue.FINAL_STATUSES,
        },
    )
    # The status changes: every poll must reach the server.
    response["Cache-Control"] = "no-store"
    return response


def _finding_or_404(project, finding_id) -> Finding:
    try:
        return selectors.finding_get(project=project, finding_id=finding_id)
    except Finding.DoesNotExist:
        raise Http404 from None


@require_http_methods(["GET", "POST"])
@project_view()
def finding_detail(request, project, access, finding_id):
    finding = _finding_or_404(project, finding_id)
    form = None
    status = 200
    if access.can_manage:
        choices = selectors.finding_next_statuses(finding=finding)
        form = FindingStatusForm(request.POST or None, choices=choices)
    if request.method == "POST":
        if not access.can_manage:
            raise PermissionDenied(ONLY_OWNERS)
        if form.is_valid():
            try:
                services.finding_status_change(
                    finding=finding,
                    status=form.cleaned_data["status"],
                    actor=request.user,
                )
            except ProjectError as exc:
                form.add_error("status", exc.message)
            else:
                messages.success(
                    request,
                    _("Status changed to %(status)s.")
                    % {"status": finding.get_status_display()},
                )
                return redirect(
                    "projects:finding", slug=project.slug, finding_id=finding.pk
                )
        status = 400
    return render(
        request,
        "projects/finding.html",
        {
            "project": project,
            "access": access,
            "finding": finding,
            "history": selectors.finding_history(finding=finding),
            "form": form,
        },
        status=status,
    )


def _settings_page(request, project, access, *, status=200, **context):
    context.setdefault(
        "member_form", MembershipForm() if access.can_manage_members else None
    )
    context.setdefault("token_form", ApiTokenForm() if access.can_manage else None)
    return render(
        request,
        "projects/settings.html",
        {
            "project": project,
            "access": access,
            "memberships": selectors.memberships_for_project(project=project),
            "tokens": selectors.api_tokens_with_state(project=project),
            # Served by the notifications app, in this namespace (projects/urls.py).
            "notification_tools_url": reverse(
                "projects:notification_tools", kwargs={"slug": project.slug}
            ),
            **context,
        },
        status=status,
    )


@require_GET
@project_view()
def project_settings(request, project, access):
    return _settings_page(request, project, access)


@require_POST
@project_view("members")
def membership_add(request, project, access):
    form = MembershipForm(request.POST)
    if form.is_valid():
        try:
            services.membership_set(
                project=project,
                user=form.cleaned_data["user"],
                role=form.cleaned_data["role"],
                actor=request.user,
            )
        except ProjectError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(
                request,
                _("%(user)s is now %(role)s.")
                % {
                    "user": form.cleaned_data["user"].get_username(),
                    "role": dict(form.fields["role"].choices)[
                        form.cleaned_data["role"]
                    ],
                },
            )
            return redirect("projects:settings", slug=project.slug)
    return _settings_page(request, project, access, member_form=form, status=400)


@require_POST
@project_view("members")
def membership_remove(request, project, access, membership_id):
    membership = Membership.objects.filter(project=project, pk=membership_id).first()
    if membership is None:
        raise Http404
    services.membership_remove(
        project=project, user=membership.user, actor=request.user
    )
    messages.success(
        request, _("%(user)s removed.") % {"user": membership.user.get_username()}
    )
    return redirect("projects:settings", slug=project.slug)


@require_POST
@project_view("manage")
def token_create(request, project, access):
    form = ApiTokenForm(request.POST)
    if form.is_valid():
        try:
            token, raw = services.api_token_create(
                project=project,
                name=form.cleaned_data["name"],
                actor=request.user,
                expires_in_days=form.cleaned_data["expires_in_days"],
            )
        except ProjectError as exc:
            field = "expires_in_days" if exc.code == "invalid_expiry" else "name"
            form.add_error(field, exc.message)
        else:
            # Rendered, not redirected: the raw token exists only in this response.
            response = _settings_page(
                request, project, access, new_token=token, new_token_value=raw
            )
            response["Cache-Control"] = "no-store"
            return response
    return _settings_page(request, project, access, token_form=form, status=400)


@require_POST
@project_view("manage")
def token_revoke(request, project, access, token_id):
    token = (
        selectors.api_tokens_for_project(project=project).filter(pk=token_id).first()
    )
    if token is None:
        raise Http404
    services.api_token_revoke(token=token, actor=request.user)
    messages.success(request, _("Token “%(name)s” revoked.") % {"name": token.name})
    return redirect("projects:settings", slug=project.slug)
