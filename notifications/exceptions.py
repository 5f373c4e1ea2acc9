"""Errors of the notifications app that a person can act on (shown in the UI)."""


class NotificationError(Exception):
    """A request that cannot be carried out; `message` says what to do instead."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
