"""The projects router of the HTTP API (config/api.py), under /api/v1/projects/.

Every operation is authenticated by a project's API token and scoped to that project;
errors are raised and config/api.py answers them in the documented JSON shape.
"""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.urls import reverse
from django.utils.translation import gettext as _
from ninja import Body, Path, Query, Router
from ninja.responses import Status
from ninja.security import HttpBearer

from projects import scan_queue, schemas, selectors, services
from projects.exceptions import ProjectError, SarifTooLarge
from projects.models import Finding, Scan, ScanSource, ScanStatus
from projects.workflow import ALLOWED_TRANSITIONS

# Room for multipart boundaries and headers around a file at the size limit.
MULTIPART_OVERHEAD = 64 * 1024

ProjectSlug = Path[
    str, {"description": "The project's slug; must be the token's own project."}
]
FindingIdParam = Path[
    schemas.FindingId,
    {
        "description": (
            "The finding's id: ASCII digits (at most 18). Anything else, or another "
            "project's finding, is a 404."
        )
    },
]
ScanIdParam = Path[
    schemas.ScanId,
    {
        "description": (
            "The scan's id, as in the import's answer: ASCII digits (at most 18). "
            "Anything else, or another project's scan, is a 404."
        )
    },
]
CategoryParam = Query[
    str,
    {
        "description": (
            "The analysis category, as GitHub code scanning's (e.g. "
            "`codeql-javascript`; at most 255 printable characters): the scan "
            "replaces only the earlier results of its tool and category. Empty: "
            "each run's `automationDetails.id`. A multipart upload may send it as a "
            "`category` field instead."
        )
    },
]
# An empty body is validated too, as null, so that it gets StatusChange's message.
StatusChangeBody = Body[schemas.StatusChange, dict(default=None, validate_default=True)]

ERRORS = {
    400: "The request needs fixing; `error.message` says what.",
    401: (
        "Missing, unknown, revoked or expired token (`token_missing`, "
        "`token_invalid`, `token_revoked`, `token_expired`), or a token disabled "
        "because its creator may no longer manage the project: removed from it, "
        "made a plain member, deactivated or deleted (`token_disabled`)."
    ),
    404: "No such project for this token, or no such finding or scan in it.",
    413: (
        "The request is over the size limit: SARIF_MAX_BYTES (50 MB by default) for "
        "a SARIF file, DATA_UPLOAD_MAX_MEMORY_SIZE for other bodies."
    ),
}


class ProjectToken(HttpBearer):
    """`Authorization: Bearer <token>` with a project's API token, valid only under
    that project's own /projects/<slug>/ URLs.

    The header goes whole to `api_token_authenticate`, which raises TokenError (401)
    with a code saying what is wrong (HttpBearer's own parsing would also log a
    header without the scheme, i.e. the token, when DEBUG is on). Another project's
    slug, known or not, is the same 404 as an unknown one.
    """

    openapi_description = "A project API token (starts with `m365as_`)."

    def __call__(self, request):
        return self.authenticate(request, request.headers.get(self.header))

    def authenticate(self, request, authorization):
        token = services.api_token_authenticate(authorization=authorization)
        slug = request.resolver_match.kwargs.get("slug", "")
        if token.project.slug != slug:
            raise Http404(
                _("No project “%(slug)s” for this token.") % {"slug": slug[:100]}
            )
        return token


router = Router(auth=ProjectToken(), tags=["projects"])


def documented(
    responses: dict, *errors: int, request_body=None, success_extra=None
) -> dict:
    """`response` and `openapi_extra` for an operation: its success schemas, the
    error statuses it may answer (each with the Error schema and its description),
    a request body read by the view itself rather than by a schema, and more about
    a success status (its description, headers)."""
    extra = {
        "responses": {status: {"description": ERRORS[status]} for status in errors}
    }
    extra["responses"].update(success_extra or {})
    if request_body:
        extra["requestBody"] = request_body
    return {
        "response": {**responses, frozenset(errors): schemas.Error},
        "openapi_extra": extra,
    }


def _too_large(limit: int) -> SarifTooLarge:
    return SarifTooLarge(
        _(
            "The request is larger than the %(limit)s SARIF limit. Import fewer "
            "results per file or raise SARIF_MAX_BYTES."
        )
        % {"limit": f"{limit / (1024 * 1024):.1f} MB"}
    )


SARIF_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "description": 'A SARIF 2.1.0 log (version "2.1.0", runs[])',
                "required": ["version", "runs"],
                "properties": {
                    "version": {"const": "2.1.0"},
                    "runs": {"type": "array"},
                },
            }
        },
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "contentMediaType": "application/sarif+json",
                    },
                    "category": {
                        "type": "string",
                        "maxLength": 255,
                        "description": "As the `category` query parameter.",
                    },
                },
            }
        },
    },
}


def _scan_answer(request: HttpRequest, scan: Scan) -> dict:
    """`{"scan": ...}`, with the absolute URL of the scan's status resource."""
    scan.url = request.build_absolute_uri(
        reverse("api:scan", kwargs={"slug": scan.project.slug, "id": scan.pk})
    )
    return {"scan": scan}


@router.post(
    "/{slug:slug}/scans",
    operation_id="importScan",
    summary="Import a SARIF 2.1.0 report",
    description=(
        "New results become findings; results seen before are matched by "
        "fingerprint; open findings of the same tool and category missing from "
        "this report are resolved (unless its run failed or sent `results: null`); "
        "resolved findings reported again are re-opened. Importing the "
        "same report twice creates no new findings.\n\n"
        "A report up to SARIF_ASYNC_THRESHOLD_BYTES (4 MiB by default) is imported "
        "at once: `201`, the scan `complete`. A larger one is queued for the "
        "worker: `202`, the scan `queued`, and its status URL in `Location` and "
        "`scan.url`; GET that until `status` is `complete` or `failed`. Problems "
        "with a queued report's content are in the scan's `error`, not a 400."
    ),
    url_name="scans",
    **documented(
        {201: schemas.ScanOne, 202: schemas.ScanOne},
        400,
        401,
        404,
        413,
        request_body=SARIF_BODY,
        success_extra={
            201: {"description": "Imported: the scan is `complete`."},
            202: {
                "description": (
                    "Queued for the worker: the scan is `queued`. GET its `Location` "
                    "(also `scan.url`) until `status` is final."
                ),
                "headers": {
                    "Location": {
                        "description": "The absolute URL of the scan (getScan).",
                        "schema": {"type": "string", "format": "uri"},
                    }
                },
            },
        },
    ),
)
def scan_import(
    request, response: HttpResponse, slug: ProjectSlug, category: CategoryParam = ""
):
    # The body is read here, not by a schema: a SARIF file may be far larger than
    # DATA_UPLOAD_MAX_MEMORY_SIZE, and is parsed by projects/sarif.py.
    limit = settings.SARIF_MAX_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if request.content_type == "multipart/form-data":
        if length > limit + MULTIPART_OVERHEAD:
            raise _too_large(limit)
        try:
            sarif = request.FILES.get("file")
        except (MultiPartParserError, RequestDataTooBig):
            sarif = None
        if sarif is None:
            raise ProjectError(
                _(
                    "Send the SARIF file in a multipart field named “file”, or as "
                    "the request body with Content-Type: application/json."
                ),
                code="missing_file",
            )
        category = request.POST.get("category", category)
    else:
        if length > limit:
            raise _too_large(limit)
        # Read the stream directly: request.body is capped far lower, by
        # DATA_UPLOAD_MAX_MEMORY_SIZE. One byte over the limit is enough to tell.
        sarif = request.read(limit + 1)
    # Checked before a large file is queued, so that the answer is a 400.
    category = services.scan_category_clean(category=category)
    try:
        scan = scan_queue.scan_submit(
            project=request.auth.project,
            sarif=sarif,
            source=ScanSource.API,
            actor=request.auth.created_by,
            category=category,
        )
    except SarifTooLarge:
        raise _too_large(limit)
    answer = _scan_answer(request, scan)
    if scan.status != ScanStatus.QUEUED:
        return Status(201, answer)
    # As GitHub's SARIF upload: accepted, to be processed; poll the status URL.
    response["Location"] = scan.url
    return Status(202, answer)


@router.get(
    "/{slug:slug}/scans/{id}",
    operation_id="getScan",
    summary="One scan: its import status, counts and problems",
    description=(
        "Poll a queued import here (every few seconds) until `status` is "
        "`complete` (the counts are final) or `failed` (`error` says what to fix; "
        "nothing was imported)."
    ),
    url_name="scan",
    **documented({200: schemas.ScanOne}, 401, 404),
)
def scan_get(request, slug: ProjectSlug, id: ScanIdParam):
    try:
        scan = selectors.scan_get(project=request.auth.project, scan_id=id)
    except Scan.DoesNotExist:
        raise Http404(_("No scan %(id)s in this project.") % {"id": id})
    return _scan_answer(request, scan)


@router.get(
    "/{slug:slug}/findings",
    operation_id="listFindings",
    summary="List findings, most severe first",
    url_name="findings",
    **documented({200: schemas.FindingPage}, 400, 401, 404),
)
def finding_list(request, slug: ProjectSlug, filters: Query[schemas.FindingFilters]):
    findings = selectors.findings_for_project(
        project=request.auth.project, status=filters.status, severity=filters.severity
    )
    start, end = filters.offset, filters.offset + filters.limit
    return {
        "count": findings.count(),
        "limit": filters.limit,
        "offset": filters.offset,
        "results": findings[start:end],
    }


def _finding(request, finding_id: int) -> Finding:
    try:
        return selectors.finding_get(
            project=request.auth.project, finding_id=finding_id
        )
    except Finding.DoesNotExist:
        raise Http404(_("No finding %(id)s in this project.") % {"id": finding_id})


@router.get(
    "/{slug:slug}/findings/{id}",
    operation_id="getFinding",
    summary="One finding",
    url_name="finding",
    **documented({200: schemas.FindingOne}, 401, 404),
)
def finding_get(request, slug: ProjectSlug, id: FindingIdParam):
    return {"finding": _finding(request, id)}


@router.patch(
    "/{slug:slug}/findings/{id}",
    operation_id="changeFindingStatus",
    summary="Change a finding's status",
    description=(
        "Allowed moves: "
        + "; ".join(
            f"{status} → {', '.join(moves)}"
            for status, moves in ALLOWED_TRANSITIONS.items()
        )
        + ". Emits a status-changed event."
    ),
    **documented(
        {200: schemas.FindingOne}, 400, 401, 404, 413, request_body={"required": True}
    ),
)
def finding_status_change(
    request,
    slug: ProjectSlug,
    id: FindingIdParam,
    change: StatusChangeBody,
):
    finding = services.finding_status_change(
        finding=_finding(request, id),
        status=change.status,
        actor=request.auth.created_by,
    )
    return {"finding": finding}
