"""
Microsoft Graph mail client: `sendMail` for a user (app-only) or for `me` (delegated),
through one shared client per Graph host (`graph_client`).

https://learn.microsoft.com/graph/api/user-sendmail
https://learn.microsoft.com/graph/errors
"""

import logging
from urllib.parse import quote

import requests

from integrations.exceptions import (
    AuthenticationFailed,
    IntegrationError,
    PermissionMissing,
    RecipientRejected,
    SenderRejected,
    ServiceUnavailable,
    Throttled,
    UnexpectedResponse,
)
from integrations.providers.http import (
    M365Session,
    error_from_exception,
    retry_after_seconds,
)

logger = logging.getLogger(__name__)

# Graph error code -> (exception class, our code)
GRAPH_ERRORS = {
    "ErrorSendAsDenied": (SenderRejected, "send_as_denied"),
    "ErrorInvalidUser": (SenderRejected, "sender_not_found"),
    "MailboxNotEnabledForRESTAPI": (SenderRejected, "sender_no_mailbox"),
    "MailboxNotFound": (SenderRejected, "sender_no_mailbox"),
    "ResourceNotFound": (SenderRejected, "sender_not_found"),
    "ErrorInvalidRecipients": (RecipientRejected, "recipient_rejected"),
    "InvalidAuthenticationToken": (AuthenticationFailed, "unauthorized"),
    "Authorization_RequestDenied": (PermissionMissing, "permission_missing"),
}

# Throttling (HTTP 429 with Retry-After): Outlook's limits per app and mailbox, 10,000
# requests per 10 minutes ("ApplicationThrottled") and 4 at a time (named in the code,
# or in the message of an "ApplicationThrottled", as "MailboxConcurrency").
# https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits
# https://learn.microsoft.com/graph/throttling
GRAPH_THROTTLING = {
    "MailboxConcurrency": "mailbox_concurrency",
    "ApplicationThrottled": "throttled",
    "TooManyRequests": "throttled",
}


def _throttling_code(code: str, message: str) -> str:
    if "MailboxConcurrency" in message:
        return GRAPH_THROTTLING["MailboxConcurrency"]
    return GRAPH_THROTTLING.get(code, "throttled")


def error_from_response(response: requests.Response) -> IntegrationError:
    """One function that looks at a failed Graph response and returns the error."""
    status = response.status_code
    request_id = response.headers.get("request-id", "")
    try:
        error = response.json().get("error", {})
        code, message = error.get("code", ""), error.get("message", "")
        request_id = request_id or error.get("innerError", {}).get("request-id", "")
    except (ValueError, AttributeError):
        code, message = "", ""
    detail = f"HTTP {status} {code}: {message}".strip()
    kwargs = {"request_id": request_id, "status": status}
    if status == 429 or code in GRAPH_THROTTLING:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        return Throttled(
            detail,
            code=_throttling_code(code, message),
            retry_after=retry_after,
            **kwargs,
        )
    if status >= 500:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        return ServiceUnavailable(detail, retry_after=retry_after, **kwargs)
    if code == "ErrorAccessDenied":
        # An application access policy says "Access to OData is disabled."
        if "OData" in message:
            return PermissionMissing(detail, code="mailbox_access_denied", **kwargs)
        return PermissionMissing(detail, code="permission_missing", **kwargs)
    if code in GRAPH_ERRORS:
        cls, our_code = GRAPH_ERRORS[code]
        return cls(detail, code=our_code, **kwargs)
    if status == 401:
        return AuthenticationFailed(detail, code="unauthorized", **kwargs)
    if status == 403:
        return PermissionMissing(detail, code="permission_missing", **kwargs)
    return UnexpectedResponse(detail, **kwargs)


def message_payload(email, *, sender: str = "", sender_name: str = "") -> dict:
    """The sendMail body for an `OutgoingEmail`; with `sender_name`, a From of that
    name and `sender`'s address (Graph otherwise shows the mailbox's own name).

    Notifications are not kept in the sender's Sent Items."""
    message = {
        "subject": email.subject,
        "body": (
            {"contentType": "HTML", "content": email.html}
            if email.html
            else {"contentType": "Text", "content": email.text}
        ),
        "toRecipients": [{"emailAddress": {"address": a}} for a in email.to],
    }
    if sender and sender_name:
        message["from"] = {"emailAddress": {"name": sender_name, "address": sender}}
    if email.message_id:
        message["internetMessageId"] = email.message_id
    if email.headers:
        # Graph accepts only custom X- headers here.
        message["internetMessageHeaders"] = [
            {"name": name, "value": value}
            for name, value in email.headers.items()
            if name.lower().startswith("x-")
        ]
    # A copy in the sender's Sent Items, as Outlook keeps one: people can see what
    # went out, and a send whose answer was lost can be looked up there by its
    # Message-ID before it is sent again (GraphClient.sent_message_exists).
    return {"message": message, "saveToSentItems": True}


class GraphClient:
    """Sends mail through one Graph host over one keep-alive session."""

    def __init__(self, graph_host: str, session: M365Session | None = None):
        self.graph_host = graph_host.rstrip("/")
        self.session = session or M365Session()

    def send_mail(self, *, access_token: str, sender: str | None, payload: dict) -> str:
        """POST sendMail; returns Graph's request id. `sender=None` means /me."""
        if sender is None:
            path = "/v1.0/me/sendMail"
        else:
            path = f"/v1.0/users/{quote(sender, safe='@')}/sendMail"
        try:
            response = self.session.post(
                self.graph_host + path,
                json=payload,
                headers={"Authorization": f"Bearer {access_token}"},
            )
        except requests.RequestException as exc:
            raise error_from_exception(exc)
        if response.status_code == 202:
            return response.headers.get("request-id", "")
        error = error_from_response(response)
        logger.warning(
            "Graph sendMail failed: %s (request-id %s)", error.detail, error.request_id
        )
        raise error

    def sent_message_exists(
        self, *, access_token: str, sender: str, internet_message_id: str
    ) -> bool:
        """Whether `sender`'s Sent Items holds a message with this Message-ID.

        GET /users/{sender}/mailFolders/sentitems/messages, filtered on
        `internetMessageId` (the value quoted as an OData string literal, then
        URL-encoded). Only messages sent with `saveToSentItems` true (Graph's
        default) are kept there, and Exchange files the copy a moment after
        accepting the message, so False means "not there (yet)". A message counts
        only when Graph returns it with exactly this `internetMessageId`.

        The app needs `Mail.ReadBasic.All` (or `Mail.Read`): without it, or when an
        application access policy excludes the mailbox, `PermissionMissing` is
        raised. Other failures raise the same errors as `send_mail` (`Throttled`,
        `ServiceUnavailable`, `SenderRejected`, `ConnectionFailed`, ...).
        https://learn.microsoft.com/graph/api/user-list-messages
        https://learn.microsoft.com/graph/query-parameters#escaping-single-quotes
        """
        if not internet_message_id:
            raise ValueError("internet_message_id is required")
        literal = internet_message_id.replace("'", "''")
        query = (
            "$filter="
            + quote(f"internetMessageId eq '{literal}'", safe="")
            + "&$select=id,internetMessageId"
        )
        path = (
            f"/v1.0/users/{quote(sender, safe='@')}/mailFolders/sentitems/messages"
            f"?{query}"
        )
        try:
            response = self.session.get(
                self.graph_host + path,
                headers={"Authorization": f"Bearer {access_token}"},
            )
        except requests.RequestException as exc:
            raise error_from_exception(exc)
        if response.status_code != 200:
            error = error_from_response(response)
            logger.warning(
                "Graph Sent Items lookup failed: %s (request-id %s)",
                error.detail,
                error.request_id,
            )
            raise error
        try:
            found = response.json()["value"]
        except (ValueError, KeyError, TypeError):
            found = None
        if not isinstance(found, list):
            raise UnexpectedResponse(
                "Sent Items lookup answered without a value list",
                request_id=response.headers.get("request-id", ""),
                status=response.status_code,
            )
        return any(
            isinstance(item, dict)
            and item.get("internetMessageId") == internet_message_id
            for item in found
        )


_clients: dict[str, GraphClient] = {}


def graph_client(graph_host: str) -> GraphClient:
    """One Graph client (one keep-alive session) per Graph host, per process."""
    client = _clients.get(graph_host)
    if client is None:
        client = _clients.setdefault(graph_host, GraphClient(graph_host, M365Session()))
    return client
