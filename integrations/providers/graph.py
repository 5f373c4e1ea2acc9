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
    if status == 429:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        return Throttled(detail, retry_after=retry_after, **kwargs)
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
    return {"message": message, "saveToSentItems": False}


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


_clients: dict[str, GraphClient] = {}


def graph_client(graph_host: str) -> GraphClient:
    """One Graph client (one keep-alive session) per Graph host, per process."""
    client = _clients.get(graph_host)
    if client is None:
        client = _clients.setdefault(graph_host, GraphClient(graph_host, M365Session()))
    return client
