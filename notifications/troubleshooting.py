"""Words for a delivery's error code: the delivery's own codes, then the tools' codes."""

from django.utils.translation import gettext_lazy as _

from integrations.troubleshooting import Troubleshooting, troubleshooting_for

DELIVERY_TROUBLESHOOTING = {
    "no_recipients": Troubleshooting(
        _("No recipients"),
        _(
            "Neither the project nor the tool has a To address. Add recipients in Project › Settings › Notification Tools, or a To in the tool's settings, then Resend."
        ),
    ),
    "recipients_suppressed": Troubleshooting(
        _("Every recipient is suppressed"),
        _(
            "Each address this project sends to through the tool bounced too often (the recipient's server said it does not exist or refuses mail), so it is left out until a project owner clears it. Fix the address or clear it in Project › Settings › Notification Tools, then Resend."
        ),
    ),
    "tool_inactive": Troubleshooting(
        _("The tool is deactivated"),
        _(
            "A security admin deactivated this notification tool, so nothing was sent. Once it is active again, Resend."
        ),
    ),
    "link_disabled": Troubleshooting(
        _("The link is switched off"),
        _(
            "Enabled was unticked for this tool in Project › Settings › Notification Tools before the email went out, so nothing was sent. Tick Enabled and save, then Resend."
        ),
    ),
    "tool_unlinked": Troubleshooting(
        _("The tool was unlinked"),
        _(
            "The notification tool was unlinked from this project before the email went out. Link it again, then Resend."
        ),
    ),
    "recipient_refused": Troubleshooting(
        _("Recipient not allowed"),
        _(
            "At least one recipient is outside the domains this tool may send to (its Allowed recipient domains, set by a security admin; by default only the From address's domain), so nothing was sent. This happens when the allowed domains were narrowed after the project's recipients were chosen. Change the recipients in Project › Settings › Notification Tools, or ask a security admin to allow the domain; then Resend. The audit log names the refused address."
        ),
    ),
    "throttled_too_long": Troubleshooting(
        _("Throttled for too long"),
        _(
            "Microsoft kept refusing this mailbox's messages for 24 hours (NOTIFICATIONS_THROTTLE_MAX_AGE_SECONDS) because too many were sent, so this email was given up; throttling alone only delays an email and never uses up its attempts. Another program probably sends from the same mailbox or through the same app registration: give it its own, or lower this tool's Messages per minute (its settings › Advanced), or send one digest per scan; then Resend."
        ),
    ),
    "worker_lost": Troubleshooting(
        _("Interrupted while sending"),
        _(
            "The task worker sending this email stopped (it was restarted or killed) before it recorded the answer. Another worker takes it over; where the tool can look the message up (Microsoft Azure Mail with the Mail.ReadBasic.All permission) it is not sent twice, otherwise the delivery log says the recipients may have it twice."
        ),
    ),
    "tool_needs_attention": Troubleshooting(
        _("Waiting for the tool"),
        _(
            "The notification tool needs attention (its card on Integrations › Notification Tools says why), so this email waits instead of failing. It is sent as soon as the tool works again: a security admin fixes the cause and saves the tool, or the next check succeeds."
        ),
    ),
    "tool_needs_attention_too_long": Troubleshooting(
        _("The tool needed attention for too long"),
        _(
            "The notification tool needed attention (authentication, consent, permission or the sender mailbox) for longer than emails wait for it (a day, unless your operator set another time), so this email was given up. Once a security admin has fixed the tool (its card on Integrations › Notification Tools says why), Resend."
        ),
    ),
    "internal_error": Troubleshooting(
        _("Unexpected error"),
        _(
            "Something went wrong in this product while preparing or sending the email. The server log has the details; Resend, and contact support if it persists."
        ),
    ),
}


def delivery_troubleshooting(code: str) -> Troubleshooting | None:
    """The title and text for a delivery's `code`; None when there is no error."""
    if not code:
        return None
    return DELIVERY_TROUBLESHOOTING.get(code) or troubleshooting_for(code)
