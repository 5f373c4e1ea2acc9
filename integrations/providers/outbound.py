"""
The outbound policy: where this server may connect when a person chose the address.

Every address an admin types (the SMTP host and port, the SMTP tool's explicit OAuth
endpoints) and the Microsoft hosts (authority, Graph) go through here, at send time,
at Test Connection time and, for IP literals, in the drawer's form:

- a name is resolved once (`socket.getaddrinfo`) and every address it resolves to is
  checked; the connection then goes to exactly those checked addresses (`connect`),
  so a second DNS answer cannot point it elsewhere (DNS rebinding). TLS still
  verifies the certificate for the name;
- link-local and cloud metadata addresses, unspecified, multicast and reserved
  addresses are never allowed;
- loopback, private and other non-global ranges (RFC 1918, fc00::/7, 100.64.0.0/10,
  ...) only when OUTBOUND_ALLOW_PRIVATE_NETWORKS is on, or for the host names and
  networks listed in OUTBOUND_ALLOWED_HOSTS;
- the hosts the operator configured (M365_AUTHORITY_HOST, M365_GRAPH_HOST,
  M365_SMTP_HOST, M365_IMAP_HOST) are trusted as they are: the sandbox on 127.0.0.1
  keeps working;
- SMTP ports are 25, 465, 587 and 2525, those in SMTP_ALLOWED_PORTS_EXTRA, and
  M365_SMTP_PORT; IMAP ports (the Email box) 993 and 143, those in
  IMAP_ALLOWED_PORTS_EXTRA, and M365_IMAP_PORT.

IPv4-mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses are
judged by the IPv4 address they carry.
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from integrations.exceptions import AddressRefused

#: The usual SMTP submission and relay ports.
SMTP_PORTS = frozenset({25, 465, 587, 2525})
#: IMAP over implicit TLS, and IMAP with STARTTLS.
IMAP_PORTS = frozenset({993, 143})

#: Cloud metadata and host services outside the link-local ranges (link-local
#: 169.254.0.0/16, AWS's 169.254.169.254 included, is refused as a whole).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "fd00:ec2::254",  # AWS instance metadata over IPv6
        "100.100.100.200",  # Alibaba Cloud metadata
        "168.63.129.16",  # Azure WireServer (a public address)
    )
)
#: "This network": 0.0.0.0/8 reaches the local host on some systems.
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

#: What an address is, for the policy.
NEVER = "never"
PRIVATE = "private"
PUBLIC = "public"


def normalise_host(host: str) -> str:
    """A host as compared and resolved: lowercased, without [] or a final dot."""
    host = (host or "").strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host.removesuffix(".")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    return None


def classify(address) -> str:
    """NEVER, PRIVATE or PUBLIC for an IP address (a string or an ip_address)."""
    address = ipaddress.ip_address(address)
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return NEVER  # a zone index only makes sense on a link
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return classify(embedded)
    if (
        address.is_unspecified
        or address.is_link_local
        or address.is_multicast
        or address in METADATA_ADDRESSES
        or (address.version == 4 and address in _THIS_NETWORK)
    ):
        return NEVER
    if address.is_loopback:
        return PRIVATE
    if address.is_reserved:
        return NEVER
    if (
        address.is_private
        or not address.is_global
        or (address.version == 6 and address.is_site_local)
    ):
        return PRIVATE
    return PUBLIC


def _url_host(url: str) -> str:
    try:
        return normalise_host(urlsplit(url).hostname or "")
    except ValueError:
        return ""


def trusted_hosts() -> frozenset[str]:
    """The hosts the operator configured in the environment (M365_*)."""
    hosts = {
        _url_host(settings.M365_AUTHORITY_HOST),
        _url_host(settings.M365_GRAPH_HOST),
        normalise_host(settings.M365_SMTP_HOST),
        normalise_host(settings.M365_IMAP_HOST),
    }
    return frozenset(h for h in hosts if h)


def _allow_list() -> tuple[frozenset[str], tuple]:
    """OUTBOUND_ALLOWED_HOSTS as (host names, networks)."""
    names, networks = set(), []
    for entry in settings.OUTBOUND_ALLOWED_HOSTS:
        entry = normalise_host(entry)
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry)
    return frozenset(names), tuple(networks)


def is_trusted(host: str) -> bool:
    return normalise_host(host) in trusted_hosts()


def refusal(host: str, address) -> str | None:
    """The error code for connecting to `address` (one of `host`'s), or None."""
    host = normalise_host(host)
    if host in trusted_hosts():
        return None
    address = ipaddress.ip_address(address)
    kind = classify(address)
    if kind == PUBLIC:
        return None
    if kind == NEVER:
        return "address_never_allowed"
    if settings.OUTBOUND_ALLOW_PRIVATE_NETWORKS:
        return None
    names, networks = _allow_list()
    if host in names:
        return None
    embedded = (
        _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    )
    for candidate in filter(None, (address, embedded)):
        if any(candidate.version == n.version and candidate in n for n in networks):
            return None
    return "address_private"


def literal_refusal(host: str) -> str | None:
    """For forms (no DNS): the error code for an IP literal or a localhost name."""
    host = normalise_host(host)
    if not host:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost" and not host.endswith(".localhost"):
            return None  # a name: checked when it is resolved
        address = ipaddress.ip_address("127.0.0.1")  # RFC 6761
    return refusal(host, address)


def allowed_smtp_ports() -> frozenset[int]:
    ports = set(SMTP_PORTS) | set(settings.SMTP_ALLOWED_PORTS_EXTRA)
    if settings.M365_SMTP_PORT:
        ports.add(int(settings.M365_SMTP_PORT))
    return frozenset(ports)


def smtp_port_allowed(port: int) -> bool:
    return int(port) in allowed_smtp_ports()


def allowed_imap_ports() -> frozenset[int]:
    ports = set(IMAP_PORTS) | set(settings.IMAP_ALLOWED_PORTS_EXTRA)
    if settings.M365_IMAP_PORT:
        ports.add(int(settings.M365_IMAP_PORT))
    return frozenset(ports)


def imap_port_allowed(port: int) -> bool:
    return int(port) in allowed_imap_ports()


def address_label(host: str, port: int | None) -> str:
    """host:port as people write it ([v6]:port)."""
    host = normalise_host(host)
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port else shown


@dataclass(frozen=True)
class Destination:
    """A host name resolved once, and the socket addresses it was checked at."""

    host: str
    port: int
    #: getaddrinfo's (family, type, proto, sockaddr) for each checked address.
    addresses: tuple
    trusted: bool

    @property
    def label(self) -> str:
        return address_label(self.host, self.port)

    @property
    def ips(self) -> tuple[str, ...]:
        return tuple(sockaddr[0] for _, _, _, sockaddr in self.addresses)


def resolve(host: str, port: int) -> Destination:
    """Resolve `host` once (raises `socket.gaierror`); nothing is checked yet."""
    name = normalise_host(host)
    if not name:
        raise socket.gaierror(socket.EAI_NONAME, "no host name")
    infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    addresses = tuple(
        dict.fromkeys(
            (family, kind, proto, sockaddr)
            for family, kind, proto, _, sockaddr in infos
            if family in (socket.AF_INET, socket.AF_INET6)
        )
    )
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, "no IPv4 or IPv6 address")
    return Destination(name, int(port), addresses, name in trusted_hosts())


def check(destination: Destination) -> Destination:
    """Raise `AddressRefused` unless every address `destination` resolved to is
    allowed (one refused address refuses the name: a resolver may answer either)."""
    for ip in destination.ips:
        code = refusal(destination.host, ip)
        if code:
            raise AddressRefused(
                f"{destination.label} resolves to {ip} ({classify(ip)})",
                code=code,
                address=destination.label,
            )
    return destination


def destination(host: str, port: int) -> Destination:
    """`host` resolved once and checked: connect with `connect(destination)`."""
    return check(resolve(host, port))


def check_if_resolvable(host: str, port: int) -> None:
    """Through a proxy, which makes the connection: `host` checked when it
    resolves here (raises `AddressRefused`), and let through when only the proxy
    can resolve it."""
    try:
        destination(host, port)
    except socket.gaierror:
        pass


def smtp_destination(host: str, port: int) -> Destination:
    """An SMTP server's address: the port checked, then the host resolved and
    checked. Raises `AddressRefused` or `socket.gaierror`."""
    if not smtp_port_allowed(port):
        raise AddressRefused(
            f"SMTP port {port} is not allowed",
            code="smtp_port_not_allowed",
            address=address_label(host, port),
        )
    return destination(host, port)


def imap_destination(host: str, port: int) -> Destination:
    """An IMAP server's address (the Email box): the port checked, then the host
    resolved and checked. Raises `AddressRefused` or `socket.gaierror`."""
    if not imap_port_allowed(port):
        raise AddressRefused(
            f"IMAP port {port} is not allowed",
            code="imap_port_not_allowed",
            address=address_label(host, port),
        )
    return destination(host, port)


def connect(
    destination: Destination,
    timeout: float | None,
    *,
    source_address=None,
    socket_options=None,
) -> socket.socket:
    """A TCP connection to one of the checked addresses, tried in resolver order
    (as `socket.create_connection` does, but with no second lookup)."""
    error = None
    for family, kind, proto, sockaddr in destination.addresses:
        sock = None
        try:
            sock = socket.socket(family, kind, proto)
            for option in socket_options or ():
                sock.setsockopt(*option)
            if timeout is not None:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            error = exc
            if sock is not None:
                sock.close()
    raise error or OSError(f"no address to connect to for {destination.label}")
