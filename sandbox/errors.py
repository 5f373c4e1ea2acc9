"""Error bodies in the exact shapes Entra ID and Microsoft Graph answer with."""

import datetime
import json
import uuid

from aiohttp import web

from sandbox.keys import REQUEST_ID

# Entra ID (AADSTS) error codes the sandbox produces: code -> (error, status,
# description template).
# https://learn.microsoft.com/en-us/entra/identity-platform/reference-error-codes
# https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow#error-response-1
AADSTS = {
    50011: (
        "invalid_request",
        400,
        "The redirect URI '{redirect_uri}' specified in the request does not match "
        "the redirect URIs configured for the application '{client_id}'. Make sure "
        "the redirect URI sent in the request matches one added to your application "
        "in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to "
        "learn more about how to fix this.",
    ),
    50027: ("invalid_request", 400, "JWT token is invalid or malformed."),
    50196: (
        "temporarily_unavailable",
        429,
        "The server terminated an operation because it encountered a client request "
        "loop. Please contact your app vendor.",
    ),
    50057: ("invalid_grant", 400, "The user account is disabled."),
    50076: (
        "invalid_grant",
        400,
        "Due to a configuration change made by your administrator, or because you "
        "moved to a new location, you must use multi-factor authentication to "
        "access '{resource}'.",
    ),
    50126: (
        "invalid_grant",
        400,
        "Error validating credentials due to invalid username or password.",
    ),
    50173: (
        "invalid_grant",
        400,
        "The provided grant has expired due to it being revoked, a fresh auth token "
        "is needed. The user might have changed or reset their password. The grant "
        "was issued on '{issued}' and the TokensValidFrom date (before which tokens "
        "are not valid) for this user is '{valid_from}'.",
    ),
    54005: (
        "invalid_grant",
        400,
        "OAuth2 Authorization code was already redeemed, please retry with a new "
        "valid code or use an existing refresh token.",
    ),
    65001: (
        "invalid_grant",
        400,
        "The user or administrator has not consented to use the application with ID "
        "'{client_id}' named '{app_name}'. Send an interactive authorization request "
        "for this user and resource.",
    ),
    70000: (
        "invalid_grant",
        400,
        "Provided grant is invalid or malformed.",
    ),
    70003: (
        "unsupported_grant_type",
        400,
        "The app requested an unsupported grant type '{grant_type}'.",
    ),
    70008: (
        "invalid_grant",
        400,
        "The provided authorization code or refresh token has expired due to "
        "inactivity. Send a new interactive authorization request for this user and "
        "resource.",
    ),
    70011: (
        "invalid_scope",
        400,
        "The provided value for the input parameter 'scope' is not valid. The scope "
        "'{scope}' is not valid.",
    ),
    90002: (
        "invalid_request",
        400,
        "Tenant '{tenant}' not found. Check to make sure you have the correct tenant "
        "ID and are signing into the correct cloud. Check with your subscription "
        "administrator, this may happen if there are no active subscriptions for the "
        "tenant.",
    ),
    90033: (
        "temporarily_unavailable",
        503,
        "A transient error has occurred. Please try again.",
    ),
    90014: (
        "invalid_request",
        400,
        "The required field '{field}' is missing from the credential. Ensure that "
        "you have all the necessary parameters for the login request.",
    ),
    500011: (
        "invalid_resource",
        400,
        "The resource principal named {resource} was not found in the tenant named "
        "{tenant}.",
    ),
    501481: (
        "invalid_grant",
        400,
        "The Code_Verifier does not match the code_challenge supplied in the "
        "authorization request.",
    ),
    700016: (
        "unauthorized_client",
        400,
        "Application with identifier '{client_id}' was not found in the directory "
        "'{tenant}'. This can happen if the application has not been installed by "
        "the administrator of the tenant or consented to by any user in the tenant. "
        "You may have sent your authentication request to the wrong tenant.",
    ),
    700021: (
        "invalid_client",
        401,
        "Client assertion application identifier doesn't match 'client_id' "
        "parameter. Review the documentation at https://learn.microsoft.com/"
        "entra/identity-platform/certificate-credentials .",
    ),
    700024: (
        "invalid_client",
        401,
        "Client assertion is not within its valid time range.",
    ),
    700027: (
        "invalid_client",
        401,
        "Client assertion failed signature validation. {detail}",
    ),
    700082: (
        "invalid_grant",
        400,
        "The refresh token has expired due to inactivity. The token was issued on "
        "{issued} and was inactive for {inactive}.",
    ),
    900144: (
        "invalid_request",
        400,
        "The request body must contain the following parameter: '{field}'.",
    ),
    1002012: (
        "invalid_scope",
        400,
        "The provided value for scope {scope} is not valid. Client credential flows "
        "must have a scope value with /.default suffixed to the resource identifier "
        "(application ID URI).",
    ),
    7000215: (
        "invalid_client",
        401,
        "Invalid client secret provided. Ensure the secret being sent in the request "
        "is the client secret value, not the client secret ID, for a secret added to "
        "app '{client_id}'.",
    ),
    7000218: (
        "invalid_client",
        401,
        "The request body must contain the following parameter: 'client_assertion' "
        "or 'client_secret'.",
    ),
    7000222: (
        "invalid_client",
        401,
        "The provided client secret keys for app '{client_id}' are expired. Visit "
        "the Azure portal to create new keys for your app: "
        "https://aka.ms/NewClientSecret, or consider using certificate credentials "
        "for added security: https://aka.ms/certCreds.",
    ),
}


class AADError(Exception):
    """An Entra ID error; ``response()`` renders Microsoft's JSON body."""

    def __init__(
        self,
        code: int,
        status: int | None = None,
        error=None,
        extra: dict | None = None,
        **params,
    ):
        super().__init__(code)
        self.code = code
        # More fields of the body, as Entra ID adds them (``suberror``, ``claims``).
        self.extra = dict(extra or {})
        known = AADSTS.get(code)
        if known:
            default_error, default_status, template = known
            # ``description`` replaces the template (one code, several wordings).
            self.description = params.get("description") or template.format_map(
                _Blank(params)
            )
        else:
            default_error = (
                "temporarily_unavailable"
                if (status or 500) >= 429
                else ("invalid_request")
            )
            default_status = 503
            self.description = params.get("description") or (
                "The service is temporarily unavailable. Please try again later."
            )
        self.error = error or default_error
        self.status = status or default_status

    def body(self, correlation_id: str | None = None) -> dict:
        now = datetime.datetime.now(datetime.UTC)
        timestamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        trace_id = str(uuid.uuid4())
        correlation_id = correlation_id or str(uuid.uuid4())
        description = (
            f"AADSTS{self.code}: {self.description}\r\n"
            f"Trace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\n"
            f"Timestamp: {now.strftime('%Y-%m-%d %H:%M:%S')}Z"
        )
        return {
            "error": self.error,
            "error_description": description,
            "error_codes": [self.code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
            **self.extra,
        }

    def response(self, request: web.Request, headers=None) -> web.Response:
        correlation_id = request.headers.get("client-request-id")
        body = self.body(correlation_id)
        return web.json_response(
            body,
            status=self.status,
            headers={
                "x-ms-request-id": body["trace_id"],
                "Cache-Control": "no-store, no-cache",
                **(headers or {}),
            },
        )


class _Blank(dict):
    def __missing__(self, key):
        return ""


# Graph error codes for sendMail and /me.
# https://learn.microsoft.com/en-us/graph/errors
# https://learn.microsoft.com/en-us/graph/api/user-sendmail#response
GRAPH_MESSAGES = {
    "InvalidAuthenticationToken": "Access token is empty.",
    "ErrorAccessDenied": "Access is denied. Check credentials and try again.",
    "ErrorInvalidUser": "The requested user '{user}' is invalid.",
    "MailboxNotEnabledForRESTAPI": "The mailbox is either inactive, soft-deleted, "
    "or is hosted on-premise.",
    "ErrorSendAsDenied": "The user account which was used to submit this request "
    "does not have the right to send mail on behalf of the specified sending "
    "account., Cannot submit message.",
    "ErrorInvalidRecipients": "At least one recipient is not valid., A message "
    "can't be sent because it contains no recipients.",
    "RequestBodyRead": "Cannot read the request body.",
    "ErrorInvalidParameter": "The value of the parameter 'Message' is empty.",
    "ApplicationThrottled": "Application is over its request limit for this mailbox.",
    "TooManyRequests": "Too many requests.",
    "ServiceUnavailable": "Service is temporarily unavailable. Please try again later.",
    "InternalServerError": "An internal server error occurred.",
    "GatewayTimeout": "The operation timed out.",
    "UnknownError": "",
    "ResourceNotFound": "Resource not found for the segment '{segment}'.",
    "BadRequest": "Unsupported request.",
    "ErrorInvalidIdMalformed": "Id is malformed.",
    # Directory (applications) errors.
    "Authorization_RequestDenied": "Insufficient privileges to complete the operation.",
    "Request_ResourceNotFound": "Resource '{id}' does not exist or one of its "
    "queried reference-property objects are not present.",
    "Request_UnsupportedQuery": "Unsupported query.",
}

# Outlook answers both of its per app-and-mailbox limits with code
# ApplicationThrottled; the message names the limit.
# https://learn.microsoft.com/en-us/graph/throttling-limits#outlook-service-limits
MAILBOX_CONCURRENCY_MESSAGE = "Application is over its MailboxConcurrency limit."

DEFAULT_GRAPH_CODE = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "ErrorAccessDenied",
    404: "ResourceNotFound",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "UnknownError",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}

# What Graph sends with a 401, pointing clients to the authority.
WWW_AUTHENTICATE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
    'oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000"'
)


class GraphError(Exception):
    """A Graph error; ``response()`` renders ``{"error": {...}}``."""

    def __init__(self, status: int, code: str | None = None, message=None, **params):
        super().__init__(code)
        self.status = status
        self.code = code or DEFAULT_GRAPH_CODE.get(status, "UnknownError")
        template = GRAPH_MESSAGES.get(self.code, "")
        self.message = message if message is not None else template.format(**params)
        self.headers = {}

    def response(self, request: web.Request) -> web.Response:
        request_id = request.get(REQUEST_ID) or str(uuid.uuid4())
        client_request_id = request.headers.get("client-request-id") or request_id
        now = datetime.datetime.now(datetime.UTC)
        body = {
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {
                    "date": now.strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": request_id,
                    "client-request-id": client_request_id,
                },
            }
        }
        headers = dict(self.headers)
        if self.status == 401:
            headers["WWW-Authenticate"] = WWW_AUTHENTICATE
        return web.Response(
            body=json.dumps(body).encode(),
            status=self.status,
            content_type="application/json",
            headers=headers,
        )
