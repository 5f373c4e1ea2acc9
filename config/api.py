"""The HTTP API, mounted at /api/v1/: one NinjaAPI, a router per app, one error shape.

Every error, whichever layer finds it, is answered here once, as
`{"error": {"code": "...", "message": "..."}}` (docs/API.md): the projects error
hierarchy, authentication, request validation, 404 for any other address under
/api/ (config/urls.py), 405 for a wrong method, 411 for a chunked body, 413 for a body
over the limit and 500 for anything unexpected (logged, its text never sent). The
OpenAPI description is generated from the routers and their schemas and served at
/api/v1/openapi.json; there is no docs page (Swagger UI loads its scripts from a
CDN, which the CSP and offline use forbid).
"""

import logging
from functools import wraps
from typing import get_args

from django.core.exceptions import (
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.core.signals import got_request_exception
from django.http import Http404, HttpResponseNotAllowed
from django.urls import URLPattern, path, re_path, reverse
from django.utils.log import log_response
from django.utils.translation import gettext as _
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from ninja import NinjaAPI
from ninja.errors import HttpError, ValidationError
from pydantic_core.core_schema import ErrorType

from projects.api import router as projects_router
from projects.exceptions import ProjectError, SarifTooLarge, TokenError

# Validation errors of pydantic's own; any other type is an API error code raised
# by a schema's validator (projects/schemas.py), with its message.
PYDANTIC_ERROR_TYPES = frozenset(get_args(ErrorType))
HTTP_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    429: "rate_limited",
}


class MethodNotAllowed(Exception):
    """The URL exists, but not for this method (HTTP 405)."""

    def __init__(self, allowed: list[str]):
        super().__init__(", ".join(allowed))
        self.allowed = allowed


class LengthRequired(Exception):
    """A chunked request body without a Content-Length (HTTP 411)."""


def is_chunked_without_length(request) -> bool:
    """Whether the body came chunked, with no Content-Length.

    Django reads a WSGI body up to CONTENT_LENGTH, so such a body would be taken as
    empty (and a SARIF import would say "the file is empty"). Servers differ in
    whether they de-chunk it, so it is refused, asking for a Content-Length, the
    way RFC 9110 §15.5.12 describes.
    """
    return "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower() and (
        not request.META.get("CONTENT_LENGTH")
    )


class Api(NinjaAPI):
    """NinjaAPI, with every answer in JSON: ninja answers a wrong method in plain
    text and leaves other addresses to Django's HTML 404."""

    def get_content_type(self) -> str:
        # JSON is UTF-8 by definition (RFC 8259), and has no charset parameter.
        return self.renderer.media_type

    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        # Paths relative to the server URL, e.g. "/projects/{slug}/scans" on
        # "/api/v1", as clients generated from the document join them.
        schema = super().get_openapi_schema(path_prefix="", path_params=path_params)
        schema["servers"] = [{"url": self.get_root_path(path_params or {}).rstrip("/")}]
        return schema

    @property
    def urls(self):
        patterns, app_name, namespace = super().urls
        ours = []
        for pattern in patterns:
            if pattern.name == "api-root":
                # Ninja's root view raises a bare Http404; the name must stay, since
                # ninja reverses it to find where the API is mounted.
                ours.append(path("", unknown_address, name="api-root"))
                continue
            ours.append(self._json_errors(pattern))
            if pattern.name == "openapi-json":
                # The name the pages link with ({% url 'api:openapi' %}).
                ours.append(
                    URLPattern(pattern.pattern, ours[-1].callback, name="openapi")
                )
        ours.append(re_path("", unknown_address, name="unknown_address"))
        return ours, app_name, namespace

    def _json_errors(self, pattern: URLPattern) -> URLPattern:
        """The view, refusing a chunked body before it is read, and with ninja's
        plain-text 405 answered in JSON."""
        view = pattern.callback

        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if is_chunked_without_length(request):
                return self.on_exception(request, LengthRequired())
            response = view(request, *args, **kwargs)
            if isinstance(response, HttpResponseNotAllowed):
                allowed = sorted(m.strip() for m in response["Allow"].split(","))
                return self.on_exception(request, MethodNotAllowed(allowed))
            return response

        return URLPattern(
            pattern.pattern, wrapper, pattern.default_args, name=pattern.name
        )


api = Api(
    title="M365 AppSec Mail API",
    version="1.0.0",
    description=(
        "Import SARIF 2.1.0 scans and triage findings. Authenticate with a "
        "per-project token: `Authorization: Bearer <token>` (create one in Project › "
        "Settings › API tokens). Errors are JSON: "
        '`{"error": {"code": "...", "message": "..."}}`.'
    ),
    urls_namespace="api",
    docs_url=None,
    # A GET-only, CSRF-free description: any other method is the JSON 405.
    docs_decorator=lambda view: csrf_exempt(require_GET(view)),
)
api.add_router("/projects/", projects_router)


def error(request, status: int, code: str, message, headers=None):
    """The one error answer: `{"error": {"code": ..., "message": ...}}`."""
    response = api.create_response(
        request, {"error": {"code": code, "message": str(message)}}, status=status
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


@csrf_exempt
def unknown_address(request, *args, **kwargs):
    """Any other address under /api/, answered in JSON like the rest."""
    if is_chunked_without_length(request):
        return api.on_exception(request, LengthRequired())
    return api.on_exception(
        request,
        Http404(
            _("No such API address. See %(url)s for the endpoints.")
            % {"url": reverse("api:openapi-json")}
        ),
    )


@api.exception_handler(TokenError)
def token_error(request, exc: TokenError):
    return error(
        request, 401, exc.code, exc.message, headers={"WWW-Authenticate": "Bearer"}
    )


@api.exception_handler(SarifTooLarge)
def sarif_too_large(request, exc: SarifTooLarge):
    return error(request, 413, exc.code, exc.message)


@api.exception_handler(ProjectError)
def project_error(request, exc: ProjectError):
    return error(request, 400, exc.code, exc.message)


@api.exception_handler(RequestDataTooBig)
def request_too_large(request, exc: RequestDataTooBig):
    return error(request, 413, "too_large", _("The request body is too large."))


@api.exception_handler(LengthRequired)
def length_required(request, exc: LengthRequired):
    return error(
        request,
        411,
        "length_required",
        _(
            "Send the request body with a Content-Length header; chunked bodies "
            "(Transfer-Encoding: chunked) are not accepted."
        ),
    )


@api.exception_handler(SuspiciousOperation)
def suspicious_request(request, exc: SuspiciousOperation):
    """A request Django refuses as malformed (too many fields or files, a bad
    Host...): a 400, logged to django.security as Django logs it."""
    logging.getLogger(f"django.security.{exc.__class__.__name__}").error(
        str(exc), extra={"status_code": 400, "request": request}
    )
    return error(request, 400, "bad_request", _("The request is malformed."))


@api.exception_handler(Http404)
def not_found(request, exc: Http404):
    return error(request, 404, "not_found", str(exc) or _("Not found."))


@api.exception_handler(PermissionDenied)
def forbidden(request, exc: PermissionDenied):
    return error(
        request, 403, "forbidden", str(exc) or _("This token may not do that.")
    )


@api.exception_handler(MethodNotAllowed)
def method_not_allowed(request, exc: MethodNotAllowed):
    methods = ", ".join(exc.allowed)
    return error(
        request,
        405,
        "method_not_allowed",
        _("Use %(methods)s on this URL.") % {"methods": methods},
        headers={"Allow": methods},
    )


@api.exception_handler(ValidationError)
def invalid_request(request, exc: ValidationError):
    """The first problem found. A path parameter that is not valid names nothing,
    so it is a 404 before anything else is looked at."""
    problem = min(exc.errors, key=lambda e: e["loc"][0] != "path")
    where, *field = problem["loc"]
    own_code = problem["type"] not in PYDANTIC_ERROR_TYPES
    if where == "path":
        return error(request, 404, "not_found", problem["msg"])
    if own_code:
        return error(request, 400, problem["type"], problem["msg"])
    if where == "body":
        field = field[1:]  # the first is the view's argument, not in the JSON
    if field:
        message = _("“%(field)s”: %(problem)s") % {
            "field": ".".join(str(part) for part in field),
            "problem": problem["msg"],
        }
    else:
        message = _("Send the request body as a JSON object (see %(url)s).") % {
            "url": reverse("api:openapi-json")
        }
    return error(request, 400, f"invalid_{where}", message)


@api.exception_handler(HttpError)
def http_error(request, exc: HttpError):
    """Ninja's own errors. A body it cannot parse is the one that occurs here:
    not JSON (ValueError), or nested too deep for the parser (RecursionError).
    Its message would carry the parser's text in DEBUG, so it is never used."""
    if exc.status_code == 400 and exc.__cause__ is not None:
        # Only PATCH .../findings/{id} has a body that ninja parses.
        return error(
            request,
            400,
            "invalid_json",
            _('Send a JSON object, e.g. {"status": "confirmed"}.'),
        )
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return error(
        request,
        exc.status_code,
        HTTP_ERROR_CODES.get(exc.status_code, "error"),
        exc.message,
        headers,
    )


@api.exception_handler(Exception)
def server_error(request, exc: Exception):
    """Anything unexpected: logged with its traceback as Django logs a 500 (and
    signalled, so the test client and error trackers see it), answered in JSON
    without a word of the exception (ninja would send the traceback in DEBUG)."""
    got_request_exception.send(sender=None, request=request)
    response = server_error_answer(request)
    # Once, with the traceback (Django would log the 500 again without it).
    log_response(
        "Internal Server Error: %s",
        request.path,
        response=response,
        request=request,
        exception=exc,
    )
    return response


def server_error_answer(request):
    return error(
        request,
        500,
        "server_error",
        _(
            "Something went wrong on the server; it has been logged. Try again, "
            "and report it if it persists."
        ),
    )


def is_api_request(request) -> bool:
    return request.path_info.startswith("/api/")


def handler500(request, *args, **kwargs):
    """Django's 500 view (config/urls.py): JSON under /api/ for a failure outside
    the API's own views (a middleware's), Django's page elsewhere."""
    if is_api_request(request):
        return server_error_answer(request)
    return defaults.server_error(request, *args, **kwargs)


def handler400(request, exception, *args, **kwargs):
    """Django's 400 view, e.g. for a disallowed Host or a malformed upload: JSON
    under /api/, Django's page elsewhere."""
    if is_api_request(request):
        return error(request, 400, "bad_request", _("The request is malformed."))
    return defaults.bad_request(request, exception, *args, **kwargs)
