"""
Microsoft Graph mail client: `sendMail` for a user (app-only) or for `me` (delegated),
and reading an inbox (the Email box: the message delta and each message's MIME),
through one shared client per Graph host (`graph_client`).

https://learn.microsoft.com/graph/api/user-sendmail
https://learn.microsoft.com/graph/api/message-delta
https://learn.microsoft.com/graph/api/message-get (`$value`: the MIME content)
https://learn.microsoft.com/graph/errors
"""

import logging
from datetime import UTC, datetime
from functools import partial
from urllib.parse import quote, urlencode

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
from integrations.providers.replies import PendingReply, ResentReply

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


#: A delta link Graph no longer honours: 410 Gone for Outlook items, or 400 with one of
#: these codes. Either way the client starts again (a full synchronisation).
#: https://learn.microsoft.com/graph/delta-query-overview
SYNC_STATE_LOST = frozenset({"syncstatenotfound", "syncstateinvalid", "resyncrequired"})
#: What the delta query returns of each message: enough to fetch and order it.
DELTA_SELECT = "id,internetMessageId,receivedDateTime"


def _failed(
    response: requests.Response,
    what: str,
    error: IntegrationError | None = None,
    *,
    level: int = logging.WARNING,
) -> IntegrationError:
    """The error a failed read answered (`error_from_response`, unless given),
    logged with Graph's request id."""
    error = error or error_from_response(response)
    logger.log(
        level,
        "Graph %s failed: %s (request-id %s)",
        what,
        error.detail,
        error.request_id,
    )
    return error


def _read_error(response: requests.Response, what: str) -> IntegrationError:
    """A failed read of a mailbox: Graph's ErrorAccessDenied means no Mail.Read (or
    an application access policy that leaves this mailbox out)."""
    error = error_from_response(response)
    if error.code in ("permission_missing", "mailbox_access_denied"):
        error = PermissionMissing(
            error.detail,
            code="mail_read_missing",
            request_id=error.request_id,
            status=error.status,
        )
    return _failed(response, what, error)


def _json_object(response: requests.Response) -> dict | None:
    """The answer's JSON object, or None when it is not one."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _unexpected(response: requests.Response, detail: str) -> UnexpectedResponse:
    """A 200 answer without what Graph documents for it."""
    return UnexpectedResponse(
        detail,
        request_id=response.headers.get("request-id", ""),
        status=response.status_code,
    )


def _graph_code(response: requests.Response) -> str:
    try:
        return str(response.json().get("error", {}).get("code", ""))
    except (ValueError, AttributeError):
        return ""


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
        """POST sendMail; returns Graph's request id (a `ResentReply` when the
        transport had to send it twice). `sender=None` means /me."""
        return self.send_mail_later(
            access_token=access_token, sender=sender, payload=payload
        ).result()

    def send_mail_later(
        self, *, access_token: str, sender: str | None, payload: dict
    ) -> PendingReply:
        """Start sendMail; its answer is read later (`result()`, which returns what
        `send_mail` returns or raises its error), and the calling thread goes on:
        several sends of one thread go side by side."""
        if sender is None:
            path = "/v1.0/me/sendMail"
        else:
            path = f"/v1.0/users/{quote(sender, safe='@')}/sendMail"
        # Raises only the error hierarchy (libcurl's failures are translated).
        pending = self.session.post_json_later(
            self.graph_host + path,
            payload,
            headers={"Authorization": f"Bearer {access_token}"},
        )
        return PendingReply(
            partial(self._sent, pending), done=pending.done, wait=pending.wait
        )

    @staticmethod
    def _sent(pending) -> str:
        """sendMail's answer: Graph's request id, or the error raised."""
        response = pending.result()
        if response.status_code == 202:
            request_id = response.headers.get("request-id", "")
            if getattr(response, "resent", False):
                logger.warning(
                    "Graph sendMail went twice: the connection dropped without an "
                    "answer and the transport sent it again (request-id %s)",
                    request_id,
                )
                return ResentReply(request_id)
            return request_id
        error = error_from_response(response)
        logger.warning(
            "Graph sendMail failed: %s (request-id %s)", error.detail, error.request_id
        )
        raise error

    def sent_message_exists(
        self, *, access_token: str, sender: str | None, internet_message_id: str
    ) -> bool:
        """Whether `sender`'s Sent Items holds a message with this Message-ID
        (None: the signed-in user's, for a delegated token).

        GET /users/{sender}/mailFolders/sentitems/messages (or /me/...), filtered on
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
        path = f"{self._mailbox_path(sender)}/mailFolders/sentitems/messages?{query}"
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

    # --- the health check: who the token speaks for, whether the sender exists ---

    def user_mailbox(self, *, access_token: str, user: str) -> dict:
        """GET /users/{user}?$select=id,mail: the directory's user, as
        `{"id", "mail"}`. Needs `User.Read.All` (or `User.ReadBasic.All`,
        `Directory.Read.All`) app-only: without it Graph answers 403
        Authorization_RequestDenied, raised as `PermissionMissing`. An unknown user
        (404 Request_ResourceNotFound) raises `SenderRejected("sender_not_found")`,
        a user without a mailbox (`mail` empty) `SenderRejected("sender_no_mailbox")`.
        https://learn.microsoft.com/graph/api/user-get
        """
        url = f"{self.graph_host}{self._mailbox_path(user)}?$select=id,mail"
        response = self._get(url, access_token, "user lookup")
        if response.status_code == 404:
            raise SenderRejected(
                f"HTTP 404 {_graph_code(response)}",
                code="sender_not_found",
                request_id=response.headers.get("request-id", ""),
                status=404,
            )
        if response.status_code != 200:
            raise _failed(response, "user lookup")
        body = _json_object(response)
        if not body or not body.get("id"):
            raise _unexpected(response, "user lookup answered without an id")
        if not body.get("mail"):
            raise SenderRejected(
                "the user has no mail address", code="sender_no_mailbox"
            )
        return {"id": body["id"], "mail": body["mail"]}

    def me(self, *, access_token: str) -> dict:
        """GET /me (delegated): the signed-in user, `{"id", "userPrincipalName",
        "mail"}`; whether the access token is still accepted.
        https://learn.microsoft.com/graph/api/user-get"""
        url = f"{self.graph_host}/v1.0/me?$select=id,userPrincipalName,mail"
        response = self._get(url, access_token, "/me")
        if response.status_code != 200:
            raise _failed(response, "/me")
        body = _json_object(response)
        if not body or not body.get("id"):
            raise _unexpected(response, "/me answered without an id")
        return body

    # --- reading a mailbox (the Email box) ----------------------------------------

    def _mailbox_path(self, mailbox: str | None) -> str:
        """/v1.0/users/{mailbox}, or /v1.0/me for a delegated token (None)."""
        if mailbox is None:
            return "/v1.0/me"
        return f"/v1.0/users/{quote(mailbox, safe='@')}"

    def _get(self, url: str, access_token: str, what: str, **kwargs):
        headers = {"Authorization": f"Bearer {access_token}"}
        headers.update(kwargs.pop("headers", {}))
        try:
            return self.session.get(url, headers=headers, **kwargs)
        except requests.RequestException as exc:
            raise error_from_exception(exc)

    def inbox_first(self, *, access_token: str, mailbox: str | None) -> list[dict]:
        """The newest message of `mailbox`'s inbox (`[]` when it is empty): whether
        it can be listed at all. Needs Mail.ReadBasic, Mail.Read or Mail.ReadWrite.
        https://learn.microsoft.com/graph/api/mailfolder-list-messages"""
        url = (
            f"{self.graph_host}{self._mailbox_path(mailbox)}"
            "/mailFolders/inbox/messages?$top=1&$select=id"
        )
        response = self._get(url, access_token, "inbox listing")
        if response.status_code != 200:
            raise _read_error(response, "inbox listing")
        value = (_json_object(response) or {}).get("value")
        if not isinstance(value, list):
            raise _unexpected(response, "inbox listing answered without a value list")
        return [item for item in value if isinstance(item, dict) and item.get("id")]

    def inbox_delta(
        self,
        *,
        access_token: str,
        mailbox: str | None,
        link: str = "",
        since: datetime | None = None,
        page_size: int = 10,
    ) -> dict:
        """One page of the message delta of `mailbox`'s inbox: Graph's JSON, with
        `value` and either `@odata.nextLink` (more pages) or `@odata.deltaLink`
        (the state to ask from next time).

        Without `link`, a new synchronisation of the messages received on or after
        `since`; with it, the page or delta that link names (only links to this
        Graph host are followed: a stored cursor never sends the token elsewhere).
        A link Graph no longer honours raises `UnexpectedResponse` with code
        `delta_expired`; a missing Mail.Read, `PermissionMissing` (`mail_read_missing`).
        """
        if link:
            if not link.startswith(self.graph_host + "/"):
                raise UnexpectedResponse(
                    "delta link for another host", code="delta_expired"
                )
            url = link
        else:
            params = {"$select": DELTA_SELECT}
            if since is not None:
                when = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                params["$filter"] = f"receivedDateTime ge {when}"
            url = (
                f"{self.graph_host}{self._mailbox_path(mailbox)}"
                "/mailFolders/inbox/messages/delta?"
                + urlencode(params, quote_via=quote, safe="$,:")
            )
        response = self._get(
            url,
            access_token,
            "inbox delta",
            headers={"Prefer": f"odata.maxpagesize={max(1, int(page_size))}"},
        )
        if response.status_code == 410 or (
            response.status_code == 400
            and _graph_code(response).lower() in SYNC_STATE_LOST
        ):
            raise UnexpectedResponse(
                f"HTTP {response.status_code} {_graph_code(response)}",
                code="delta_expired",
                status=response.status_code,
            )
        if response.status_code != 200:
            raise _read_error(response, "inbox delta")
        body = _json_object(response)
        if (
            not body
            or not isinstance(body.get("value"), list)
            or not isinstance(
                body.get("@odata.nextLink") or body.get("@odata.deltaLink"), str
            )
        ):
            raise _unexpected(
                response,
                "inbox delta answered without a value list and a next or delta link",
            )
        body["url"] = url
        return body

    def message_mime(
        self,
        *,
        access_token: str,
        mailbox: str | None,
        message_id: str,
        max_bytes: int,
    ) -> bytes:
        """The whole MIME message (`GET .../messages/{id}/$value`), or b"" when it is
        larger than `max_bytes` or no longer there (deleted since it was listed).
        Needs Mail.Read (Mail.ReadBasic may list but not read)."""
        url = (
            f"{self.graph_host}{self._mailbox_path(mailbox)}"
            f"/messages/{quote(message_id, safe='')}/$value"
        )
        response = self._get(url, access_token, "message MIME", stream=True)
        with response:
            if response.status_code == 404:
                return b""
            if response.status_code != 200:
                raise _read_error(response, "message MIME")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                return b""
            chunks, size = [], 0
            try:
                for chunk in response.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        return b""
                    chunks.append(chunk)
            except requests.RequestException as exc:
                raise error_from_exception(exc)
        return b"".join(chunks)

    # --- reading the app's own registration (credential expiry, issue 14) -----------

    def application_credentials(self, *, access_token: str, client_id: str) -> dict:
        """The app registration's `passwordCredentials` and `keyCredentials` (each a
        list of dicts with `hint` / `customKeyIdentifier`, `endDateTime`...).

        GET /applications(appId='{client id}')?$select=passwordCredentials,keyCredentials
        needs the Application.Read.All application permission: without it Graph
        answers 403 Authorization_RequestDenied, raised as `PermissionMissing`.
        https://learn.microsoft.com/graph/api/application-get
        https://learn.microsoft.com/graph/api/resources/passwordcredential
        """
        literal = client_id.replace("'", "''")
        url = (
            f"{self.graph_host}/v1.0/applications(appId='{quote(literal, safe='')}')"
            "?$select=passwordCredentials,keyCredentials"
        )
        response = self._get(url, access_token, "application read")
        if response.status_code != 200:
            # Application.Read.All is optional: its absence is not a warning.
            raise _failed(response, "application read", level=logging.INFO)
        body = _json_object(response)
        if body is None or not isinstance(body.get("passwordCredentials", []), list):
            raise _unexpected(
                response, "application read answered without passwordCredentials"
            )
        return {
            "passwordCredentials": body.get("passwordCredentials") or [],
            "keyCredentials": body.get("keyCredentials") or [],
        }


_clients: dict[str, GraphClient] = {}


def forget_clients() -> None:
    """Close every Graph client's connections (tests start each with none open)."""
    while _clients:
        _, client = _clients.popitem()
        client.session.close()


def graph_client(graph_host: str) -> GraphClient:
    """One Graph client (one keep-alive session) per Graph host, per process."""
    client = _clients.get(graph_host)
    if client is None:
        client = _clients.setdefault(graph_host, GraphClient(graph_host, M365Session()))
    return client
