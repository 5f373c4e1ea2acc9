"""
HTTPS transport shared by every Microsoft 365 client: sessions, TLS trust, time limits,
and the translation of network failures into the error hierarchy.
"""

import errno
import hashlib
import json
import os
import socket
import ssl
import time
from contextlib import contextmanager
from contextvars import ContextVar
from email.utils import parsedate_to_datetime
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import certifi
import requests
import urllib3
from django.conf import settings
from requests.adapters import DEFAULT_CA_BUNDLE_PATH, HTTPAdapter
from requests.sessions import merge_setting
from requests.structures import CaseInsensitiveDict
from requests.utils import (
    get_encoding_from_headers,
    get_environ_proxies,
    select_proxy,
)
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.util.ssl_ import create_urllib3_context

from integrations.exceptions import ConnectionFailed, IntegrationError, TlsError
from integrations.providers import outbound
from integrations.providers.curl import CurlPool, CurlTransfer

# A monotonic time after which no more network calls may start (Test Connection's
# overall limit). Each request's timeout is clamped to what is left.
_deadline: ContextVar[float | None] = ContextVar("m365_deadline", default=None)


@contextmanager
def time_limit(seconds: float):
    """Bound every request made inside the block by one overall deadline."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining_time(default: float) -> float:
    """Seconds a network call may take now: `default`, clamped by the deadline."""
    deadline = _deadline.get()
    if deadline is None:
        return default
    left = deadline - time.monotonic()
    if left <= 0:
        raise ConnectionFailed("overall time limit reached", code="timeout")
    return min(default, left)


@lru_cache(maxsize=8)
def _combined_bundle(extra: str, mtime: float) -> str:
    """A CA bundle holding the default trust store plus `extra`, kept under var/."""
    base = Path(os.environ.get("REQUESTS_CA_BUNDLE") or certifi.where()).read_bytes()
    extra_pem = Path(extra).read_bytes()
    digest = hashlib.sha256(base + extra_pem).hexdigest()[:16]
    path = Path(settings.VAR_DIR) / f"ca-bundle-{digest}.pem"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base + b"\n" + extra_pem)
    return str(path)


def ca_bundle() -> str | bool:
    """What to pass as requests' `verify=`: True, or a bundle that adds M365_CA_BUNDLE.

    Passed on every request, because requests lets REQUESTS_CA_BUNDLE override a
    session's `verify` attribute but not an explicit per-request value.
    """
    extra = settings.M365_CA_BUNDLE
    if not extra:
        return True
    # The file is looked at again at most once a second (a worker asks per message).
    now = time.monotonic()
    checked = _bundles_checked.get(extra)
    if checked is not None and now - checked[0] < 1.0:
        return checked[1]
    try:
        bundle = _combined_bundle(extra, os.stat(extra).st_mtime)
    except OSError as exc:
        raise TlsError(f"M365_CA_BUNDLE {extra!r} cannot be read: {exc.strerror}")
    _bundles_checked[extra] = (now, bundle)
    return bundle


#: M365_CA_BUNDLE -> (when its file was last looked at, `ca_bundle()`'s answer).
_bundles_checked: dict[str, tuple[float, str]] = {}


def trust_context(bundle: str) -> ssl.SSLContext:
    """The TLS context of requests' connections that verify against `bundle` (a CA
    file or directory): loaded once per process and version of the file, and shared
    by every connection, where urllib3 would parse the bundle again for each new
    connection (some 30 ms for a system's bundle: a worker's first token request
    paid it, and so does each new connection of a Test Connection). Raises OSError
    (ssl.SSLError included) when the bundle cannot be read or parsed."""
    return _trust_context(bundle, *_file_version(bundle))


def _file_version(path: str) -> tuple[int, int]:
    """What tells one version of a file from the next (the caches key on it)."""
    found = os.stat(path)
    return found.st_mtime_ns, found.st_size


@lru_cache(maxsize=8)
def _trust_context(bundle: str, _mtime_ns: int, _size: int) -> ssl.SSLContext:
    # What urllib3 builds for each connection when given `ca_certs`/`ca_cert_dir`.
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    if os.path.isdir(bundle):
        context.load_verify_locations(capath=bundle)
    else:
        context.load_verify_locations(cafile=bundle)
    return context


def ssl_context(minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2):
    """An SSL context that verifies certificates, trusting M365_CA_BUNDLE as well
    (SMTP and IMAP). Built once per process, minimum version and version of the
    bundle's file, and shared by the sessions: building one parses the system's
    trust store (some 20 ms), which each SMTP session of a worker paid."""
    extra = settings.M365_CA_BUNDLE
    stamp = (0, 0)
    if extra:
        try:
            stamp = _file_version(extra)
        except OSError as exc:
            raise TlsError(f"M365_CA_BUNDLE cannot be loaded: {exc}")
    return _ssl_context(minimum_version, extra, *stamp)


@lru_cache(maxsize=8)
def _ssl_context(
    minimum_version: ssl.TLSVersion, extra: str, _mtime_ns: int, _size: int
) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.minimum_version = minimum_version
    if extra:
        try:
            context.load_verify_locations(cafile=extra)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"M365_CA_BUNDLE cannot be loaded: {exc}")
    return context


class _PinnedConnectionMixin:
    """A urllib3 connection that resolves its host once, checks every address with
    the outbound policy and connects to a checked address. Everything else (SNI,
    the certificate check, the Host header) still uses the host name, `self.host`."""

    def _new_conn(self):
        try:
            destination = outbound.destination(self.host, self.port)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        try:
            sock = outbound.connect(
                destination,
                self.timeout,
                source_address=self.source_address,
                socket_options=self.socket_options,
            )
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out."
            ) from exc
        except OSError as exc:
            raise NewConnectionError(
                self, f"Failed to establish a new connection: {exc}"
            ) from exc
        return sock


class _PinnedHTTPConnection(_PinnedConnectionMixin, HTTPConnection):
    pass


class _PinnedHTTPSConnection(_PinnedConnectionMixin, HTTPSConnection):
    pass


class _PinnedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


class OutboundPolicyAdapter(HTTPAdapter):
    """requests' adapter with the outbound policy on every new connection.

    Through a proxy (HTTPS_PROXY), the proxy makes the connection: the target's
    name is checked here when it resolves here, and the proxy's own address (the
    operator's) is not checked.
    """

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _PinnedHTTPConnectionPool,
            "https": _PinnedHTTPSConnectionPool,
        }

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        """requests' pool settings, with the TLS trust given as `trust_context`'s
        loaded context instead of a bundle path for urllib3 to parse per connection.
        A bundle that is missing or cannot be parsed is left to requests and urllib3,
        which report it as they always have."""
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        context = self.trust(host_params["scheme"], verify)
        if context is not None:
            pool_kwargs.pop("ca_certs", None)
            pool_kwargs.pop("ca_cert_dir", None)
            pool_kwargs["ssl_context"] = context
        return host_params, pool_kwargs

    def cert_verify(self, conn, url, verify, cert):
        super().cert_verify(conn, url, verify, cert)
        if self.trust(urlsplit(url).scheme.lower(), verify) is not None:
            # The pool's `ssl_context` holds this trust already.
            conn.ca_certs = conn.ca_cert_dir = None

    @staticmethod
    def trust(scheme: str, verify) -> ssl.SSLContext | None:
        """The loaded context for requests' `verify` value on `scheme`; None where
        there is none to give (plain http, no verification, an unreadable bundle)."""
        if scheme != "https" or not verify:
            return None
        try:
            return trust_context(DEFAULT_CA_BUNDLE_PATH if verify is True else verify)
        except OSError:
            return None

    def send(self, request, *args, **kwargs):
        if select_proxy(request.url, kwargs.get("proxies")):
            url = urlsplit(request.url)
            outbound.check_if_resolvable(
                url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
            )
        return super().send(request, *args, **kwargs)


class M365Session(requests.Session):
    """A keep-alive session whose requests always verify TLS and always time out,
    and whose connections go only where the outbound policy allows."""

    def __init__(self, *, timeout: float | None = None, pool_size: int = 10):
        super().__init__()
        self.default_timeout = timeout
        adapter = OutboundPolicyAdapter(pool_connections=4, pool_maxsize=pool_size)
        self.mount("https://", adapter)
        self.mount("http://", adapter)
        self.headers["User-Agent"] = "m365-appsec-mail/1.0"
        #: The environment's proxies per (scheme, host, no_proxy): see
        #: `merge_environment_settings`.
        self._environment_proxies: dict[tuple, dict] = {}
        #: libcurl handles for `post_json`, as many as the adapter's pool.
        self.curl = CurlPool(maxsize=pool_size)
        #: `_hot_settings`' answers.
        self._hot: dict[tuple, tuple] = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        """requests' merge of the environment into a request's settings, with the
        proxy variables read once per scheme and host for the session's life.

        requests walks the whole environment twice per request to find them, which
        on a keep-alive connection costs about as much as the request itself; the
        environment of a running process does not change. The rest is requests'
        behaviour: a request's own proxies win, REQUESTS_CA_BUNDLE (or
        CURL_CA_BUNDLE) stands in for `verify=True`, the session's values fill in.
        """
        if not self.trust_env:
            return super().merge_environment_settings(
                url, proxies, stream, verify, cert
            )
        proxies = dict(proxies or {})
        scheme, netloc = urlsplit(url)[:2]
        key = (scheme, netloc, proxies.get("no_proxy"))
        found = self._environment_proxies.get(key)
        if found is None:
            found = get_environ_proxies(url, no_proxy=key[2])
            self._environment_proxies[key] = found
        for name, value in found.items():
            proxies.setdefault(name, value)
        if verify is True or verify is None:
            verify = (
                os.environ.get("REQUESTS_CA_BUNDLE")
                or os.environ.get("CURL_CA_BUNDLE")
                or verify
            )
        return {
            "proxies": merge_setting(proxies, self.proxies),
            "stream": merge_setting(stream, self.stream),
            "verify": merge_setting(verify, self.verify),
            "cert": merge_setting(cert, self.cert),
        }

    def load_trust(self, url: str) -> None:
        """Load the TLS trust this session's requests to `url` verify against now,
        not at their first connection (a worker's warm-up). A bundle that cannot be
        read is left for that first request to report."""
        try:
            bundle = ca_bundle()
        except TlsError:
            return
        verify = self.merge_environment_settings(url, {}, None, bundle, None)["verify"]
        OutboundPolicyAdapter.trust(urlsplit(url).scheme.lower(), verify)

    def request(self, method, url, **kwargs):
        default = self.default_timeout or settings.M365_HTTP_TIMEOUT
        kwargs["timeout"] = remaining_time(kwargs.get("timeout") or default)
        kwargs["verify"] = ca_bundle()
        return super().request(method, url, **kwargs)

    def post_json(self, url: str, payload, *, headers: dict) -> "PostedResponse":
        """`post(url, json=payload, headers=headers)` for the call a worker makes
        once per message (Graph's sendMail), at a fraction of the CPU: the answer
        of `post_json_later`."""
        return self.post_json_later(url, payload, headers=headers).result()

    def post_json_later(self, url: str, payload, *, headers: dict) -> "PendingResponse":
        """Start `post(url, json=payload, headers=headers)`; its answer is read
        later (`PendingResponse.result()`), and meanwhile the calling thread goes on.

        The same TLS trust, outbound policy, time limit and proxies as requests'
        `post`; but the request goes through libcurl (`providers.curl`), not
        requests' and urllib3's per-request steps, which on a fast network cost more
        than the request itself (bench/delivery.py). Failures are raised as the
        error hierarchy, by this call or by `result()`. The answer's `resent` says
        that libcurl sent the request twice (its reused connection dropped without
        an answer).
        """
        verify, proxy = self._hot_settings(url)
        timeout = remaining_time(self.default_timeout or settings.M365_HTTP_TIMEOUT)
        transfer = self.curl.start(
            url,
            json.dumps(payload, allow_nan=False, separators=(",", ":")).encode(),
            headers={**self._hot_headers, **headers},
            timeout=timeout,
            verify=verify,
            proxy=proxy,
        )
        return PendingResponse(transfer, url)

    def _hot_settings(self, url: str) -> tuple[str | bool, str]:
        """The TLS trust (`verify`) and proxy a request to `url` gets, as requests
        would merge them from the environment; looked up once per host (and trust
        setting) for the session's life, as the proxies are."""
        bundle = ca_bundle()
        key = (*url.split("/", 3)[:3], bundle)
        found = self._hot.get(key)
        if found is None:
            environment = self.merge_environment_settings(url, {}, None, bundle, None)
            found = (
                environment["verify"],
                select_proxy(url, environment["proxies"]) or "",
            )
            self._hot[key] = found
        return found

    @property
    def _hot_headers(self) -> dict:
        """The session's headers, JSON's content type, and no Accept-Encoding:
        libcurl asks for (and decodes) the encodings it has."""
        return {
            **{
                name: value
                for name, value in self.headers.items()
                if name.lower() != "accept-encoding"
            },
            "Content-Type": "application/json",
        }

    def close(self):
        self.curl.close()
        super().close()


class PendingResponse:
    """`M365Session.post_json_later`'s request under way: `done()` without
    waiting, `wait(timeout)` for progress of the thread's transfers, `result()` the
    `PostedResponse` (or the error raised)."""

    def __init__(self, transfer: CurlTransfer, url: str):
        self.transfer = transfer
        self.url = url

    def done(self) -> bool:
        return self.transfer.done()

    def wait(self, timeout: float | None) -> None:
        self.transfer.wait(timeout)

    def result(self) -> "PostedResponse":
        answer = self.transfer.result()
        response = PostedResponse()
        response.status_code = answer.status
        response.reason = answer.reason
        response.headers = CaseInsensitiveDict(answer.headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.url = self.url
        response.resent = answer.resent
        response._content = answer.content
        return response


class PostedResponse(requests.Response):
    """`M365Session.post_json`'s answer: requests' Response, and whether the
    transport sent the request twice (`resent`)."""

    resent = False


def _root_cause(exc: BaseException) -> BaseException:
    seen = set()
    while True:
        nxt = exc.__cause__ or exc.__context__
        if nxt is None or id(nxt) in seen:
            return exc
        seen.add(id(exc))
        # urllib3 keeps the interesting error in .reason
        reason = getattr(nxt, "reason", None)
        exc = reason if isinstance(reason, BaseException) else nxt


def _chain(exc: BaseException):
    """`exc` and every exception it wraps: causes, contexts, urllib3's `.reason`, and
    exceptions passed as arguments (urllib3's SSLError wraps ssl's that way)."""
    seen, todo = set(), [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nxt in (
            current.__cause__,
            current.__context__,
            getattr(current, "reason", None),
            *getattr(current, "args", ()),
        ):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


#: SSL errors that mean "the connection was closed", not "TLS failed": an EOF in
#: violation of the protocol (a reset or a close without close_notify) and a closed
#: TLS session.
TLS_CONNECTION_DROPS = (ssl.SSLEOFError, ssl.SSLZeroReturnError)


def error_from_exception(exc: BaseException) -> IntegrationError:
    """Translate a requests/socket/ssl exception into the error hierarchy."""
    if isinstance(exc, IntegrationError):
        return exc
    text = f"{type(exc).__name__}: {exc}"
    cause = _root_cause(exc)
    if isinstance(
        exc, (requests.exceptions.SSLError, ssl.SSLError, urllib3.exceptions.SSLError)
    ) or isinstance(cause, ssl.SSLError):
        if any(isinstance(e, TLS_CONNECTION_DROPS) for e in _chain(exc)):
            # The peer (or a middlebox) dropped the connection mid-stream; nothing is
            # wrong with TLS itself, so it is retried like any dropped connection.
            return ConnectionFailed(text)
        return TlsError(text)
    if isinstance(
        exc,
        (requests.exceptions.Timeout, ReadTimeoutError, socket.timeout, TimeoutError),
    ):
        return ConnectionFailed(text, code="timeout")
    if isinstance(cause, socket.gaierror) or "NameResolutionError" in text:
        return ConnectionFailed(text, code="dns_failure")
    if (
        isinstance(cause, ConnectionRefusedError)
        or getattr(cause, "errno", None) == errno.ECONNREFUSED
        or "Connection refused" in text
    ):
        return ConnectionFailed(text, code="connection_refused")
    if isinstance(cause, (socket.timeout, TimeoutError)):
        return ConnectionFailed(text, code="timeout")
    return ConnectionFailed(text)


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header: seconds (fractional allowed) or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
