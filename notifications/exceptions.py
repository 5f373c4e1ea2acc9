"""Errors of the notifications app.

`NotificationError` refuses a request a person made (shown in the UI);
`DeliveryInternalError` records a delivery that failed inside this product rather
than at the tool, in the tools' hierarchy so that it is retried like their errors;
`TaskWorkerLost` is what a task row left RUNNING by a killed worker is closed with.
"""

from integrations.exceptions import IntegrationError


class NotificationError(Exception):
    """A request that cannot be carried out; `message` says what to do instead."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class RecipientsRefused(NotificationError):
    """Addresses outside the tool's allowed recipient domains (a security admin's
    setting); `field` is the form field they were typed in."""

    field = "recipients"


class DeliveryInternalError(IntegrationError):
    """Sending failed in this product, not at the tool (a bug: a template error, say).

    Retried like a transient failure, so the row is never left claimed; the delivery
    fails after the last attempt.
    """

    code = "internal_error"
    retryable = True


class TaskWorkerLost(Exception):
    """The worker running a delivery task died (killed, out of memory, its machine
    went down) without finishing it. Recorded on the task's row by the `recover`
    task, which sends the task's deliveries; never raised."""
