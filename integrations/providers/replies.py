"""
What a submission answers: a reply at once (a `str`: Graph's request id, SMTP's
last reply), a reply read later (`PendingReply`), or a reply saying the message
was accepted but may have gone twice (`ResentReply`).
"""

from collections.abc import Callable


class PendingReply:
    """A submission that has gone out and whose answer is read later (`result()`:
    the reply, or the IntegrationError it raises).

    An SMTP session's reply is read before the connection's next submission: the
    worker prepares the next message while the server takes this one. A reply that
    can be looked at without waiting (`pollable`: Graph's sendMail on libcurl)
    also says whether it is in (`done()`), and `wait(timeout)` lets the calling
    thread's requests progress meanwhile: several go side by side with no thread.
    """

    def __init__(
        self,
        read: Callable[[], str],
        *,
        done: Callable[[], bool] | None = None,
        wait: Callable[[float | None], None] | None = None,
    ):
        self._read = read
        self._done = done
        self._wait = wait

    @property
    def pollable(self) -> bool:
        return self._done is not None

    def result(self) -> str:
        return self._read()

    def done(self) -> bool:
        """Whether `result()` answers without waiting (False when it cannot
        tell)."""
        return self._done() if self._done is not None else False

    def wait(self, timeout: float | None) -> None:
        """Wait up to `timeout` seconds (None: without limit) for progress; a reply
        that is not `pollable` has none to wait for here (it is read by `result()`
        alone, once)."""
        if self._wait is not None:
            self._wait(timeout)

    def read_with(self, read: Callable[[], str]) -> "PendingReply":
        """The same reply, read through `read` (which calls this one's
        `result()`)."""
        return PendingReply(read, done=self._done, wait=self._wait)


class ResentReply(str):
    """A reply (Graph's request id) when the message was accepted but may have
    arrived twice: the transport sent it again by itself after its connection
    dropped without an answer. The delivery is recorded as sent again unconfirmed."""

    resent = True


def reply_of(answer: "str | PendingReply") -> str:
    """What a submission answered, once read."""
    return answer.result() if isinstance(answer, PendingReply) else answer
