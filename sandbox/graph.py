"""Microsoft Graph: ``sendMail``, Sent Items and Inbox messages, their MIME,
the Inbox delta query, ``/me`` and ``/users/{user}``.

https://learn.microsoft.com/en-us/graph/api/user-sendmail
https://learn.microsoft.com/en-us/graph/api/user-list-messages
https://learn.microsoft.com/en-us/graph/api/message-get (``$value``: the MIME)
https://learn.microsoft.com/en-us/graph/api/message-delta
https://learn.microsoft.com/en-us/graph/throttling-limits#outlook-service-limits
https://learn.microsoft.com/en-us/graph/api/user-get
"""

import asyncio
import base64
import binascii
import datetime
import functools
import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass
from urllib.parse import quote

from aiohttp import web

from sandbox import mime
from sandbox.bearer import check_bearer
from sandbox.delivery import deliver
from sandbox.errors import MAILBOX_CONCURRENCY_MESSAGE, GraphError
from sandbox.identity import drop_connection
from sandbox.keys import CTX, REQUEST_ID
from sandbox.scopes import GRAPH
from sandbox.tokens import TokenError

MAX_CUSTOM_HEADERS = 5

# Who may list messages: the permissions of "List messages", app-only and delegated.
# https://learn.microsoft.com/en-us/graph/api/user-list-messages#permissions
READ_APPLICATION = {"Mail.ReadBasic.All", "Mail.Read", "Mail.ReadWrite"}
READ_DELEGATED = {"Mail.ReadBasic", "Mail.Read", "Mail.ReadWrite"}
# Mail.ReadBasic(.All) reads everything but the body.
# https://learn.microsoft.com/en-us/graph/permissions-reference#mailreadbasicall
READ_BODIES = {"Mail.Read", "Mail.ReadWrite"}
BODY_PROPERTIES = {"body", "bodyPreview", "uniqueBody"}
# Graph's default and largest page of messages.
DEFAULT_TOP = 10
MAX_TOP = 1000


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


def _mailbox(state, caller, request: web.Request):
    """The mailbox of ``/users/{user}/...`` or ``/me/...``, checked as Graph does."""
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
    return mailbox


def _enter(state, client_id: str, address: str) -> None:
    """Take a slot under the (app, mailbox) limits, or raise their 429.

    The caller must ``state.graph_leave`` once done.
    """
    wait = state.graph_rate_check(client_id, address)
    if wait is not None:
        error = GraphError(429, "ApplicationThrottled")
        error.headers["Retry-After"] = f"{wait:.3f}"
        raise error
    if not state.graph_enter(client_id, address):
        error = GraphError(429, "ApplicationThrottled", MAILBOX_CONCURRENCY_MESSAGE)
        error.headers["Retry-After"] = "1"
        raise error


async def _before(request: web.Request, fault: dict | None) -> None:
    """The part of an injected fault that happens before the work: delay, drop
    or reset, or a status answered instead of doing it."""
    if not fault:
        return
    if fault.get("delay"):
        await asyncio.sleep(float(fault["delay"]))
    if fault.get("drop") or fault.get("reset"):
        drop_connection(request, reset=bool(fault.get("reset")))
    if fault.get("status") and not fault.get("accept_then_status"):
        raise _fault_error(fault)


def _after(fault: dict | None) -> None:
    """``accept_then_status``: the work is done, then this status is answered."""
    if fault and fault.get("accept_then_status"):
        raise _fault_error(dict(fault, status=fault["accept_then_status"]))


async def _answer(request: web.Request, handler) -> web.StreamResponse:
    """One Graph request: a request id, the request counter, and any GraphError
    the handler raises answered in Graph's error shape."""
    ctx = request.app[CTX]
    request[REQUEST_ID] = str(uuid.uuid4())
    ctx.state.count("graph_requests")
    try:
        response = await handler(ctx, request)
    except GraphError as error:
        response = error.response(request)
    return _finish(request, response)


async def send_mail(request: web.Request) -> web.StreamResponse:
    """POST /v1.0/users/{user}/sendMail and /v1.0/me/sendMail."""
    return await _answer(request, _send_mail)


async def _send_mail(ctx, request: web.Request) -> web.StreamResponse:
    state = ctx.state
    caller = _caller(ctx, request)
    if "Mail.Send" not in caller.permissions:
        raise GraphError(403, "ErrorAccessDenied")
    mailbox = _mailbox(state, caller, request)
    address = mailbox.user_principal_name
    if caller.delegated and not caller.user.may_send_as(address):
        raise GraphError(403, "ErrorSendAsDenied")

    client_id = caller.app.client_id
    _enter(state, client_id, address)
    try:
        fault = state.take_fault("graph", operation="sendMail")
        await _before(request, fault)
        raw = await request.read()
        message = parse_send_mail(raw)
        save_to_sent_items = message.pop("save_to_sent_items")
        bcc = message.pop("bcc")
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
        fields = dict(message)
        deliver(
            state,
            raw=functools.partial(mime.graph_message, fields, state.clock.now()),
            fields=fields,
            recipients=recipients,
            sender=sender,
            fallback_sender=address,
        )
        state.count("graph_accepted")
        if save_to_sent_items:
            # The copy goes to the Sent Items of the mailbox in the URL.
            state.save_sent_item(
                address,
                dict(message, bcc=bcc),
                delay=caller.tenant.sent_items_delay,
            )
        _after(fault)
        state.count("graph_send_mail")
        return web.Response(status=202)
    finally:
        state.graph_leave(client_id, address)


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
    """The stored form of a sendMail body (plus ``recipients``, ``bcc`` and
    ``save_to_sent_items``); raises GraphError 400 when malformed."""
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
    # Absent means true: "The default is true."
    # https://learn.microsoft.com/en-us/graph/api/user-sendmail#request-body
    if isinstance(save, str):
        save = save.lower() == "true"
    save_to_sent_items = True if save is None else save
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
        "bcc": bcc,
        "save_to_sent_items": save_to_sent_items,
        "reply_to": reply_to,
        "subject": subject or "",
        "message_id": message_id,
        "headers": headers,
        "text": None if is_html else (text or ""),
        "html": (text or "") if is_html else None,
        "recipients": to + cc + bcc,
    }


# --- messages in Sent Items -------------------------------------------------------

# The message properties the sandbox answers with, in Graph's order.
# https://learn.microsoft.com/en-us/graph/api/resources/message#properties
MESSAGE_PROPERTIES = (
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "bodyPreview",
    "importance",
    "parentFolderId",
    "conversationId",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "isRead",
    "isDraft",
    "inferenceClassification",
    "body",
    "uniqueBody",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "flag",
    "internetMessageHeaders",
)
# Returned only when $select asks for them, as in Graph.
SELECT_ONLY = {"uniqueBody", "internetMessageHeaders"}
_CANONICAL = {name.lower(): name for name in MESSAGE_PROPERTIES}
# Query options the sandbox understands; Graph v1.0 also takes them without "$".
QUERY_OPTIONS = ("filter", "select", "top", "skip")
UNSUPPORTED_OPTIONS = (
    "orderby",
    "count",
    "search",
    "expand",
    "skiptoken",
    "format",
    "apply",
    "compute",
    "levels",
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class ListQuery:
    """The parsed query of a messages listing."""

    internet_message_id: str | None = None
    select: list | None = None
    top: int = DEFAULT_TOP
    skip: int = 0
    # $filter=receivedDateTime ge|gt <ISO 8601>: ("ge"|"gt", timestamp, as written)
    received: tuple | None = None

    def matches(self, item: dict) -> bool:
        if (
            self.internet_message_id is not None
            and item["message_id"] != self.internet_message_id
        ):
            return False
        return _received_matches(self.received, item)


def _received_matches(received: tuple | None, item: dict) -> bool:
    if received is None:
        return True
    operator, since, _ = received
    # Graph compares whole seconds (receivedDateTime has no fraction).
    when = int(item["saved_at"])
    return when >= since if operator == "ge" else when > since


async def list_messages(request: web.Request) -> web.StreamResponse:
    """GET /v1.0/users/{user}/mailFolders/{sentitems|inbox}/messages (and /me/...)."""
    return await _answer(request, _list_messages)


def _reader(state, caller, request: web.Request):
    """The mailbox a read request may read, checked in Graph's order; returns
    (mailbox, granted permissions)."""
    granted = set(caller.permissions)
    if not granted & (READ_DELEGATED if caller.delegated else READ_APPLICATION):
        raise GraphError(403, "ErrorAccessDenied")
    mailbox = _mailbox(state, caller, request)
    address = mailbox.user_principal_name
    if caller.delegated and address.lower() != caller.user.user_principal_name.lower():
        # Another user's folders need Mail.Read.Shared and a folder permission.
        raise GraphError(403, "ErrorAccessDenied")
    return mailbox, granted


def _folder(request: web.Request) -> str:
    """The well-known folder of the URL: ``sentitems`` or ``inbox``."""
    folder = request.match_info["folder"]
    if folder.lower() not in ("sentitems", "inbox"):
        # Only the well-known Sent Items and Inbox folders are kept in the sandbox.
        raise GraphError(400, "ErrorInvalidIdMalformed")
    return folder


async def _list_messages(ctx, request: web.Request) -> web.StreamResponse:
    state = ctx.state
    caller = _caller(ctx, request)
    mailbox, granted = _reader(state, caller, request)
    address = mailbox.user_principal_name
    folder = _folder(request)
    query = parse_list_query(request.query)

    client_id = caller.app.client_id
    _enter(state, client_id, address)
    try:
        fault = state.take_fault("graph", operation="listMessages")
        await _before(request, fault)
        if folder.lower() == "inbox":
            items = state.inbox_items(address, with_raw=False)
            state.count("graph_list_inbox")
        else:
            items = state.find_sent_items(address, query.internet_message_id)
        items = [item for item in items if query.matches(item)]
        items.reverse()  # newest first, as Graph lists a folder
        page = items[query.skip : query.skip + query.top]
        with_bodies = bool(granted & READ_BODIES)
        names = _names_of(state, caller.tenant)
        body = {
            "@odata.context": _odata_context(request, mailbox, folder, query.select),
            "value": [
                _message(item, names, query.select, with_bodies) for item in page
            ],
        }
        if len(items) > query.skip + query.top:
            body["@odata.nextLink"] = _next_link(request, query)
        _after(fault)
        return web.json_response(body)
    finally:
        state.graph_leave(client_id, address)


def _query_options(query, known, unknown_message) -> dict:
    """The OData options of `query` that are in `known` (by name without "$",
    case-insensitive), each at most once; another "$" option raises GraphError 400
    with `unknown_message(key, bare)`. Other parameters are ignored, as Graph does."""
    options = {}
    for key, value in query.items():
        name = key.lower()
        bare = name[1:] if name.startswith("$") else name
        if bare in known:
            if bare in options:
                raise GraphError(
                    400,
                    "BadRequest",
                    f"Query option '${bare}' was specified more than once, but it "
                    "must be specified at most once.",
                )
            options[bare] = value
        elif name.startswith("$"):
            raise GraphError(400, "BadRequest", unknown_message(key, bare))
    return options


def _list_option_unknown(key: str, bare: str) -> str:
    if bare in UNSUPPORTED_OPTIONS:
        return f"The sandbox does not support the query option '${bare}'."
    return f"The query parameter '{key}' is not supported."


def parse_list_query(query) -> ListQuery:
    """$filter, $select, $top and $skip of a listing; raises GraphError 400."""
    options = _query_options(query, QUERY_OPTIONS, _list_option_unknown)
    parsed = ListQuery()
    if "filter" in options:
        parsed.received = parse_received_filter(options["filter"])
        if parsed.received is None:
            parsed.internet_message_id = parse_filter(options["filter"])
    if "select" in options:
        parsed.select = parse_select(options["select"])
    for name in ("top", "skip"):
        if name in options:
            text = options[name].strip()
            if not text.isdigit():
                raise GraphError(
                    400,
                    "BadRequest",
                    f"Invalid value '{options[name]}' for ${name} query option found. "
                    f"The ${name} query option requires a non-negative integer value.",
                )
            setattr(parsed, name, int(text))
    parsed.top = min(parsed.top, MAX_TOP)
    return parsed


def _filter_error(detail: str) -> GraphError:
    return GraphError(400, "BadRequest", f"Invalid filter clause: {detail}")


def parse_filter(text: str) -> str:
    """The value of ``internetMessageId eq '...'``, the one $filter the sandbox
    understands (optionally in parentheses). In an OData string literal a single
    quote is written twice (``''``); anything else is a 400 BadRequest."""
    length = len(text)
    pos = 0

    def skip_spaces(at):
        while at < length and text[at].isspace():
            at += 1
        return at

    def syntax_error(at):
        return _filter_error(f"Syntax error at position {at} in '{text}'.")

    unsupported = _filter_error(
        "the sandbox can filter messages only with internetMessageId eq '...'."
    )
    pos = skip_spaces(pos)
    depth = 0
    while pos < length and text[pos] == "(":
        depth += 1
        pos = skip_spaces(pos + 1)
    match = _IDENTIFIER.match(text, pos)
    if match is None:
        raise syntax_error(pos)
    if match.group().lower() != "internetmessageid":
        raise unsupported
    pos = match.end()
    if pos >= length or not text[pos].isspace():
        raise syntax_error(pos)
    pos = skip_spaces(pos)
    match = _IDENTIFIER.match(text, pos)
    if match is None:
        raise syntax_error(pos)
    if match.group().lower() != "eq":
        raise unsupported
    pos = match.end()
    if pos >= length or not text[pos].isspace():
        raise syntax_error(pos)
    pos = skip_spaces(pos)
    if pos >= length or text[pos] != "'":
        raise unsupported if pos < length else syntax_error(pos)
    start = pos
    pos += 1
    value = []
    while True:
        if pos >= length:
            raise _filter_error(
                f"There is an unterminated string literal at position {start} in "
                f"'{text}'."
            )
        char = text[pos]
        if char == "'":
            if pos + 1 < length and text[pos + 1] == "'":
                value.append("'")
                pos += 2
                continue
            pos += 1
            break
        value.append(char)
        pos += 1
    pos = skip_spaces(pos)
    while depth and pos < length and text[pos] == ")":
        depth -= 1
        pos = skip_spaces(pos + 1)
    if depth:
        raise _filter_error(f"')' or operator expected at position {pos} in '{text}'.")
    if pos < length:
        word = _IDENTIFIER.match(text, pos)
        if word and word.group().lower() in ("and", "or"):
            raise unsupported
        raise syntax_error(pos)
    return "".join(value)


_RECEIVED = re.compile(
    r"\s*(?P<open>\(?)\s*receivedDateTime\s+(?P<op>ge|gt)\s+"
    r"(?P<quote>'?)(?P<value>[^')\s]+)(?P=quote)\s*(?P<close>\)?)\s*",
    re.IGNORECASE,
)


def parse_received_filter(text: str) -> tuple | None:
    """``receivedDateTime ge|gt <ISO 8601>`` as (operator, timestamp, text), or
    None for another filter; a date that is not ISO 8601 is a 400."""
    match = _RECEIVED.fullmatch(text)
    if match is None or bool(match["open"]) != bool(match["close"]):
        return None
    value = match["value"]
    try:
        moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _filter_error(
            f"The DateTimeOffset text '{value}' should be in format "
            "'yyyy-mm-ddThh:mm:ss('.'s+)?(zzzzzz)?' and each field value is within "
            "valid range."
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return (match["op"].lower(), moment.timestamp(), value)


def parse_select(text: str) -> list:
    """The property names of $select, spelled as Graph spells them."""
    names = []
    for part in text.split(","):
        name = part.strip()
        if not name:
            raise GraphError(
                400,
                "BadRequest",
                f"Invalid $select clause: '{text}' has an empty item.",
            )
        canonical = _CANONICAL.get(name.lower())
        if canonical is None:
            raise GraphError(
                400,
                "RequestBroker--ParseUri",
                f"Could not find a property named '{name}' on type "
                "'Microsoft.OutlookServices.Message'.",
            )
        if canonical not in names:
            names.append(canonical)
    return names


def _names_of(state, tenant):
    """Display names for addresses of the tenant (the address otherwise)."""

    def name(address: str) -> str:
        user = state.user(tenant, address)
        return (user.display_name if user else "") or address

    return name


def _graph_time(ts: float) -> str:
    moment = datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _message(item: dict, names, select: list | None, with_bodies: bool) -> dict:
    """A saved copy as Graph's message resource, trimmed to ``select``."""

    def recipient(address):
        return {"emailAddress": {"name": names(address), "address": address}}

    filed = _graph_time(item["visible_at"])
    sent = _graph_time(item["saved_at"])
    html = item.get("html")
    content = html if html is not None else (item.get("text") or "")
    preview = re.sub(r"<[^>]*>", " ", content) if html is not None else content
    mailbox_key = hashlib.sha256(item["mailbox"].lower().encode()).hexdigest()
    full = {
        "id": item["id"],
        "createdDateTime": filed,
        "lastModifiedDateTime": filed,
        "changeKey": item["change_key"],
        "categories": [],
        "receivedDateTime": sent,
        "sentDateTime": sent,
        "hasAttachments": False,
        "internetMessageId": item["message_id"],
        "subject": item.get("subject") or "",
        "bodyPreview": " ".join(preview.split())[:255],
        "importance": "normal",
        "parentFolderId": "AQMkA" + mailbox_key[:40] + "AAAEJAAAA",
        "conversationId": "AAQkA" + item["change_key"].rstrip("="),
        "isDeliveryReceiptRequested": False,
        "isReadReceiptRequested": False,
        "isRead": True,
        "isDraft": False,
        "inferenceClassification": "focused",
        "body": {
            "contentType": "html" if html is not None else "text",
            "content": content,
        },
        "uniqueBody": {
            "contentType": "html" if html is not None else "text",
            "content": content,
        },
        "sender": recipient(item["from"]),
        "from": recipient(item["from"]),
        "toRecipients": [recipient(a) for a in item.get("to", [])],
        "ccRecipients": [recipient(a) for a in item.get("cc", [])],
        "bccRecipients": [recipient(a) for a in item.get("bcc", [])],
        "replyTo": [recipient(a) for a in item.get("reply_to", [])],
        "flag": {"flagStatus": "notFlagged"},
        "internetMessageHeaders": [
            {"name": name, "value": value}
            for name, value in item.get("headers", {}).items()
        ],
    }
    if select is None:
        wanted = [name for name in MESSAGE_PROPERTIES if name not in SELECT_ONLY]
    else:
        wanted = ["id"] + [name for name in select if name != "id"]
    if not with_bodies:
        wanted = [name for name in wanted if name not in BODY_PROPERTIES]
    message = {"@odata.etag": f'W/"{item["change_key"]}"'}
    message.update({name: full[name] for name in wanted})
    return message


def _odata_context(request: web.Request, mailbox, folder: str, select) -> str:
    target = request.match_info.get("user") or mailbox.object_id
    context = (
        "https://graph.microsoft.com/v1.0/$metadata#"
        f"users('{quote(target, safe='')}')/mailFolders('{folder}')/messages"
    )
    if select:
        context += "(" + ",".join(select) + ")"
    return context


def _next_link(request: web.Request, query: ListQuery) -> str:
    params = {}
    if query.internet_message_id is not None:
        literal = query.internet_message_id.replace("'", "''")
        params["$filter"] = f"internetMessageId eq '{literal}'"
    elif query.received is not None:
        params["$filter"] = f"receivedDateTime {query.received[0]} {query.received[2]}"
    if query.select:
        params["$select"] = ",".join(query.select)
    params["$top"] = str(query.top)
    params["$skip"] = str(query.skip + query.top)
    return str(request.url.with_query(params))


# --- one message's MIME ($value) ------------------------------------------------------


async def get_mime(request: web.Request) -> web.StreamResponse:
    """GET /v1.0/users/{user}/messages/{id}/$value (and /me/...): the message's
    MIME text. Graph answers it as text/plain."""
    return await _answer(request, _get_mime)


async def _get_mime(ctx, request: web.Request) -> web.StreamResponse:
    state = ctx.state
    caller = _caller(ctx, request)
    mailbox, granted = _reader(state, caller, request)
    if not granted & READ_BODIES:
        # Mail.ReadBasic(.All) reads no bodies, so no MIME either.
        raise GraphError(403, "ErrorAccessDenied")
    address = mailbox.user_principal_name
    client_id = caller.app.client_id
    _enter(state, client_id, address)
    try:
        fault = state.take_fault("graph", operation="listMessages")
        await _before(request, fault)
        item = state.inbox_item(address, request.match_info["message_id"])
        if item is None:
            raise GraphError(
                404,
                "ErrorItemNotFound",
                "The specified object was not found in the store.",
            )
        state.count("graph_get_mime")
        _after(fault)
        return web.Response(body=item["raw"], content_type="text/plain")
    finally:
        state.graph_leave(client_id, address)


# --- Inbox delta query -------------------------------------------------------------

DELTA_PAGE_SIZE = 10  # Graph's default page of a messages delta
DELTA_OPTIONS = ("select", "filter", "deltatoken", "skiptoken")
SYNC_STATE_NOT_FOUND = (
    "The sync state generation is not found. The delta token is expired or not "
    "valid and data must be synchronized again."
)


async def inbox_delta(request: web.Request) -> web.StreamResponse:
    """GET /v1.0/users/{user}/mailFolders/inbox/messages/delta (and /me/...)."""
    return await _answer(request, _inbox_delta)


def _delta_options(query) -> dict:
    return _query_options(
        query,
        DELTA_OPTIONS,
        lambda key, _bare: (
            f"The query option '{key}' is not supported with delta queries of messages."
        ),
    )


def _max_page_size(prefer: str | None) -> int | None:
    """``odata.maxpagesize=N`` of a ``Prefer`` header, if it has a usable one."""
    for part in (prefer or "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "odata.maxpagesize" and value.strip().isdigit():
            size = int(value.strip())
            if size > 0:
                return min(size, MAX_TOP)
    return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _seal(state, data: dict) -> str:
    """An opaque token: base64url JSON plus an HMAC with the sandbox's key."""
    payload = json.dumps(data, separators=(",", ":")).encode()
    mac = hmac.new(state.delta_key, payload, hashlib.sha256).digest()[:18]
    return f"{_b64(payload)}.{_b64(mac)}"


def _unseal(state, token: str, address: str, sync_id: str, position: int) -> dict:
    """The data of a token this sandbox made for this inbox, else 410 Gone."""
    gone = GraphError(410, "SyncStateNotFound", SYNC_STATE_NOT_FOUND)
    payload_text, _, mac_text = (token or "").partition(".")
    try:
        payload = _unb64(payload_text)
        mac = _unb64(mac_text)
    except (binascii.Error, ValueError) as exc:
        raise gone from exc
    expected = hmac.new(state.delta_key, payload, hashlib.sha256).digest()[:18]
    if not mac or not hmac.compare_digest(mac, expected):
        raise gone
    data = json.loads(payload)
    if (
        data.get("m") != address.lower()
        or data.get("g") != sync_id
        or not 0 <= data.get("p", -1) <= position
    ):
        raise gone  # another mailbox, an inbox since reset, or a made-up position
    return data


async def _inbox_delta(ctx, request: web.Request) -> web.StreamResponse:
    state = ctx.state
    caller = _caller(ctx, request)
    mailbox, granted = _reader(state, caller, request)
    address = mailbox.user_principal_name
    folder = _folder(request)
    if folder.lower() != "inbox":
        raise GraphError(
            400, "ErrorInvalidIdMalformed", "The sandbox tracks changes of the Inbox."
        )
    options = _delta_options(request.query)
    page_size = _max_page_size(request.headers.get("Prefer")) or DELTA_PAGE_SIZE

    client_id = caller.app.client_id
    _enter(state, client_id, address)
    try:
        fault = state.take_fault("graph", operation="listMessages")
        await _before(request, fault)
        view = state.inbox_view(address)
        token = options.get("skiptoken") or options.get("deltatoken")
        if token is not None:
            # $select and $filter of a round live in its tokens.
            data = _unseal(state, token, address, view["sync_id"], view["position"])
            after, select = data["p"], data.get("s")
            received = tuple(data["r"]) if data.get("r") else None
        else:
            after = 0
            select = parse_select(options["select"]) if "select" in options else None
            received = None
            if "filter" in options:
                received = parse_received_filter(options["filter"])
                if received is None:
                    raise _filter_error(
                        "a delta query of messages can filter only with "
                        "receivedDateTime ge|gt <date and time>."
                    )
        pending = [
            item
            for item in view["items"]
            if item["position"] > after and _received_matches(received, item)
        ]
        page = pending[:page_size]
        names = _names_of(state, caller.tenant)
        with_bodies = bool(granted & READ_BODIES)
        body = {
            "@odata.context": _odata_context(request, mailbox, folder, select)
            + "/$delta",
            "value": [_message(item, names, select, with_bodies) for item in page],
        }
        seal = {"m": address.lower(), "g": view["sync_id"], "s": select}
        if len(pending) > len(page):
            seal.update(p=page[-1]["position"], r=list(received) if received else None)
            body["@odata.nextLink"] = str(
                request.url.with_query({"$skiptoken": _seal(state, seal)})
            )
        else:
            seal.update(p=view["position"])
            body["@odata.deltaLink"] = str(
                request.url.with_query({"$deltatoken": _seal(state, seal)})
            )
        state.count("graph_delta")
        _after(fault)
        response = web.json_response(body)
        if _max_page_size(request.headers.get("Prefer")):
            response.headers["Preference-Applied"] = f"odata.maxpagesize={page_size}"
        return response
    finally:
        state.graph_leave(client_id, address)


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


# Who may read a user of the directory, app-only and delegated (beyond /me).
# https://learn.microsoft.com/en-us/graph/api/user-get#permissions
USER_READ_APPLICATION = {
    "User.Read.All",
    "User.ReadBasic.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
}
USER_READ_DELEGATED = USER_READ_APPLICATION
USER_PROPERTIES = ("id", "displayName", "mail", "userPrincipalName")


async def get_user(request: web.Request) -> web.StreamResponse:
    """GET /v1.0/users/{id or userPrincipalName}[?$select=...]: a directory user
    (``mail`` is null for a user without a mailbox)."""
    return await _answer(request, _get_user)


async def _get_user(ctx, request: web.Request) -> web.StreamResponse:
    state = ctx.state
    caller = _caller(ctx, request)
    granted = set(caller.permissions)
    allowed = USER_READ_DELEGATED if caller.delegated else USER_READ_APPLICATION
    if not granted & allowed:
        raise GraphError(403, "Authorization_RequestDenied")
    select = None
    for key, value in request.query.items():
        if key.lower() in ("select", "$select"):
            select = [name.strip() for name in value.split(",") if name.strip()]
    known = {name.lower(): name for name in USER_PROPERTIES}
    for name in select or ():
        if name.lower() not in known:
            raise GraphError(
                400,
                "Request_BadRequest",
                f"Could not find a property named '{name}' on type "
                "'microsoft.graph.user'.",
            )
    target = request.match_info["user"]
    with state.lock:
        user = state.user(caller.tenant, target)
        if user is None:
            raise GraphError(404, "Request_ResourceNotFound", id=target)
        full = {
            "id": user.object_id,
            "displayName": user.display_name or None,
            "mail": user.user_principal_name if user.has_mailbox else None,
            "userPrincipalName": user.user_principal_name,
        }
    names = [known[name.lower()] for name in select] if select else USER_PROPERTIES
    context = "https://graph.microsoft.com/v1.0/$metadata#users"
    if select:
        context += "(" + ",".join(names) + ")"
    body = {"@odata.context": context + "/$entity"}
    body.update({name: full[name] for name in names})
    return web.json_response(body)


async def not_found(request: web.Request) -> web.StreamResponse:
    request[REQUEST_ID] = str(uuid.uuid4())
    segment = request.match_info.get("tail", "").split("/")[0]
    error = GraphError(
        400, "BadRequest", f"Resource not found for the segment '{segment}'."
    )
    return _finish(request, error.response(request))
