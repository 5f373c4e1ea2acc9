"""The control API under /_sandbox/: seed, reset, directory, faults, mail.

Loopback callers only, and switched off entirely with ``--no-control``
(except ``/_sandbox/ca.pem``, which a person needs to trust the sandbox).
"""

import functools
import html
import ipaddress
import json
import re

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from sandbox import mime
from sandbox.delivery import mailbox_user
from sandbox.keys import CTX
from sandbox.state import DEFAULT_SMTP_OFFERS, Certificate, iso


class ControlError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _is_loopback(remote: str | None) -> bool:
    """Whether the caller's address (aiohttp's `request.remote`) is loopback; an
    IPv4 caller of a dual-stack socket shows as ::ffff:127.0.0.1."""
    try:
        address = ipaddress.ip_address((remote or "").split("%")[0])
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def control(handler):
    """Guard a control handler: enabled, loopback caller, JSON errors."""

    @functools.wraps(handler)
    async def guarded(request: web.Request):
        ctx = request.app[CTX]
        if not ctx.control:
            raise web.HTTPNotFound()
        if not _is_loopback(request.remote):
            return _error(403, "The control API answers loopback callers only.")
        try:
            return await handler(request, ctx)
        except ControlError as error:
            return _error(error.status, error.message)
        except ValueError as error:
            return _error(400, str(error))

    return guarded


def _error(status: int, message: str) -> web.Response:
    code = {400: "BadRequest", 403: "Forbidden", 404: "NotFound"}.get(status, "Error")
    body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status)


async def _json(request: web.Request) -> dict:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ControlError(400, "The body is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise ControlError(400, "The body must be a JSON object.")
    return data


def _tenant(ctx, request):
    tenant = ctx.state.tenant(request.match_info["tenant"])
    if tenant is None:
        raise ControlError(404, f"Tenant {request.match_info['tenant']} not found.")
    return tenant


def _app(ctx, request):
    tenant = _tenant(ctx, request)
    app = ctx.state.app(tenant, request.match_info["client_id"])
    if app is None:
        raise ControlError(404, f"App {request.match_info['client_id']} not found.")
    return app


def _user(ctx, request):
    tenant = _tenant(ctx, request)
    user = ctx.state.user(tenant, request.match_info["upn"])
    if user is None:
        raise ControlError(404, f"User {request.match_info['upn']} not found.")
    return user


async def ca_pem(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    return web.Response(
        body=ctx.tls.ca_path.read_bytes(), content_type="application/x-pem-file"
    )


@control
async def seed_values(request, ctx):
    return web.json_response(ctx.seed())


@control
async def reset(request, ctx):
    ctx.reset()
    return web.json_response({"reset": True})


@control
async def create_tenant(request, ctx):
    tenant = ctx.state.create_tenant(await _json(request))
    return web.json_response(tenant.public(), status=201)


@control
async def update_tenant(request, ctx):
    tenant = ctx.state.update_tenant(_tenant(ctx, request), await _json(request))
    return web.json_response(tenant.public())


@control
async def create_app(request, ctx):
    app = ctx.state.create_app(_tenant(ctx, request), await _json(request))
    return web.json_response(app.public(), status=201)


@control
async def update_app(request, ctx):
    app = ctx.state.update_app(_app(ctx, request), await _json(request))
    return web.json_response(app.public())


@control
async def add_secret(request, ctx):
    secret = ctx.state.add_secret(_app(ctx, request), await _json(request))
    return web.json_response(secret.public(), status=201)


@control
async def add_certificate(request, ctx):
    app = _app(ctx, request)
    data = await _json(request)
    try:
        cert = x509.load_pem_x509_certificate(data.get("certificate_pem", "").encode())
    except ValueError as exc:
        raise ControlError(400, "certificate_pem is not a PEM certificate.") from exc
    not_after = cert.not_valid_after_utc.timestamp()
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    stored = Certificate(
        sha1=cert.fingerprint(hashes.SHA1()),  # nosec B303  # Entra ID's x5t thumbprint
        sha256=cert.fingerprint(hashes.SHA256()),
        public_key=cert.public_key(),
        pem=data["certificate_pem"],
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=not_after,
        expires_at=not_after,
        display_name=f"CN={names[0].value}" if names else cert.subject.rfc4514_string(),
        der=cert.public_bytes(serialization.Encoding.DER),
    )
    ctx.state.add_certificate(app, stored)
    return web.json_response(stored.public(), status=201)


@control
async def update_secret(request, ctx):
    """PATCH .../secrets/{secret_id} ``{"expires_at"}``: move a secret's expiry."""
    app = _app(ctx, request)
    secret = app.secret(request.match_info["secret_id"])
    if secret is None:
        raise ControlError(404, f"Secret {request.match_info['secret_id']} not found.")
    secret = ctx.state.update_secret(secret, await _json(request))
    data = secret.public()
    data.pop("value")
    return web.json_response(data)


@control
async def update_certificate(request, ctx):
    """PATCH .../certificates/{thumbprint} ``{"expires_at"}``: when Entra ID
    stops accepting the certificate (null: its notAfter again)."""
    app = _app(ctx, request)
    cert = app.certificate_by_thumbprint(request.match_info["thumbprint"])
    if cert is None:
        raise ControlError(
            404, f"Certificate {request.match_info['thumbprint']} not found."
        )
    cert = ctx.state.update_certificate(cert, await _json(request))
    return web.json_response(cert.public())


@control
async def revoke_consent(request, ctx):
    """POST .../revoke_consent: the admin consent is taken back."""
    app = ctx.state.revoke_consent(_app(ctx, request))
    return web.json_response(app.public())


@control
async def create_user(request, ctx):
    user = ctx.state.create_user(_tenant(ctx, request), await _json(request))
    return web.json_response(user.public(), status=201)


@control
async def update_user(request, ctx):
    user = ctx.state.update_user(_user(ctx, request), await _json(request))
    return web.json_response(user.public())


@control
async def revoke_user(request, ctx):
    user = _user(ctx, request)
    ctx.state.revoke_user(user)
    return web.json_response({"revoked": user.user_principal_name})


@control
async def add_fault(request, ctx):
    fault = ctx.state.add_fault(await _json(request))
    return web.json_response({"id": fault["id"]}, status=201)


@control
async def list_faults(request, ctx):
    with ctx.state.lock:
        faults = [dict(f) for f in ctx.state.faults]
    return web.json_response({"faults": faults})


@control
async def clear_faults(request, ctx):
    return web.json_response({"deleted": ctx.state.clear_faults()})


@control
async def set_throttling(request, ctx):
    return web.json_response(ctx.state.set_throttling(await _json(request)))


@control
async def get_throttling(request, ctx):
    with ctx.state.lock:
        return web.json_response(dict(ctx.state.throttling))


@control
async def set_smtp_offers(request, ctx):
    data = await _json(request)
    unknown = sorted(set(data) - set(DEFAULT_SMTP_OFFERS))
    if unknown:
        raise ControlError(400, f"Unknown SMTP extension: {', '.join(unknown)}.")
    if not all(isinstance(value, bool) for value in data.values()):
        raise ControlError(400, "Each extension takes true or false.")
    return web.json_response(ctx.state.set_smtp_offers(data))


@control
async def get_counters(request, ctx):
    return web.json_response(ctx.state.counters_snapshot())


@control
async def zero_counters(request, ctx):
    ctx.state.zero_counters()
    return web.json_response(ctx.state.counters_snapshot())


@control
async def clock(request, ctx):
    data = await _json(request)
    try:
        seconds = float(data.get("advance_seconds", 0))
    except (TypeError, ValueError) as exc:
        raise ControlError(400, "advance_seconds must be a number.") from exc
    ctx.state.clock.advance(seconds)
    return web.json_response({"offset_seconds": ctx.state.clock.offset})


@control
async def list_messages(request, ctx):
    query = request.query
    messages = ctx.state.find_messages(
        to=query.get("to"), sender=query.get("from"), subject=query.get("subject")
    )
    return web.json_response({"messages": messages})


@control
async def delete_messages(request, ctx):
    return web.json_response({"deleted": ctx.state.clear_messages()})


def sent_item_public(item: dict) -> dict:
    """A saved Sent Items copy as the control API shows it (times in ISO 8601)."""
    data = dict(item)
    data["saved_at"] = iso(item["saved_at"])
    data["visible_at"] = iso(item["visible_at"])
    return data


@control
async def list_sent_items(request, ctx):
    items = ctx.state.all_sent_items(request.query.get("mailbox"))
    return web.json_response({"sent_items": [sent_item_public(i) for i in items]})


@control
async def delete_sent_items(request, ctx):
    return web.json_response({"deleted": ctx.state.clear_sent_items()})


@control
async def inbox(request, ctx):
    """A small page listing the stored messages, newest first."""
    query = request.query
    messages = ctx.state.find_messages(
        to=query.get("to"), sender=query.get("from"), subject=query.get("subject")
    )
    rows = []
    for message in reversed(messages[-500:]):
        body = message.get("text")
        if body is None:
            body = message.get("html") or ""
        rows.append(
            "<details><summary>"
            f"<b>{html.escape(message.get('subject') or '(no subject)')}</b> "
            f"<span>{html.escape(message.get('from') or '')} &rarr; "
            f"{html.escape(message['recipient'])}</span> "
            f"<small>{html.escape(message['received_at'])} via "
            f"{html.escape(message['transport'])}</small></summary>"
            f"<pre>{html.escape(json.dumps(message['headers'], indent=1))}</pre>"
            f"<pre>{html.escape(body)}</pre></details>"
        )
    listing = "".join(rows) or "<p>No messages yet.</p>"
    document = f"""<!doctype html><html lang=en><head><meta charset=utf-8>
<meta http-equiv=refresh content=5><title>Sandbox inbox</title>
<style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto}}
details{{border-bottom:1px solid #ddd;padding:.5em 0}}span{{color:#555}}
small{{color:#888}}pre{{white-space:pre-wrap;background:#f6f6f6;padding:.5em}}
</style></head><body><h1>Sandbox inbox</h1>
<p>{len(messages)} message(s). Filter with <code>?to=</code>, <code>?from=</code>,
<code>?subject=</code>.</p>{listing}</body></html>"""
    return web.Response(text=document, content_type="text/html")


# --- mailboxes (inboxes read over IMAP and Graph) -----------------------------------

_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:")


def inbox_public(item: dict, raw: bool = False) -> dict:
    """An inbox item as the control API shows it (``raw`` bytes on request)."""
    data = {
        "id": item["id"],
        "uid": item["uid"],
        "internet_message_id": item.get("message_id") or "",
        "subject": item.get("subject") or "",
        "from": item.get("from") or "",
        "received_at": iso(item["received_at"]),
    }
    if raw:
        data["raw"] = item["raw"]
    return data


def _mailbox(ctx, request):
    tenant, user = mailbox_user(ctx.state, request.match_info["upn"])
    if user is None:
        raise ControlError(404, f"Mailbox {request.match_info['upn']} not found.")
    return tenant, user


@control
async def mailbox_messages(request, ctx):
    _, user = _mailbox(ctx, request)
    items = ctx.state.inbox_items(user.user_principal_name, with_raw=False)
    return web.json_response({"messages": [inbox_public(i) for i in items]})


def _text(data: dict, name: str, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ControlError(400, f"{name} must be a non-empty string.")
    return value


def _original(state, message_id: str) -> tuple:
    """(subject, header block) of the stored message with this Message-ID."""
    with state.lock:
        found = next(
            (m for m in reversed(state.messages) if m["message_id"] == message_id),
            None,
        )
        headers = dict(found["headers"]) if found else None
        subject = found.get("subject") or "" if found else ""
    if not headers:
        return subject, None
    headers.setdefault("Message-ID", message_id)
    block = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return subject, block.encode("utf-8")


@control
async def add_mailbox_message(request, ctx):
    """File a raw message, or a generated report, in a mailbox's inbox."""
    tenant, user = _mailbox(ctx, request)
    data = await _json(request)
    state = ctx.state
    upn = user.user_principal_name
    if "raw" in data:
        if "kind" in data:
            raise ControlError(400, "Give either raw or kind, not both.")
        text = _text(data, "raw", required=True)
        raw = text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
        if not _HEADER_LINE.match(raw):
            raise ControlError(400, "raw must be an RFC 5322 message (headers first).")
    elif "kind" in data:
        kind = data["kind"]
        if kind not in mime.KINDS:
            raise ControlError(400, f"kind must be one of {', '.join(mime.KINDS)}.")
        original_id = _text(data, "original_message_id", required=True)
        recipient = _text(data, "recipient", required=True)
        if "@" not in recipient.strip("@"):
            raise ControlError(400, "recipient must be an e-mail address.")
        status = _text(data, "status")
        if status is not None and not _STATUS.match(status):
            raise ControlError(400, "status must be an enhanced status code (5.1.10).")
        diagnostic = _text(data, "diagnostic")
        subject = _text(data, "subject")
        original_subject, original_headers = _original(state, original_id)
        now = state.clock.now()
        if kind in ("ndr", "delay"):
            raw = mime.delivery_report(
                kind=kind,
                sender=upn,
                domain=tenant.domains[0] if tenant.domains else "sandbox.invalid",
                recipient=recipient,
                original_id=original_id,
                original_subject=original_subject,
                original_raw=original_headers,
                status=status,
                diagnostic=diagnostic,
                subject=subject,
                arrival=now,
                ts=now,
            )
        else:
            raw = mime.automatic_reply(
                kind=kind,
                sender=upn,
                responder=recipient,
                original_id=original_id,
                original_subject=original_subject,
                subject=subject,
                ts=now,
            )
    else:
        raise ControlError(
            400, "The body needs raw (a whole message) or kind (ndr, delay, ...)."
        )
    item = state.file_in_inbox(upn, raw, mime.summary(raw))
    return web.json_response({"id": item["id"], "uid": item["uid"]}, status=201)


@control
async def renumber_mailbox(request, ctx):
    _, user = _mailbox(ctx, request)
    return web.json_response(ctx.state.renumber_inbox(user.user_principal_name))


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/_sandbox/ca.pem", ca_pem)
    r.add_get("/_sandbox/seed", seed_values)
    r.add_post("/_sandbox/reset", reset)
    r.add_post("/_sandbox/tenants", create_tenant)
    r.add_patch("/_sandbox/tenants/{tenant}", update_tenant)
    r.add_post("/_sandbox/tenants/{tenant}/apps", create_app)
    r.add_patch("/_sandbox/tenants/{tenant}/apps/{client_id}", update_app)
    r.add_post("/_sandbox/tenants/{tenant}/apps/{client_id}/secrets", add_secret)
    r.add_patch(
        "/_sandbox/tenants/{tenant}/apps/{client_id}/secrets/{secret_id}",
        update_secret,
    )
    r.add_post(
        "/_sandbox/tenants/{tenant}/apps/{client_id}/certificates", add_certificate
    )
    r.add_patch(
        "/_sandbox/tenants/{tenant}/apps/{client_id}/certificates/{thumbprint}",
        update_certificate,
    )
    r.add_post(
        "/_sandbox/tenants/{tenant}/apps/{client_id}/revoke_consent", revoke_consent
    )
    r.add_post("/_sandbox/tenants/{tenant}/users", create_user)
    r.add_patch("/_sandbox/tenants/{tenant}/users/{upn}", update_user)
    r.add_post("/_sandbox/tenants/{tenant}/users/{upn}/revoke", revoke_user)
    r.add_post("/_sandbox/faults", add_fault)
    r.add_get("/_sandbox/faults", list_faults)
    r.add_delete("/_sandbox/faults", clear_faults)
    r.add_put("/_sandbox/throttling", set_throttling)
    r.add_get("/_sandbox/throttling", get_throttling)
    r.add_put("/_sandbox/smtp", set_smtp_offers)
    r.add_get("/_sandbox/counters", get_counters)
    r.add_delete("/_sandbox/counters", zero_counters)
    r.add_post("/_sandbox/clock", clock)
    r.add_get("/_sandbox/messages", list_messages)
    r.add_delete("/_sandbox/messages", delete_messages)
    r.add_get("/_sandbox/sent_items", list_sent_items)
    r.add_delete("/_sandbox/sent_items", delete_sent_items)
    r.add_get("/_sandbox/inbox", inbox)
    r.add_get("/_sandbox/mailboxes/{upn}/messages", mailbox_messages)
    r.add_post("/_sandbox/mailboxes/{upn}/messages", add_mailbox_message)
    r.add_post("/_sandbox/mailboxes/{upn}/uidvalidity", renumber_mailbox)
