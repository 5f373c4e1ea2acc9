"""The HTTP API under /api/v1/, authenticated by per-project Bearer tokens.

Described in projects/openapi.json (served at /api/v1/openapi.json) and docs/API.md.
Views are CSRF-exempt because they accept only token authentication, never the
session cookie.
"""

import json
from functools import wraps
from pathlib import Path

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from projects import selectors, services
from projects.converters import decimal_id
from projects.exceptions import ProjectError, SarifTooLarge
from projects.models import Finding, FindingStatus, ScanSource, Severity
from projects.services import DEFAULT_SARIF_MAX_BYTES, TokenError

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_OFFSET = 10**9
# Room for multipart boundaries and headers around a file at the size limit.
MULTIPART_OVERHEAD = 64 * 1024


def error(status: int, code: str, message: str, **headers) -> JsonResponse:
    response = JsonResponse(
        {"error": {"code": code, "message": str(message)}}, status=status
    )
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def token_api(*methods):
    """Method check, Bearer token, and the token's own project or a 404."""

    def decorator(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request, slug, *args, **kwargs):
            if request.method not in methods:
                response = error(
                    405,
                    "method_not_allowed",
                    _("Use %(methods)s on this URL.") % {"methods": ", ".join(methods)},
                )
                response["Allow"] = ", ".join(methods)
                return response
            try:
                token = services.api_token_authenticate(
                    authorization=request.headers.get("Authorization")
                )
            except TokenError as exc:
                return error(401, exc.code, exc.message, WWW_Authenticate="Bearer")
            if token.project.slug != slug:
                # Another project's slug, known or not: the same answer.
                return error(
                    404,
                    "not_found",
                    _("No project “%(slug)s” for this token.") % {"slug": slug[:100]},
                )
            return view(request, token, token.project, *args, **kwargs)

        return wrapper

    return decorator


def scan_json(scan) -> dict:
    return {
        "id": scan.pk,
        "project": scan.project.slug,
        "tool_name": scan.tool_name,
        "tool_version": scan.tool_version,
        "source": scan.source,
        "created_at": scan.created_at.isoformat(),
        "new": scan.new_count,
        "seen_again": scan.seen_again_count,
        "resolved": scan.resolved_count,
        "reopened": scan.reopened_count,
    }


def finding_json(finding) -> dict:
    return {
        "id": finding.pk,
        "fingerprint": finding.fingerprint,
        "tool_name": finding.tool_name,
        "rule_id": finding.rule_id,
        "rule_name": finding.rule_name,
        "message": finding.message,
        "severity": finding.severity,
        "status": finding.status,
        "path": finding.path,
        "start_line": finding.start_line,
        "first_seen_scan_id": finding.first_seen_scan_id,
        "last_seen_scan_id": finding.last_seen_scan_id,
        "created_at": finding.created_at.isoformat(),
        "updated_at": finding.updated_at.isoformat(),
    }


@csrf_exempt
def unknown_address(request):
    """Any other address under /api/v1/, answered in JSON like the rest."""
    return error(
        404,
        "not_found",
        _("No such API address. See /api/v1/openapi.json for the endpoints."),
    )


@require_GET
def openapi(request):
    return JsonResponse(json.loads(OPENAPI_PATH.read_text(encoding="utf-8")))


def _too_large(limit):
    return error(
        413,
        SarifTooLarge.code,
        _(
            "The request is larger than the %(limit)s SARIF limit. Import fewer "
            "results per file or raise SARIF_MAX_BYTES."
        )
        % {"limit": f"{limit / (1024 * 1024):.1f} MB"},
    )


@token_api("POST")
def scans(request, token, project):
    limit = getattr(settings, "SARIF_MAX_BYTES", DEFAULT_SARIF_MAX_BYTES)
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if request.content_type == "multipart/form-data":
        if length > limit + MULTIPART_OVERHEAD:
            return _too_large(limit)
        try:
            sarif = request.FILES.get("file")
        except (MultiPartParserError, RequestDataTooBig):
            sarif = None
        if sarif is None:
            return error(
                400,
                "missing_file",
                _(
                    "Send the SARIF file in a multipart field named “file”, or as "
                    "the request body with Content-Type: application/json."
                ),
            )
    else:
        if length > limit:
            return _too_large(limit)
        # Read the stream directly: request.body is capped far lower, by
        # DATA_UPLOAD_MAX_MEMORY_SIZE. One byte over the limit is enough to tell.
        sarif = request.read(limit + 1)
    try:
        scan = services.scan_import(
            project=project, sarif=sarif, source=ScanSource.API, actor=token.created_by
        )
    except SarifTooLarge:
        return _too_large(limit)
    except ProjectError as exc:
        return error(400, exc.code, exc.message)
    return JsonResponse({"scan": scan_json(scan)}, status=201)


def _int_param(request, name, default, *, maximum):
    """An optional query parameter of ASCII digits from 0 to `maximum`; ValueError
    with a sentence to show otherwise (a sign, a space, "²", a 30-digit number)."""
    raw = request.GET.get(name)
    if raw in (None, ""):
        return default
    value = decimal_id(raw)
    if value is None or value > maximum:
        raise ValueError(
            _("“%(name)s” must be a whole number from 0 to %(top)s.")
            % {"name": name, "top": maximum}
        )
    return value


@token_api("GET")
def findings(request, token, project):
    status = request.GET.get("status") or None
    severity = request.GET.get("severity") or None
    if status is not None and status not in FindingStatus.values:
        return error(
            400,
            "invalid_filter",
            _("“status” must be one of: %(values)s.")
            % {"values": ", ".join(FindingStatus.values)},
        )
    if severity is not None and severity not in Severity.values:
        return error(
            400,
            "invalid_filter",
            _("“severity” must be one of: %(values)s.")
            % {"values": ", ".join(Severity.values)},
        )
    try:
        limit = _int_param(request, "limit", DEFAULT_LIMIT, maximum=MAX_LIMIT)
        offset = _int_param(request, "offset", 0, maximum=MAX_OFFSET)
    except ValueError as exc:
        return error(400, "invalid_pagination", str(exc))
    queryset = selectors.findings_for_project(
        project=project, status=status, severity=severity
    )
    return JsonResponse(
        {
            "count": queryset.count(),
            "limit": limit,
            "offset": offset,
            "results": [finding_json(f) for f in queryset[offset : offset + limit]],
        }
    )


@token_api("GET", "PATCH")
def finding(request, token, project, finding_id):
    not_found = error(
        404,
        "not_found",
        _("No finding %(id)s in this project.") % {"id": finding_id[:40]},
    )
    pk = decimal_id(finding_id)
    if pk is None:
        return not_found
    try:
        item = selectors.finding_get(project=project, finding_id=pk)
    except Finding.DoesNotExist:
        return not_found
    if request.method == "GET":
        return JsonResponse({"finding": finding_json(item)})

    try:
        body = json.loads(request.body or b"null")
    except RequestDataTooBig:
        return error(413, "too_large", _("The request body is too large."))
    except (ValueError, UnicodeDecodeError):
        return error(
            400, "invalid_json", _('Send a JSON object, e.g. {"status": "confirmed"}.')
        )
    if not isinstance(body, dict) or not isinstance(body.get("status"), str):
        return error(
            400,
            "invalid_body",
            _(
                "Send a JSON object with a “status” string, "
                'e.g. {"status": "confirmed"}.'
            ),
        )
    try:
        item = services.finding_status_change(
            finding=item, status=body["status"], actor=token.created_by
        )
    except ProjectError as exc:
        return error(400, exc.code, exc.message)
    return JsonResponse({"finding": finding_json(item)})
