"""The accounts app's errors. Messages say what to fix and are shown to people."""


class PeopleError(Exception):
    """An anticipated refusal of a People service (a taken user name, deactivating
    yourself, removing the last security admin...). Nothing was written.

    `field` names the form field the message belongs to, when there is one.
    """

    code = "people_error"

    def __init__(self, message: str, *, code: str | None = None, field: str = ""):
        super().__init__(message)
        self.message = str(message)
        self.field = field
        if code:
            self.code = code

    def __str__(self):
        return self.message
