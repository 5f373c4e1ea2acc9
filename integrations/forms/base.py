"""
Drawer forms. Each provider declares its form; the shared base validates what every
tool needs: no CR or LF anywhere, bounded lengths, and write-only secret fields (never
rendered back, blank keeps the saved value).
"""

import ipaddress
import re
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _

from integrations.providers import outbound
from integrations.providers.limits import MAX_MESSAGES_PER_MINUTE, SendingLimits
from integrations.providers.recipients import (
    ALLOWED_DOMAINS_KEY,
    parse_recipient_domains,
    recipients_check,
)
from integrations.text import CONTROL_CHARACTER

_DOMAIN = re.compile(
    r"^(?=.{4,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{1,62}$",
    re.IGNORECASE,
)
_LIST_SEPARATORS = re.compile(r"[,;\s]+")
MAX_RECIPIENTS = 50
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)", re.IGNORECASE)
#: Printable ASCII without spaces, quotes or markup: client IDs of non-Microsoft
#: servers, their user names (SendGrid's "apikey", DOMAIN\user).
_TOKEN = re.compile(r"[\x21-\x7e]+")
_MARKUP = frozenset("<>\"'`")
#: RFC 6749 section 3.3 (scope-token = 1*( %x21 / %x23-5B / %x5D-7E ): no spaces,
#: quotes or backslashes), without markup either, and bounded.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,200}")
MAX_SCOPES = 20


def reject_line_breaks(value):
    if isinstance(value, str) and ("\r" in value or "\n" in value):
        raise ValidationError(_("Line breaks are not allowed here."), code="line_break")


def validate_guid(value):
    try:
        uuid.UUID(value)
    except ValueError:
        raise ValidationError(
            _("Enter a GUID such as 00000000-0000-0000-0000-000000000000."),
            code="guid",
        )
    if not re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", value):
        raise ValidationError(
            _("Enter the GUID in its usual 8-4-4-4-12 form."), code="guid"
        )


def validate_host(value):
    """A host name (smtp.office365.com, mailrelay) or an IP literal, nothing else:
    no scheme, port, path, spaces or markup."""
    message = _(
        "Enter a host name such as smtp.office365.com, or an IP address, without "
        "a scheme (https://), port or spaces."
    )
    if not value or len(value) > 253:
        raise ValidationError(message, code="host")
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    labels = value.removesuffix(".").split(".")
    if (
        not all(_HOST_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise ValidationError(message, code="host")


class HostField(forms.CharField):
    """A host name or IP literal, lowercased; [::1] is kept as ::1."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 253)
        super().__init__(**kwargs)

    def to_python(self, value):
        value = super().to_python(value).lower()
        if value.startswith("[") and value.endswith("]"):
            value = value[1:-1]
        return value

    def validate(self, value):
        super().validate(value)
        if value:
            validate_host(value)


def validate_token(value):
    """Printable ASCII without spaces, quotes or markup (an OAuth client ID or a
    user name of any server)."""
    if value and (not _TOKEN.fullmatch(value) or _MARKUP & set(value)):
        raise ValidationError(
            _("Use printable characters without spaces, quotes, < or >."),
            code="token",
        )


def validate_display_name(value):
    """A name shown in the From header: no control characters, no <, > or \"."""
    if CONTROL_CHARACTER.search(value) or any(c in value for c in '<>"'):
        raise ValidationError(
            _('Use letters, digits and punctuation other than <, > and ".'),
            code="display_name",
        )


class ScopeField(forms.CharField):
    """OAuth scopes: tokens or URLs separated by spaces, normalised to one space."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 500)
        super().__init__(**kwargs)

    def to_python(self, value):
        return " ".join(s for s in super().to_python(value).split(" ") if s)

    def validate(self, value):
        super().validate(value)
        if not value:
            return
        scopes = value.split(" ")
        if len(scopes) > MAX_SCOPES or not all(
            _SCOPE_TOKEN.fullmatch(s) and not _MARKUP & set(s) for s in scopes
        ):
            raise ValidationError(
                _(
                    "Enter up to %(max)d scopes separated by spaces, such as "
                    "https://outlook.office.com/SMTP.Send."
                ),
                params={"max": MAX_SCOPES},
                code="scope",
            )


def validate_endpoint_url(value):
    """An OAuth endpoint the client secret is sent to.

    https:// with a proper host (a DNS name or an IP address; internal and loopback
    addresses as the outbound policy allows: OUTBOUND_ALLOW_PRIVATE_NETWORKS or
    OUTBOUND_ALLOWED_HOSTS), no user name or password, no #fragment. http:// only
    when the setting OAUTH_ALLOW_INSECURE_ENDPOINTS is on (development).
    """
    schemes = ["https"]
    if settings.OAUTH_ALLOW_INSECURE_ENDPOINTS:
        schemes.append("http")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ValidationError(_("Enter a valid URL."), code="invalid")
    if parts.scheme.lower() not in schemes:
        raise ValidationError(
            _(
                "Enter an https:// URL: the Client Secret and the tokens are sent "
                "to it."
            ),
            code="scheme",
        )
    if "@" in parts.netloc:
        raise ValidationError(
            _("Remove the user name and password from the URL."), code="credentials"
        )
    if "#" in value:
        raise ValidationError(_("Remove the #fragment from the URL."), code="fragment")
    if _MARKUP & set(value):
        raise ValidationError(_("Enter a valid URL."), code="invalid")
    URLValidator(schemes=schemes)(value)
    validate_outbound_host(parts.hostname or "")


def validate_outbound_host(host):
    """The outbound policy (`providers.outbound`) for what a form can tell without
    DNS: an IP literal or localhost that may never, or not here, be connected to.
    A name is checked when it is resolved, at Test Connection and send time."""
    code = outbound.literal_refusal(host)
    if code == "address_never_allowed":
        raise ValidationError(
            _(
                "%(host)s is a link-local, cloud metadata, unspecified, multicast "
                "or reserved address, which is never allowed."
            ),
            params={"host": host},
            code="address_never_allowed",
        )
    if code == "address_private":
        raise ValidationError(
            _(
                "%(host)s is a private address; set OUTBOUND_ALLOW_PRIVATE_NETWORKS "
                "or add it to OUTBOUND_ALLOWED_HOSTS on this server."
            ),
            params={"host": host},
            code="address_private",
        )


def validate_smtp_port(port):
    """SMTP ports: 25, 465, 587, 2525, SMTP_ALLOWED_PORTS_EXTRA and M365_SMTP_PORT."""
    if port and not outbound.smtp_port_allowed(port):
        raise ValidationError(
            _(
                "Port %(port)s is not allowed for SMTP: use 587 (STARTTLS), 465 "
                "(SSL/TLS), 25 or 2525, or add it to SMTP_ALLOWED_PORTS_EXTRA on "
                "this server."
            ),
            params={"port": port},
            code="smtp_port_not_allowed",
        )


class EndpointUrlField(forms.CharField):
    """An OAuth endpoint URL (see `validate_endpoint_url`)."""

    widget = forms.URLInput

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 500)
        super().__init__(**kwargs)

    def validate(self, value):
        super().validate(value)
        if value:
            validate_endpoint_url(value)


class GuidField(forms.CharField):
    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 36)
        super().__init__(**kwargs)

    def validate(self, value):
        super().validate(value)
        if value:
            validate_guid(value)


class TenantField(forms.CharField):
    """A tenant GUID or one of its domains (contoso.onmicrosoft.com)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 253)
        super().__init__(**kwargs)

    def to_python(self, value):
        return super().to_python(value).lower()

    def validate(self, value):
        super().validate(value)
        if not value:
            return
        if re.fullmatch(r"[0-9a-f-]{36}", value):
            validate_guid(value)
        elif not _DOMAIN.match(value):
            raise ValidationError(
                _(
                    "Enter the Directory (tenant) ID, a GUID, or a domain of the "
                    "tenant such as contoso.onmicrosoft.com."
                ),
                code="tenant",
            )


class EmailAddressField(forms.CharField):
    """One address, nothing else (no display name, no list)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 254)
        super().__init__(**kwargs)

    def validate(self, value):
        super().validate(value)
        if value:
            if _LIST_SEPARATORS.search(value):
                raise ValidationError(_("Enter a single email address."), code="single")
            validate_email(value)


class EmailListField(forms.CharField):
    """One or more addresses separated by commas or semicolons."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 2000)
        kwargs.setdefault("help_text", _("One or more addresses, separated by commas."))
        super().__init__(**kwargs)

    def prepare_value(self, value):
        # Saved settings hold a list; the text box shows it comma-separated.
        if isinstance(value, (list, tuple)):
            return ", ".join(value)
        return value

    def clean(self, value):
        value = super().clean(value)
        if not value:
            return []
        addresses = [a for a in _LIST_SEPARATORS.split(value) if a]
        if len(addresses) > MAX_RECIPIENTS:
            raise ValidationError(
                _("Enter at most %(max)d addresses."), params={"max": MAX_RECIPIENTS}
            )
        bad = []
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                bad.append(address)
        if bad:
            raise ValidationError(
                _("These are not valid email addresses: %(bad)s"),
                params={"bad": ", ".join(bad[:5])},
                code="invalid",
            )
        return list(dict.fromkeys(a.lower() for a in addresses))


class MessagesPerMinuteField(forms.IntegerField):
    """A tool's own sending budget: messages per minute from its sender mailbox, all
    workers together. Blank means Microsoft's limit (`limits`); at most `ceiling`,
    checked by `check_messages_per_minute` once the form knows which service the
    tool talks to."""

    def __init__(self, *, limits: SendingLimits, **kwargs):
        kwargs.setdefault("label", _("Messages per minute"))
        kwargs.setdefault("required", False)
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_MESSAGES_PER_MINUTE)
        kwargs.setdefault(
            "help_text",
            format_lazy(
                _(
                    "Optional. How many messages this tool may send per minute from "
                    "the From mailbox, all workers together. Leave blank for "
                    "Microsoft's limit ({limit} a minute); set it lower when other "
                    "programs send from the same mailbox."
                ),
                limit=f"{limits.per_minute:,}",
            ),
        )
        super().__init__(**kwargs)


def check_messages_per_minute(form, value, limits: SendingLimits, service: str):
    """Refuse a "Messages per minute" above what Microsoft accepts from `service`."""
    if value and value > limits.per_minute:
        form.add_error(
            "messages_per_minute",
            ValidationError(
                _(
                    "%(service)s accepts at most %(limit)s messages a minute from "
                    "one mailbox. Enter %(limit)s or less, or leave blank."
                ),
                params={"service": service, "limit": f"{limits.per_minute:,}"},
                code="over_limit",
            ),
        )


class RecipientDomainsField(forms.CharField):
    """The tool's "Allowed recipient domains" (`providers.recipients`): domains
    separated by commas, spaces or lines, cleaned to the stored list; blank is []
    (the From address's domain only)."""

    #: One domain a line is welcome: ProviderForm lets this field have line breaks.
    multiline = True

    def __init__(self, **kwargs):
        kwargs.setdefault("label", _("Allowed recipient domains"))
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", 5000)
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 3}))
        kwargs.setdefault(
            "help_text",
            _(
                "Where project owners may send this tool's mail. Leave blank for "
                "the From address's domain only; enter * to allow any domain; or "
                "list domains separated by commas or lines: contoso.com allows that "
                "domain, *.contoso.com its subdomains (not contoso.com itself)."
            ),
        )
        super().__init__(**kwargs)

    def prepare_value(self, value):
        # Saved settings hold a list; the text box shows one domain a line.
        if isinstance(value, (list, tuple)):
            return "\n".join(value)
        return value

    def clean(self, value):
        return parse_recipient_domains(super().clean(value))


def check_recipient_domains(form, cleaned) -> None:
    """Refuse a To address outside the tool's allowed recipient domains: such
    deliveries would be refused when sent."""
    if form.has_error("recipients") or form.has_error(ALLOWED_DOMAINS_KEY):
        return
    verdict = recipients_check(
        cleaned.get("recipients") or [],
        sender=cleaned.get("sender") or "",
        allowed_domains=cleaned.get(ALLOWED_DOMAINS_KEY),
    )
    if not verdict.ok:
        form.add_error(
            "recipients",
            ValidationError(
                _(
                    "%(refused)s: outside the allowed recipient domains "
                    "(%(allowed)s). Allow the domain under Advanced, or remove "
                    "the address."
                ),
                params={
                    "refused": ", ".join(verdict.refused[:5]),
                    "allowed": ", ".join(verdict.allowed) or _("none"),
                },
                code="recipient_refused",
            ),
        )


class SecretInput(forms.PasswordInput):
    """A password box that never renders a value back, nor lets the browser fill
    in a saved password. `attrs` adds to those."""

    def __init__(self, attrs=None):
        super().__init__(
            attrs={"autocomplete": "new-password", **(attrs or {})}, render_value=False
        )


class SecretField(forms.CharField):
    """Write-only: never rendered back. Blank means "keep the saved value"."""

    widget = SecretInput

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 1024)
        kwargs.setdefault("required", False)
        kwargs.setdefault("strip", True)
        super().__init__(**kwargs)


def show_when(rule: str) -> dict:
    """Widget attrs that show a field only for some choices, in the drawer script's
    rule syntax (static/js/drawer.js): `name=value|value` (`!=`: any other value),
    rules joined by `&` (all hold), alternatives joined by `;` (one holds)."""
    return {"data_show_when": rule}


@dataclass(frozen=True)
class Section:
    """A titled group of drawer fields (a <fieldset>), shown only while `show_when`
    holds when it has one (same syntax as `show_when()`)."""

    title: str
    fields: tuple[str, ...]
    show_when: str = ""


@dataclass
class BoundSection:
    """A section of a bound form, as the drawer template renders it."""

    title: str
    fields: list
    show_when: str = ""
    #: The folded "Advanced" group (a <details>), open when `open`.
    advanced: bool = False
    open: bool = False


class ProviderForm(forms.Form):
    """Base of every drawer form.

    `saved_secrets` names the secret fields that already have a stored value; a
    blank secret field is then valid and keeps it.
    """

    #: Secret fields that must have a value, entered now or saved before.
    required_secrets: tuple[str, ...] = ()
    #: Fields most people leave alone, shown folded under "Advanced".
    advanced_fields: tuple[str, ...] = ()
    #: The drawer's sections, in order (as the vendors group their settings);
    #: fields in none of them (nor in `advanced_fields`) follow, untitled.
    sections: tuple[Section, ...] = ()
    #: Fields required only for some choices: {name: rule} (`show_when()`'s syntax).
    #: The drawer marks them required (an asterisk, aria-required) while the rule
    #: holds; a secret with a saved value never is. This is what the form's `clean`
    #: checks, said in advance; it does not check anything itself.
    required_when: dict[str, str] = {}

    def __init__(self, *args, saved_secrets=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.saved_secrets = set(saved_secrets)
        for name, rule in self.required_when.items():
            if name in self.fields and name not in self.saved_secrets:
                self.fields[name].required_when = rule
        for name, field in self.fields.items():
            # PEM text (certificates, keys) is the one kind of value with lines.
            if not getattr(field, "multiline", False):
                field.validators.append(reject_line_breaks)
            if isinstance(field, SecretField) and name in self.saved_secrets:
                field.widget.attrs["placeholder"] = _(
                    "Saved (hidden). Leave blank to keep it."
                )
                field.saved = True

    def drawer_sections(self) -> list[BoundSection]:
        """The drawer's groups of bound fields: `sections`, then the fields in no
        section (untitled), then "Advanced"."""
        placed = {name for section in self.sections for name in section.fields}
        placed.update(self.advanced_fields)
        groups = [
            BoundSection(
                title=section.title,
                fields=[self[name] for name in section.fields if name in self.fields],
                show_when=section.show_when,
            )
            for section in self.sections
        ]
        rest = [self[name] for name in self.fields if name not in placed]
        if rest:
            groups.append(BoundSection(title="", fields=rest))
        advanced = [self[name] for name in self.advanced_fields if name in self.fields]
        if advanced:
            groups.append(
                BoundSection(
                    title=_("Advanced"),
                    fields=advanced,
                    advanced=True,
                    open=self.advanced_open,
                )
            )
        return [group for group in groups if group.fields]

    @property
    def advanced_open(self) -> bool:
        """Show the advanced fields unfolded: one has a value or an error."""
        return any(
            self[name].errors or self[name].value() not in (None, "")
            for name in self.advanced_fields
        )

    def clean(self):
        cleaned = super().clean()
        for name in self.required_secrets_now(cleaned):
            if not cleaned.get(name) and name not in self.saved_secrets:
                self.add_error(name, _("This field is required."))
        return cleaned

    def required_secrets_now(self, cleaned) -> tuple[str, ...]:
        """Secret fields required given the other values (hook for subclasses)."""
        return self.required_secrets
