"""The projects app's one error hierarchy. Messages say what to fix."""


class ProjectError(Exception):
    """An anticipated failure in a projects service; `message` is shown to people."""

    code = "project_error"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = str(message)
        if code:
            self.code = code

    def __str__(self):
        return self.message


class SarifError(ProjectError):
    """The uploaded SARIF cannot be imported. Nothing was written."""

    code = "invalid_sarif"


class SarifTooLarge(SarifError):
    """The SARIF file is over SARIF_MAX_BYTES (HTTP 413)."""

    code = "sarif_too_large"


class TokenError(ProjectError):
    """The request's API token is missing, unknown or revoked (HTTP 401)."""

    code = "invalid_token"


class StatusTransitionError(ProjectError):
    """A finding cannot move to the requested status."""

    code = "invalid_status"


class MembershipError(ProjectError):
    code = "invalid_membership"
