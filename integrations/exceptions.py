"""
The one error hierarchy for notification tools.

Every anticipated failure of a provider (msal error dicts, HTTP statuses, Graph error
codes, SMTP replies, socket and TLS errors) is translated inside `providers/` into one
of these classes. Code above `providers/` catches `IntegrationError` and nothing else.

Each error carries:
- `code`: a stable identifier, mapped once to words a person can act on in
  `integrations.troubleshooting`;
- `retryable`: whether sending again later may succeed;
- `retry_after`: seconds the server asked us to wait, when it said so;
- `detail`: the provider's raw text, for logs only (never shown, never contains
  secrets: providers pass error descriptions, not requests); made log-safe here,
  since part of it may come from outside (an OAuth callback's error_description):
  control characters, CR and LF included, become spaces, and it is bounded;
- `request_id`: the provider's request or trace id, or an SMTP reply's codes (never
  its text: a peer that is not Microsoft's could write anything there), for support;
- `address`: the host:port the failure is about, when the words name it.
"""

from integrations.text import single_line
from integrations.troubleshooting import troubleshooting_for

#: The longest `detail` kept; providers' descriptions are much shorter.
MAX_DETAIL = 1000


class IntegrationError(Exception):
    code = "unexpected"
    retryable = False
    #: Marks the integration "Needs attention" when it happens during delivery.
    needs_attention = False

    def __init__(
        self,
        detail: str = "",
        *,
        code: str | None = None,
        retry_after: float | None = None,
        request_id: str = "",
        status: int | None = None,
        address: str = "",
    ):
        detail = single_line(detail, MAX_DETAIL)
        super().__init__(detail or self.code)
        if code:
            self.code = code
        self.detail = detail
        self.retry_after = retry_after
        self.request_id = single_line(request_id, 200)
        self.status = status
        self.address = single_line(address, 300)

    def __str__(self):
        return f"{self.code}: {self.detail}" if self.detail else self.code

    @property
    def troubleshooting(self):
        return troubleshooting_for(self.code, address=self.address)


class ConfigurationError(IntegrationError):
    """The saved or entered settings cannot work (caught before any network call)."""

    code = "configuration"
    needs_attention = True


class AddressRefused(ConfigurationError):
    """The outbound policy refused an address (`providers.outbound`): a link-local,
    metadata or other never-allowed address, a private one the settings do not
    allow, or an SMTP port outside the allowed list. Caught before connecting."""

    code = "address_refused"


class ConnectionFailed(IntegrationError):
    """The service could not be reached: DNS, refused, reset, timeout, TLS."""

    code = "connection_failed"
    retryable = True


class TlsError(ConnectionFailed):
    """The TLS handshake or the server certificate check failed.

    Not retryable: a certificate problem does not fix itself in a minute.
    """

    code = "tls_error"
    retryable = False
    needs_attention = True


class AuthenticationFailed(IntegrationError):
    """The identity platform or the mail server refused our credentials."""

    code = "authentication_failed"
    needs_attention = True


class AuthorizationRequired(AuthenticationFailed):
    """A delegated grant is gone (expired, revoked): a person must sign in again."""

    code = "reauthorization_required"


class AuthorizationRefused(AuthenticationFailed):
    """A delegated sign-in cannot be accepted: an error in the OAuth callback, no
    pending flow for its state (wrong, reused, expired, another session), or a grant
    for another mailbox than the configured one (`signed_in`, `expected`)."""

    code = "authorization_failed"
    needs_attention = False

    def __init__(self, detail="", *, signed_in: str = "", expected: str = "", **kwargs):
        super().__init__(detail, **kwargs)
        self.signed_in = signed_in
        self.expected = expected


class AuthorizationSettingsChanged(ConfigurationError):
    """A plain Save (which keeps a delegated grant) changes settings the grant was
    obtained for (`fields`: their names); only Save & Authorize may save them."""

    code = "authorization_settings_changed"
    needs_attention = False

    def __init__(self, detail="", *, fields=(), **kwargs):
        super().__init__(detail, **kwargs)
        self.fields = tuple(fields)


class PermissionMissing(IntegrationError):
    """Authenticated, but not allowed: permission, consent or mailbox access."""

    code = "permission_missing"
    needs_attention = True


class SenderRejected(IntegrationError):
    """The sender address does not exist, has no mailbox, or may not be sent as."""

    code = "sender_rejected"
    needs_attention = True


class RecipientRejected(IntegrationError):
    """The message's recipients were refused."""

    code = "recipient_rejected"


class Throttled(IntegrationError):
    """Too many requests: wait (`retry_after` when the server said) and retry."""

    code = "throttled"
    retryable = True


class ServiceUnavailable(IntegrationError):
    """The service failed on its side (5xx, 4xx SMTP transient replies)."""

    code = "service_unavailable"
    retryable = True


class UnexpectedResponse(IntegrationError):
    """An answer we do not understand."""

    code = "unexpected"
