"""
The recipient policy: which addresses a notification tool may send to.

A security admin sets, per tool, its "Allowed recipient domains" (stored in the
tool's config as `allowed_recipient_domains`, a list):

- blank (nothing stored, the default): only the From address's own domain;
- `*` alone: any domain;
- otherwise a list of domains: `contoso.com` allows exactly that domain, and
  `*.contoso.com` any of its subdomains (`eu.contoso.com`, `a.b.contoso.com`) but not
  `contoso.com` itself, which is listed on its own when wanted.

Domains are compared in their IDNA (A-label) form, lowercased, so `Bücher.example`
and `xn--bcher-kva.example` are the same domain. An address whose domain cannot be
read as a domain name (an IP literal such as `user@[192.0.2.1]`) is allowed only
by `*`.

`parse_recipient_domains` validates what the admin types; `recipients_check` is the
policy, called wherever a project's recipients are saved or sent to.
"""

import re
from dataclasses import dataclass
from functools import lru_cache

import idna
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

#: The entry that allows every domain.
ANY_DOMAIN = "*"
#: The config key the drawer's "Allowed recipient domains" is stored under.
ALLOWED_DOMAINS_KEY = "allowed_recipient_domains"
MAX_DOMAINS = 50
_SEPARATORS = re.compile(r"[,;\s]+")


@lru_cache(maxsize=1024)
def _a_label(domain: str) -> str:
    """`domain` in its IDNA A-label form, lowercased, without a trailing dot.

    Raises `idna.IDNAError` (a `UnicodeError`) when it is not a domain name. Cached:
    a worker checks the same few domains for every delivery, and IDNA's checks cost
    more than the rest of the policy (an error is not cached; it is raised again)."""
    domain = domain.strip().removesuffix(".")
    if not domain:
        raise idna.IDNAError("empty")
    return idna.encode(domain, uts46=True, std3_rules=True).decode("ascii").lower()


def _parse_one(entry: str) -> str:
    """One entry of the admin's list, normalised; ValidationError when invalid."""
    if "@" in entry:
        raise ValidationError(
            _("%(entry)s: enter the domain only, without a name or @."),
            params={"entry": entry},
            code="address",
        )
    wildcard = entry.startswith("*.")
    name = entry[2:] if wildcard else entry
    try:
        domain = _a_label(name)
    except (UnicodeError, ValueError):
        domain = ""
    labels = domain.split(".")
    if not domain or len(labels) < 2 or labels[-1].isdigit():
        raise ValidationError(
            _(
                "%(entry)s is not a domain name. Enter domains such as contoso.com "
                "or *.contoso.com."
            ),
            params={"entry": entry},
            code="domain",
        )
    return f"*.{domain}" if wildcard else domain


def parse_recipient_domains(text: str) -> list[str]:
    """The admin's list (domains separated by commas, spaces or lines) as stored:
    IDNA-normalised, lowercased, without duplicates, in the order typed.

    Blank gives [] (the From address's domain only); `*` alone gives ["*"].
    Raises `ValidationError` naming the first entries that are not domains."""
    entries = [e for e in _SEPARATORS.split(text or "") if e]
    if not entries:
        return []
    if ANY_DOMAIN in entries:
        if len(entries) > 1:
            raise ValidationError(
                _("* allows every domain: enter it alone, or list the domains."),
                code="any_not_alone",
            )
        return [ANY_DOMAIN]
    if len(entries) > MAX_DOMAINS:
        raise ValidationError(
            _("Enter at most %(max)d domains."),
            params={"max": MAX_DOMAINS},
            code="too_many",
        )
    domains, errors = [], []
    for entry in entries:
        try:
            domains.append(_parse_one(entry))
        except ValidationError as error:
            errors.append(error)
    if errors:
        raise ValidationError(errors[:5])
    return list(dict.fromkeys(domains))


@dataclass(frozen=True)
class RecipientVerdict:
    """What `recipients_check` decided: the refused addresses (in the order given)
    and the domains the tool allows, as shown to people (["*"] for any)."""

    refused: tuple[str, ...]
    allowed: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.refused


def _domain_of(address: str) -> str:
    """The A-label domain of `address`, or "" when it has none that is a name."""
    _, at, domain = str(address).rpartition("@")
    if not at:
        return ""
    try:
        return _a_label(domain)
    except (UnicodeError, ValueError):
        return ""


def _allows(entry: str, domain: str) -> bool:
    if entry.startswith("*."):
        return domain.endswith(entry[1:])
    return domain == entry


def recipients_check(recipients, *, sender: str, allowed_domains) -> RecipientVerdict:
    """Which of `recipients` a tool sending from `sender` with `allowed_domains`
    (its stored "Allowed recipient domains") must not send to.

    Blank `allowed_domains` means the sender's own domain only (nothing, when the
    sender has no readable domain); `["*"]` allows everything. Fails closed: an
    address whose domain cannot be read is refused unless every domain is allowed.
    """
    allowed = [str(d).lower() for d in (allowed_domains or []) if d]
    if not allowed:
        own = _domain_of(sender or "")
        allowed = [own] if own else []
    if ANY_DOMAIN in allowed:
        return RecipientVerdict(refused=(), allowed=(ANY_DOMAIN,))
    refused = []
    for address in recipients:
        domain = _domain_of(address)
        if not domain or not any(_allows(entry, domain) for entry in allowed):
            refused.append(str(address))
    return RecipientVerdict(refused=tuple(refused), allowed=tuple(allowed))
