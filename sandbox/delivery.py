"""Delivery into the sandbox's inboxes, and Exchange's non-delivery reports.

A message accepted by Graph or SMTP is filed, as raw RFC 5322 bytes, in the inbox
of each recipient that is a mailbox user of a sandbox tenant. A recipient whose
domain belongs to a sandbox tenant but who is no user there (or has no mailbox)
gets the sender a non-delivery report, as Exchange Online answers
``550 5.1.10 RESOLVER.ADR.RecipientNotFound``.
"""

from sandbox import mime


def deliver(
    state,
    *,
    raw,
    fields: dict,
    recipients: list,
    sender: str,
    fallback_sender: str,
) -> None:
    """File one accepted message.

    ``raw`` is the message's bytes or a function making them (built only when
    read); ``fields`` its Graph-facing properties (``mime.summary``'s keys);
    ``sender`` the address reports go to (the envelope sender), else
    ``fallback_sender`` (the authenticated mailbox).
    """
    unknown = []
    seen = set()
    for recipient in recipients:
        key = recipient.lower()
        if key in seen:
            continue
        seen.add(key)
        tenant = state.tenant(recipient.rpartition("@")[2])
        if tenant is None:
            continue  # another organisation: out of the sandbox's sight
        user = tenant.users.get(key)
        if user is not None and user.has_mailbox:
            state.file_in_inbox(user.user_principal_name, raw, fields)
        else:
            unknown.append(recipient)
    if unknown:
        _report_unknown(state, raw, fields, unknown, sender, fallback_sender)


def mailbox_user(state, address: str):
    """(tenant, user) of a sandbox user with a mailbox, else (None, None)."""
    tenant, user = state.user_anywhere(address or "")
    if user is None or not user.has_mailbox:
        return None, None
    return tenant, user


def _report_unknown(state, raw, fields, unknown, sender, fallback_sender) -> None:
    tenant, user = mailbox_user(state, sender)
    if user is None:
        tenant, user = mailbox_user(state, fallback_sender)
    if user is None or not tenant.ndr_for_unknown_recipients:
        return
    original_raw = raw() if callable(raw) else raw
    now = state.clock.now()
    for recipient in unknown:
        report = mime.delivery_report(
            kind="ndr",
            sender=user.user_principal_name,
            domain=tenant.domains[0] if tenant.domains else "sandbox.invalid",
            recipient=recipient,
            original_id=fields.get("message_id") or "",
            original_subject=fields.get("subject") or "",
            original_raw=original_raw,
            arrival=now,
            ts=now,
        )
        state.file_in_inbox(user.user_principal_name, report, mime.summary(report))
