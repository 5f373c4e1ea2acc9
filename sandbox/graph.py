"""Microsoft Graph: ``sendMail`` and ``/me``.

https://learn.microsoft.com/en-us/graph/api/user-sendmail
https://learn.microsoft.com/en-us/graph/throttling-limits#outlook-service-limits
"""

import asyncio
import json
import uuid

from aiohttp import web

from sandbox.bearer import check_bearer
from sandbox.errors import GraphError
from sandbox.identity import drop_connection
from sandbox.keys import CTX, REQUEST_ID
from sandbox.scopes import GRAPH
from sandbox.tokens import TokenError

MAX_CUSTOM_HEADERS = 5


def _finish(request: web.Request, response: web.StreamResponse):
    response.headers["request-id"] = request[REQUEST_ID]
    response.headers["client-request-id"] = request.headers.get(
        "client-request-id", request[REQUEST_ID]
    )
    return response


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _caller(ctx, request: web.Request):
    try:
        return check_bearer(ctx, _bearer(request), GRAPH)
    except TokenError as error:
        raise GraphError(401, "InvalidAuthenticationToken", str(error)) from error


async def send_mail(request: web.Request) -> web.StreamResponse:
    """POST /v1.0/users/{user}/sendMail and /v1.0/me/sendMail."""
    ctx = request.app[CTX]
    request[REQUEST_ID] = str(uuid.uuid4())
    ctx.state.count("graph_requests")
    try:
        response = await _send_mail(ctx, request)
    except GraphError as error:
        response = error.response(request)
    return _finish(request, response)


async def _send_mail(ctx, request: web.Request) -> web.StreamResponse:
    state = ctx.state
    fault = state.take_fault("graph")
    caller = _caller(ctx, request)
    if "Mail.Send" not in caller.permissions:
        raise GraphError(403, "ErrorAccessDenied")
    target = request.match_info.get("user")
    if target is None:
        if not caller.delegated:
            raise GraphError(
                400,
                "BadRequest",
                "/me request is only valid with delegated authentication flow.",
            )
        mailbox = caller.user
    else:
        mailbox = state.user(caller.tenant, target)
        if mailbox is None:
            raise GraphError(404, "ErrorInvalidUser", user=target)
    if not mailbox.has_mailbox:
        raise GraphError(404, "MailboxNotEnabledForRESTAPI")
    address = mailbox.user_principal_name
    if not caller.delegated and not caller.app.may_use_mailbox(address):
        raise GraphError(403, "ErrorAccessDenied", "Access to OData is disabled.")
    if caller.delegated and not caller.user.may_send_as(address):
        raise GraphError(403, "ErrorSendAsDenied")

    wait = state.graph_rate_check(caller.app.client_id, address)
    if wait is not None:
        error = GraphError(429, "ApplicationThrottled")
        error.headers["Retry-After"] = f"{wait:.3f}"
        raise error
    if not state.graph_enter(address):
        error = GraphError(429, "MailboxConcurrency")
        error.headers["Retry-After"] = "1"
        raise error
    try:
        if fault and fault.get("delay"):
            await asyncio.sleep(float(fault["delay"]))
        if fault and fault.get("drop"):
            drop_connection(request)
        if fault and fault.get("status") and not fault.get("accept_then_status"):
            raise _fault_error(fault)
        raw = await request.read()
        message = parse_send_mail(raw)
        sender = message["from"] or address
        if sender.lower() != address.lower():
            allowed = (
                caller.user.may_send_as(sender)
                if caller.delegated
                else _app_may_send_as(state, caller, sender)
            )
            if not allowed:
                raise GraphError(403, "ErrorSendAsDenied")
        message["from"] = sender
        message["headers"].setdefault("From", sender)
        message["transport"] = "graph"
        message["authenticated_as"] = caller.authenticated_as()
        recipients = message.pop("recipients")
        state.store_message(message, recipients)
        if fault and fault.get("accept_then_status"):
            raise _fault_error(dict(fault, status=fault["accept_then_status"]))
        state.count("graph_send_mail")
        return web.Response(status=202)
    finally:
        state.graph_leave(address)


def _app_may_send_as(state, caller, sender: str) -> bool:
    user = state.user(caller.tenant, sender)
    return bool(user and user.has_mailbox and caller.app.may_use_mailbox(sender))


def _fault_error(fault: dict) -> GraphError:
    error = GraphError(int(fault["status"]), fault.get("error_code"))
    if fault.get("retry_after") is not None:
        error.headers["Retry-After"] = str(fault["retry_after"])
    return error


def _bad(message: str, code: str = "RequestBodyRead") -> GraphError:
    return GraphError(400, code, message)


def _addresses(message: dict, key: str) -> list:
    value = message.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(
            f"Cannot read the value of property '{key}': a collection was expected."
        )
    addresses = []
    for item in value:
        email = item.get("emailAddress") if isinstance(item, dict) else None
        address = email.get("address") if isinstance(email, dict) else None
        if not isinstance(address, str) or "@" not in address.strip("@"):
            raise _bad(
                f"At least one recipient is not valid., Recipient '{address}' is not "
                "resolved. All recipients must be resolved before a message can be "
                "submitted.",
                "ErrorInvalidRecipients",
            )
        addresses.append(address)
    return addresses


def _single_address(message: dict, key: str) -> str | None:
    value = message.get(key)
    if value is None:
        return None
    email = value.get("emailAddress") if isinstance(value, dict) else None
    address = email.get("address") if isinstance(email, dict) else None
    if not isinstance(address, str) or "@" not in address:
        raise _bad(
            f"Cannot read the value of property '{key}'.", "ErrorInvalidParameter"
        )
    return address


def parse_send_mail(raw: bytes) -> dict:
    """The stored form of a sendMail body; raises GraphError 400 when malformed."""
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad("Invalid JSON in the request body.") from exc
    if not isinstance(body, dict):
        raise _bad("Empty Payload. JSON content expected.")
    save = body.get("saveToSentItems")
    if save is not None and not (
        isinstance(save, bool)
        or (isinstance(save, str) and save.lower() in ("true", "false"))
    ):
        raise _bad(
            f"Cannot convert the literal '{save}' to the expected type 'Edm.Boolean'."
        )
    message = body.get("message")
    if not isinstance(message, dict) or not message:
        raise _bad(
            "The value of the parameter 'Message' is empty.", "ErrorInvalidParameter"
        )
    to = _addresses(message, "toRecipients")
    cc = _addresses(message, "ccRecipients")
    bcc = _addresses(message, "bccRecipients")
    if not (to or cc or bcc):
        raise GraphError(400, "ErrorInvalidRecipients")
    subject = message.get("subject")
    if subject is not None and not isinstance(subject, str):
        raise _bad("Cannot read the value of property 'subject'.")
    content = message.get("body") or {}
    if not isinstance(content, dict):
        raise _bad("Cannot read the value of property 'body'.")
    content_type = content.get("contentType", "Text")
    if not isinstance(content_type, str) or content_type.lower() not in (
        "text",
        "html",
    ):
        raise _bad(
            f"Cannot convert the literal '{content_type}' to the expected type "
            "'microsoft.graph.bodyType'."
        )
    text = content.get("content")
    if text is not None and not isinstance(text, str):
        raise _bad("Cannot read the value of property 'content'.")
    headers = {}
    custom = message.get("internetMessageHeaders") or []
    if not isinstance(custom, list):
        raise _bad("Cannot read the value of property 'internetMessageHeaders'.")
    if len(custom) > MAX_CUSTOM_HEADERS:
        raise _bad(
            "Maximum number of headers in one message should be less than or equal "
            f"to {MAX_CUSTOM_HEADERS}.",
            "InvalidInternetMessageHeaderCollection",
        )
    for header in custom:
        name = header.get("name") if isinstance(header, dict) else None
        value = header.get("value") if isinstance(header, dict) else None
        if not isinstance(name, str) or not isinstance(value, str):
            raise _bad("Cannot read the value of property 'internetMessageHeaders'.")
        if not name.lower().startswith("x-"):
            raise _bad(
                f"The internet message header name '{name}' should start with "
                "'x-' or 'X-'.",
                "InvalidInternetMessageHeader",
            )
        headers[name] = value
    sender = _single_address(message, "from")
    reply_to = _addresses(message, "replyTo")
    message_id = message.get("internetMessageId") or (
        f"<{uuid.uuid4().hex.upper()}@sandbox.prod.outlook.com>"
    )
    headers.update({"Subject": subject or "", "Message-ID": message_id})
    headers["To"] = ", ".join(to)
    if cc:
        headers["Cc"] = ", ".join(cc)
    if reply_to:
        headers["Reply-To"] = ", ".join(reply_to)
    if sender:
        headers["From"] = sender
    is_html = content_type.lower() == "html"
    return {
        "from": sender,
        "to": to,
        "cc": cc,
        "reply_to": reply_to,
        "subject": subject or "",
        "message_id": message_id,
        "headers": headers,
        "text": None if is_html else (text or ""),
        "html": (text or "") if is_html else None,
        "recipients": to + cc + bcc,
    }


async def me(request: web.Request) -> web.StreamResponse:
    """GET /v1.0/me for delegated tokens."""
    ctx = request.app[CTX]
    request[REQUEST_ID] = str(uuid.uuid4())
    ctx.state.count("graph_requests")
    try:
        caller = _caller(ctx, request)
        if not caller.delegated:
            raise GraphError(
                400,
                "BadRequest",
                "/me request is only valid with delegated authentication flow.",
            )
        user = caller.user
        given, _, surname = user.display_name.partition(" ")
        response = web.json_response(
            {
                "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/"
                "$entity",
                "businessPhones": [],
                "displayName": user.display_name,
                "givenName": given or None,
                "jobTitle": None,
                "mail": user.user_principal_name if user.has_mailbox else None,
                "mobilePhone": None,
                "officeLocation": None,
                "preferredLanguage": "en-US",
                "surname": surname or None,
                "userPrincipalName": user.user_principal_name,
                "id": user.object_id,
            }
        )
    except GraphError as error:
        response = error.response(request)
    return _finish(request, response)


async def not_found(request: web.Request) -> web.StreamResponse:
    request[REQUEST_ID] = str(uuid.uuid4())
    segment = request.match_info.get("tail", "").split("/")[0]
    error = GraphError(
        400, "BadRequest", f"Resource not found for the segment '{segment}'."
    )
    return _finish(request, error.response(request))
