"""The recipient policy applied to a project's mail: when a link is saved, when a
test notification is sent, and again when a delivery is sent.

The policy itself (which domains a tool may send to) is
`integrations.providers.recipients`; this module asks it about one project's
addresses and writes the audit entry when it refuses any.
"""

from django.utils.translation import gettext as _

from integrations.models import AuditAction, Integration
from integrations.providers.recipients import RecipientVerdict
from integrations.services import audit_record, provider_for
from integrations.text import single_line

#: A delivery's error code when the policy refused a recipient at send time.
RECIPIENT_REFUSED = "recipient_refused"


def recipients_check_for_project(
    *, integration: Integration, recipients, project, actor=None
) -> RecipientVerdict:
    """Which of `recipients` `integration` must not send to for `project`.

    Each refusal is audited (RECIPIENT_REFUSED, about "project:<slug>", the refused
    addresses as detail, `actor` the person who asked, None for the worker). A tool
    whose provider is no longer registered refuses everything.
    """
    verdict = _check(integration, recipients)
    if not verdict.ok:
        _audit(integration, verdict, project=project, actor=actor)
    return verdict


def delivery_recipients_refused(delivery) -> bool:
    """At send time: whether the delivery's tool refuses any of its recipients now
    (its allowed domains may have narrowed since the link was saved). Audited; the
    caller fails the delivery with RECIPIENT_REFUSED and sends nothing."""
    verdict = _check(delivery.integration, delivery.recipients)
    if verdict.ok:
        return False
    _audit(delivery.integration, verdict, project=delivery.project, actor=None)
    return True


def _check(integration: Integration, recipients) -> RecipientVerdict:
    recipients = list(recipients)
    try:
        return provider_for(integration).check_recipients(recipients)
    except KeyError:  # the provider is no longer registered: fail closed
        return RecipientVerdict(refused=tuple(recipients), allowed=())


def _audit(integration, verdict: RecipientVerdict, *, project, actor) -> None:
    audit_record(
        provider_key=integration.provider,
        action=AuditAction.RECIPIENT_REFUSED,
        actor=actor,
        subject=f"project:{project.slug}",
        detail=single_line(", ".join(verdict.refused), 1000),
        succeeded=False,
        error_code=RECIPIENT_REFUSED,
    )


def refusal_message(verdict: RecipientVerdict) -> str:
    """The sentence shown to a project owner for a refusal."""
    return _(
        "%(refused)s: this tool may only send to %(allowed)s. Use addresses in "
        "those domains, or ask a security admin to allow the domain in the tool's "
        "settings."
    ) % {
        "refused": ", ".join(verdict.refused[:5])
        + ("…" if len(verdict.refused) > 5 else ""),
        "allowed": ", ".join(verdict.allowed) or _("no domain"),
    }
