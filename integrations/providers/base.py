"""
The provider contract: what every notification tool declares and the fixed hooks it
implements, called in a fixed order.

A provider is mostly declarations (`key`, `name`, `description`, `form_class`,
`secret_fields`, `test_steps`, `sending_limits`) plus:

- `step_<key>(context)` for each test step, run in order by `test_connection`;
- `open()` returning a `Connection` whose `send(email)` delivers one message, so a
  batch reuses one token and one connection; `prepare(email)` splits a send into
  what needs the calling thread and the submission, which may run beside others
  when `sending_limits.concurrency` allows;
- `mailbox_reader()`, for a tool whose Email box is on: a `MailboxReader`
  (`providers.mailbox`) on the sender mailbox, which Test Connection checks as its
  last step ("Mailbox readable") and `notifications.services.bounces` reads;
- `health_check()`, the scheduled silent check: `health_steps` run like
  `test_steps` (`step_<key>` each), acquiring the token and checking permissions
  without sending mail. A step may raise `StepSkipped` (e.g. "not permitted").

Providers raise only `integrations.exceptions.IntegrationError` subclasses.
"""

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from typing import ClassVar

from django import forms
from django.db import models
from django.utils.translation import gettext_lazy as _

from integrations.exceptions import (
    ConfigurationError,
    IntegrationError,
    UnexpectedResponse,
)
from integrations.providers import recipients
from integrations.providers.delegated import GrantStore
from integrations.providers.identity import TokenStore
from integrations.providers.limits import SendingLimits
from integrations.providers.mailbox import MailboxReader
from integrations.providers.replies import reply_of


@dataclass(frozen=True)
class OutgoingEmail:
    """One message, already rendered. `message_id` includes the angle brackets."""

    to: tuple[str, ...]
    subject: str
    text: str
    html: str = ""
    message_id: str = ""
    headers: dict = field(default_factory=dict)


class StepStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    PASSED = "passed", _("Passed")
    FAILED = "failed", _("Failed")
    SKIPPED = "skipped", _("Skipped")


@dataclass
class Step:
    key: str
    label: str
    status: str = StepStatus.PENDING
    detail: str = ""
    error: IntegrationError | None = None


class StepSkipped(Exception):
    """Raised by a step that cannot be checked here (the app may not look): the
    step is reported skipped, with this message as its detail, and the run goes
    on."""


@dataclass
class TestReport:
    steps: list[Step]

    @property
    def ok(self) -> bool:
        return all(step.status == StepStatus.PASSED for step in self.steps)

    @property
    def healthy(self) -> bool:
        """No step failed and none is left pending (a health check's steps may be
        skipped as not permitted)."""
        return bool(self.steps) and all(
            step.status in (StepStatus.PASSED, StepStatus.SKIPPED)
            for step in self.steps
        )

    @property
    def failed_step(self) -> Step | None:
        return next((s for s in self.steps if s.status == StepStatus.FAILED), None)

    @property
    def error(self) -> IntegrationError | None:
        step = self.failed_step
        return step.error if step else None

    def fail_remaining(self, error: IntegrationError) -> None:
        """Mark the first unfinished step failed with `error`, the rest skipped."""
        for step in self.steps:
            if step.status == StepStatus.PENDING:
                step.status, step.error = StepStatus.FAILED, error
                break
        for step in self.steps:
            if step.status == StepStatus.PENDING:
                step.status = StepStatus.SKIPPED


class Connection(AbstractContextManager):
    """An open sending session (a token and a keep-alive or SMTP connection)."""

    #: Whether the messages it sends carry the plain-text part. Graph's sendMail
    #: takes one body, the HTML one, so a Graph connection's messages are rendered
    #: without the text part (`OutgoingEmail.text` empty), a third less rendering.
    text_part = True

    def send(self, email: OutgoingEmail) -> str:
        """Deliver one message; return the provider's request id or reply."""
        return reply_of(self.prepare(email)())

    def prepare(self, email: OutgoingEmail) -> Callable[[], str]:
        """Everything before the submission, on the calling thread (tokens, which
        may be read from and saved to the database); returns the submission, which
        delivers the message and returns what `send` returns.

        The submission may return a `PendingReply`: the message has gone out and the
        answer is read later, before the connection's next submission; or, when the
        provider's `sending_limits` allow several at once and the reply is
        `pollable`, whenever it is in, with up to that many in flight. The default
        submits with `send`, so a connection overrides one of the two.
        """
        return partial(self.send, email)

    def already_sent(
        self, email: OutgoingEmail, *, sender: str | None = None
    ) -> bool | None:
        """After an attempt whose answer was lost (a timeout, a dropped connection, a
        504 that Graph may send after accepting the message): whether the server
        already holds `email`, looked up by its Message-ID in `sender`'s mailbox
        (the tool's From when None). None when this tool cannot tell, and the
        message is then sent again."""
        return None

    def close(self) -> None:
        """Release the connection."""

    def __exit__(self, *exc_info):
        self.close()
        return False


class NotificationToolProvider:
    #: Templates receive provider classes; keep them from being instantiated there.
    do_not_call_in_templates = True
    #: Stable identifier, used in URLs and the database.
    key: ClassVar[str]
    #: Card title.
    name: ClassVar[str]
    #: One line on the card.
    description: ClassVar[str]
    #: The drawer's form.
    form_class: ClassVar[type[forms.Form]]
    #: Form fields whose values are stored encrypted and never rendered back.
    secret_fields: ClassVar[tuple[str, ...]] = ()
    #: Test Connection's steps, in order: (key, label). Each has a `step_<key>` hook.
    test_steps: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: The scheduled health check's steps, in order, like `test_steps`: each runs its
    #: `step_<key>` hook; none sends mail.
    health_steps: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: Labels for stored values that are not form fields (the audit log names them);
    #: form fields use their form label.
    field_labels: ClassVar[dict] = {
        "certificate_thumbprint": _("Certificate thumbprint"),
        "certificate_expires_on": _("Certificate expires"),
    }
    #: Form fields used by Test only, never saved (e.g. a test address).
    transient_fields: ClassVar[tuple[str, ...]] = ()
    #: Stored secrets that hold only for some settings' values, as {secret keys:
    #: settings}: a delegated grant belongs to one client, tenant and account. When
    #: one of the settings changes, the secrets are dropped rather than reused.
    bound_secrets: ClassVar[dict[tuple[str, ...], tuple[str, ...]]] = {}
    #: Secret fields a delegated grant was obtained with (a client secret): like the
    #: settings in `bound_secrets`, a new value is saved only with a new sign-in
    #: (Save & Authorize), never by a plain Save that keeps the grant.
    authorization_secret_fields: ClassVar[tuple[str, ...]] = ()
    #: A template with the drawer's buttons, instead of Test Connection and Save.
    actions_template: ClassVar[str] = ""
    #: Save sends a validation email first and saves only if it was accepted.
    save_requires_validation: ClassVar[bool] = False

    def __init__(
        self,
        *,
        config: dict,
        secrets: dict,
        token_store: TokenStore | None = None,
        grant_store: GrantStore | None = None,
    ):
        self.config = config
        self.secrets = secrets
        self.token_store = token_store
        self.grant_store = grant_store

    @classmethod
    def field_label(cls, name: str) -> str:
        """What a person calls a stored value: its form label, or `field_labels`."""
        if name in cls.field_labels:
            return str(cls.field_labels[name])
        field = cls.form_class.base_fields.get(name)
        return str(field.label) if field and field.label else name

    # --- declarations the rest of the product reads --------------------------------

    @property
    def sender(self) -> str:
        """The address messages come from."""
        raise NotImplementedError

    @property
    def default_recipients(self) -> list[str]:
        """Where notifications go unless a project says otherwise."""
        raise NotImplementedError

    @property
    def needs_authorization(self) -> bool:
        """Whether these settings need a person to sign in (Save & Authorize)."""
        return False

    @property
    def authorization_account(self) -> str:
        """The account that must sign in, when `needs_authorization`."""
        return ""

    @property
    def sending_limits(self) -> SendingLimits | None:
        """What Microsoft lets one sender mailbox submit through this tool (messages
        per period, and at a time); deliveries are paced under it. None for no
        pacing."""
        return None

    @property
    def messages_per_minute(self) -> int | None:
        """The tool's own budget (the drawer's "Messages per minute"), instead of
        the figure in `sending_limits`; None when left blank."""
        value = self.config.get("messages_per_minute")
        return int(value) if value else None

    @property
    def allowed_recipient_domains(self) -> list[str]:
        """The drawer's "Allowed recipient domains": [] for the From address's
        domain only (the default, and what tools saved before it existed get),
        ["*"] for any (`recipients.recipients_check`)."""
        return list(self.config.get(recipients.ALLOWED_DOMAINS_KEY) or [])

    def check_recipients(self, addresses) -> recipients.RecipientVerdict:
        """Which of `addresses` this tool must not send to (its recipient policy)."""
        return recipients.recipients_check(
            addresses,
            sender=self.config.get("sender") or "",
            allowed_domains=self.allowed_recipient_domains,
        )

    @property
    def email_box_enabled(self) -> bool:
        """Whether the drawer's "Email box" is on: the sender mailbox is read for
        delivery status notifications (bounces)."""
        return bool(self.config.get("email_box"))

    # --- hooks ---------------------------------------------------------------------

    def mailbox_reader(self) -> MailboxReader | None:
        """A reader of the mailbox the Email box names, or None when it is off (or
        the tool has no Email box)."""
        return None

    def open(self) -> Connection:
        """Open a sending session (acquire a token, connect)."""
        raise NotImplementedError

    def test_email(self, recipients: list[str]) -> OutgoingEmail:
        """The message Test Connection sends."""
        return OutgoingEmail(
            to=tuple(recipients),
            subject=str(_("Test email from M365 AppSec Mail")),
            text=str(
                _(
                    "This is a test message sent by the {name} notification tool. "
                    "If you can read it, vulnerability notifications will reach you."
                ).format(name=self.name)
            ),
        )

    # --- the pipeline --------------------------------------------------------------

    @property
    def mailbox_test_steps(self) -> tuple[tuple[str, str], ...]:
        """The Email box's step, last, when it is on."""
        if not self.email_box_enabled:
            return ()
        return (("mailbox", _("Mailbox readable")),)

    def new_report(self) -> TestReport:
        """A report with every step pending."""
        steps = (*self.test_steps, *self.mailbox_test_steps)
        return TestReport([Step(key, str(label)) for key, label in steps])

    def new_health_report(self) -> TestReport:
        """A health check's report with every step pending."""
        return TestReport([Step(key, str(label)) for key, label in self.health_steps])

    def health_check(self) -> TestReport:
        """The silent check: acquire the token and check permissions (and, where
        the tool can, that the sender mailbox exists), sending no mail. Runs each
        of `new_health_report()`'s steps in order, stopping at the first failure;
        a step raising `StepSkipped` is skipped and the next one runs."""
        return self.run_steps(self.new_health_report(), {})

    def run_steps(self, report: TestReport, context: dict) -> TestReport:
        """Run `report`'s pending steps (`step_<key>`) in order, recording each."""
        for step in report.steps:
            if step.status != StepStatus.PENDING:
                continue
            try:
                step.detail = getattr(self, f"step_{step.key}")(context) or ""
            except StepSkipped as skipped:
                step.status, step.detail = StepStatus.SKIPPED, str(skipped)
                continue
            except IntegrationError as error:
                report.fail_remaining(error)
                break
            except Exception as exc:  # a bug must still end the check with an answer
                report.fail_remaining(UnexpectedResponse(f"{type(exc).__name__}"))
                break
            step.status = StepStatus.PASSED
        return report

    def step_mailbox(self, context):
        """Sign in to the Email box's mailbox, open its inbox, say its size."""
        reader = self.mailbox_reader()
        if reader is None:
            raise ConfigurationError("this tool has no Email box")
        with reader:
            return reader.check()

    def test_connection(
        self, *, recipients: list[str] | None = None, report: TestReport | None = None
    ) -> TestReport:
        """Run every test step in order, stopping at the first failure.

        Progress is written into `report` as it goes, so a caller that gives up
        waiting can still show how far the test got.
        """
        report = report or self.new_report()
        context = {"recipients": recipients or self.default_recipients}
        return self.run_steps(report, context)
