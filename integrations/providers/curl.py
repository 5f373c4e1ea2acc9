"""
The worker's sendMail transport: libcurl (pycurl), for the one request a worker
makes per message.

requests and urllib3 spend about 0.35 ms of Python per keep-alive POST (building
the request, parsing the answer's headers); libcurl does the same in C in about a
fifth of that (bench/delivery.py). Everything else (the token endpoint through
msal, Test Connection's reads, the Sent Items lookup) stays on requests
(`M365Session`), and this transport keeps requests' rules:

- TLS: certificates and host names are always checked, against the same bundle
  requests would use (`M365_CA_BUNDLE` added, `REQUESTS_CA_BUNDLE` honoured), and
  against nothing else (no system store on top);
- the outbound policy: the host name is resolved here and every address checked
  (`outbound.destination`), and libcurl connects only to those (`CURLOPT_RESOLVE`,
  renewed every `PIN_SECONDS`); it never resolves a name itself;
- the proxy requests would use (the caller picks it, NO_PROXY honoured); through
  it the target's name is checked where it resolves here
  (`outbound.check_if_resolvable`, as for requests), and the proxy connects;
- no redirects, HTTP/1.1 keep-alive;
- failures raised as the error hierarchy (`ConnectionFailed`, `TlsError`...).

A request is started (`CurlPool.start`) and its answer read later
(`CurlTransfer.result`): the transfers a thread starts share that thread's libcurl
multi handle, its keep-alive connections and its DNS pins, and go side by side
while the thread does other work, with no sending thread (the delivery run keeps
up to the mailbox's 4 in flight).

One thing libcurl does that requests does not: when a reused keep-alive
connection turns out closed and not one byte of an answer came, it sends the
request again, once, on a new connection. A POST is not safe to repeat, so such a
transfer is reported (`CurlResponse.resent`) and the message it carried is recorded
as possibly sent twice, the way a message sent again after a lost answer is.
https://curl.se/libcurl/c/libcurl-errors.html
"""

import errno
import io
import os
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import certifi
import pycurl

from integrations.exceptions import ConnectionFailed, IntegrationError, TlsError
from integrations.providers import outbound

#: How long a handle keeps connecting to the addresses a name was checked at
#: before resolving and checking it again.
PIN_SECONDS = 60.0
#: `CurlTransfer.done()` polls the network again only after this long: checking
#: the transfers in flight one after the other is one poll, and an answer that
#: came in meanwhile is seen at the next look (`wait` and `result` always poll).
POLL_GAP_SECONDS = 0.0001

# libcurl's error numbers (https://curl.se/libcurl/c/libcurl-errors.html).
_TIMEOUTS = {pycurl.E_OPERATION_TIMEDOUT}
_DNS = {pycurl.E_COULDNT_RESOLVE_HOST}
_TLS = {
    pycurl.E_SSL_CONNECT_ERROR,
    pycurl.E_SSL_ENGINE_NOTFOUND,
    pycurl.E_SSL_ENGINE_SETFAILED,
    pycurl.E_SSL_CERTPROBLEM,
    pycurl.E_SSL_CIPHER,
    pycurl.E_PEER_FAILED_VERIFICATION,
    pycurl.E_SSL_CACERT_BADFILE,
    pycurl.E_SSL_CRL_BADFILE,
    pycurl.E_SSL_ISSUER_ERROR,
    getattr(pycurl, "E_SSL_CACERT", 60),
}
#: Words in a TLS error that mean the connection was dropped, not that TLS failed.
_DROPPED = ("reset by peer", "unexpected eof", "ssl_error_syscall", "broken pipe")


@dataclass
class CurlResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    content: bytes
    #: libcurl sent the request a second time after its reused connection dropped
    #: without an answer: the first may have arrived too.
    resent: bool = False


def error_from_curl(error: pycurl.error, os_errno: int = 0) -> IntegrationError:
    """A pycurl error as the error hierarchy (`os_errno`: the transfer's last
    system error, CURLINFO_OS_ERRNO)."""
    number, message = (tuple(error.args) + (0, ""))[:2]
    text = f"libcurl error {number}: {message}"
    lowered = str(message).lower()
    if number in _TIMEOUTS:
        return ConnectionFailed(text, code="timeout")
    if number in _DNS:
        return ConnectionFailed(text, code="dns_failure")
    if number == pycurl.E_COULDNT_CONNECT and (
        os_errno == errno.ECONNREFUSED or "refused" in lowered
    ):
        return ConnectionFailed(text, code="connection_refused")
    if number in _TLS and not any(word in lowered for word in _DROPPED):
        return TlsError(text)
    return ConnectionFailed(text)


@dataclass(eq=False)
class _Handle:
    curl: pycurl.Curl = field(default_factory=pycurl.Curl)
    #: (host, port) -> time.monotonic() the addresses were checked.
    pinned: dict = field(default_factory=dict)
    #: The CA bundle (file or directory) the handle verifies against.
    bundle: str = ""


class CurlTransfer:
    """A request under way on a thread's multi handle: `done()` says (without
    waiting) whether its answer is in, `wait(timeout)` lets the thread's transfers
    progress for up to `timeout` seconds, `result()` waits for this one's answer
    (a `CurlResponse`) or raises its `IntegrationError`."""

    def __init__(self, multi: "_Multi", handle: _Handle, size: int):
        self._multi = multi
        self.handle = handle
        #: Bytes of this request (body and given headers): the resent check.
        self.size = size
        self.answer = io.BytesIO()
        self.status_line = ""
        self.headers: list[tuple[str, str]] = []
        self.outcome: CurlResponse | IntegrationError | None = None

    def header_line(self, line: bytes) -> None:
        text = line.decode("iso-8859-1").rstrip("\r\n")
        if text.startswith("HTTP/"):
            self.status_line = text
            self.headers = []
        elif ":" in text:
            name, _, value = text.partition(":")
            self.headers.append((name.strip(), value.strip()))

    def done(self) -> bool:
        if self.outcome is None and not self._multi.just_polled():
            self._multi.progress()
        return self.outcome is not None

    def wait(self, timeout: float | None) -> None:
        if self.outcome is None:
            self._multi.wait(timeout)

    def result(self) -> CurlResponse:
        while self.outcome is None:
            self._multi.wait(None)
        if isinstance(self.outcome, IntegrationError):
            raise self.outcome
        return self.outcome


class _Multi:
    """One thread's libcurl multi handle and the transfers under way on it."""

    def __init__(self, pool: "CurlPool"):
        self.pool = pool
        self.multi = pycurl.CurlMulti()
        self.transfers: dict[pycurl.Curl, CurlTransfer] = {}
        #: When `progress` last ran (time.monotonic()).
        self.polled_at = 0.0

    def just_polled(self) -> bool:
        """Whether `progress` ran less than POLL_GAP_SECONDS ago: a look at each
        transfer in turn (`done()`, as a run checks the ones it has in flight)
        polls the network once, not once per transfer."""
        return time.monotonic() - self.polled_at < POLL_GAP_SECONDS

    def add(self, transfer: CurlTransfer) -> None:
        curl = transfer.handle.curl
        self.multi.add_handle(curl)
        self.transfers[curl] = transfer

    def progress(self) -> None:
        """Let every transfer do what it can now, and finish those answered."""
        while self.multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
            pass
        self.polled_at = time.monotonic()
        while True:
            queued, ok, failed = self.multi.info_read()
            for curl in ok:
                self._finish(curl, None)
            for curl, number, message in failed:
                self._finish(curl, pycurl.error(number, message))
            if not queued:
                return

    def wait(self, timeout: float | None) -> None:
        """Wait until a transfer's socket is ready (or libcurl's next timer, or
        `timeout` seconds), then progress."""
        due = self.multi.timeout()  # ms until libcurl's next timer, -1: none
        seconds = 1.0 if due < 0 else due / 1000
        if timeout is not None:
            seconds = min(seconds, timeout)
        if seconds > 0:
            self.multi.select(seconds)
        self.progress()

    def _finish(self, curl: pycurl.Curl, error: pycurl.error | None) -> None:
        self.multi.remove_handle(curl)
        transfer = self.transfers.pop(curl)
        if error is not None:
            transfer.outcome = error_from_curl(error, curl.getinfo(pycurl.OS_ERRNO))
            curl.close()
            return
        line = transfer.status_line
        transfer.outcome = CurlResponse(
            status=curl.getinfo(pycurl.RESPONSE_CODE),
            reason=line.split(" ", 2)[2] if line.count(" ") >= 2 else "",
            headers=transfer.headers,
            content=transfer.answer.getvalue(),
            # A request sent twice in one transfer counts its bytes twice.
            resent=bool(curl.getinfo(pycurl.NUM_CONNECTS))
            and curl.getinfo(pycurl.REQUEST_SIZE) >= 2 * transfer.size,
        )
        self.pool.give_back(transfer.handle)


class CurlPool:
    """Reusable libcurl handles, and per thread a multi handle that holds the
    keep-alive connections its transfers use."""

    def __init__(self, maxsize: int = 10):
        self.maxsize = maxsize
        self._idle: list[_Handle] = []
        self._lock = threading.Lock()
        self._local = threading.local()

    def _take(self) -> _Handle:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        handle = _Handle()
        curl = handle.curl
        curl.setopt(pycurl.NOSIGNAL, 1)
        curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        curl.setopt(pycurl.FOLLOWLOCATION, 0)
        curl.setopt(pycurl.SSL_VERIFYPEER, 1)
        curl.setopt(pycurl.SSL_VERIFYHOST, 2)
        curl.setopt(pycurl.ACCEPT_ENCODING, "")
        return handle

    def give_back(self, handle: _Handle) -> None:
        with self._lock:
            if len(self._idle) < self.maxsize:
                self._idle.append(handle)
                return
        handle.curl.close()

    def _multi(self) -> _Multi:
        multi = getattr(self._local, "multi", None)
        if multi is None:
            multi = self._local.multi = _Multi(self)
        return multi

    def close(self) -> None:
        """Close the idle handles and this thread's connections."""
        with self._lock:
            idle, self._idle = self._idle, []
        for handle in idle:
            handle.curl.close()
        multi = getattr(self._local, "multi", None)
        if multi is not None and not multi.transfers:
            multi.multi.close()
            self._local.multi = None

    @staticmethod
    def _pin(handle: _Handle, host: str, port: int) -> None:
        """Let the handle connect to `host` only at addresses the policy allows."""
        now = time.monotonic()
        checked = handle.pinned.get((host, port))
        if checked is not None and now - checked < PIN_SECONDS:
            return
        addresses = ",".join(
            f"[{ip}]" if ":" in ip else ip for ip in _checked(host, port).ips
        )
        handle.curl.setopt(
            pycurl.RESOLVE, [f"-{host}:{port}", f"{host}:{port}:{addresses}"]
        )
        handle.pinned[(host, port)] = now

    def start(
        self,
        url: str,
        body: bytes,
        *,
        headers: dict,
        timeout: float,
        verify: str | bool,
        proxy: str = "",
    ) -> CurlTransfer:
        """Start POSTing `body` to `url` (http or https), verifying TLS against
        `verify` (a bundle file or directory, or True for certifi's), through
        `proxy` when given, within `timeout` seconds in all. Raises
        `IntegrationError`s only."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        handle = self._take()
        curl = handle.curl
        transfer = CurlTransfer(
            self._multi(),
            handle,
            len(body) + sum(len(k) + len(v) for k, v in headers.items()),
        )
        try:
            if proxy:
                outbound.check_if_resolvable(host, port)
            else:
                self._pin(handle, host, port)
            curl.setopt(pycurl.PROXY, proxy)
            bundle = certifi.where() if verify in (True, None) else str(verify)
            if handle.bundle != bundle:
                if os.path.isdir(bundle):
                    curl.setopt(pycurl.CAPATH, bundle)
                    curl.unsetopt(pycurl.CAINFO)
                else:
                    curl.setopt(pycurl.CAINFO, bundle)
                    curl.unsetopt(pycurl.CAPATH)
                handle.bundle = bundle
            curl.setopt(pycurl.URL, url)
            curl.setopt(
                pycurl.HTTPHEADER,
                [f"{name}: {value}" for name, value in headers.items()]
                # No "Expect: 100-continue" pause before a larger body.
                + ["Expect:"],
            )
            curl.setopt(pycurl.POSTFIELDS, body)
            curl.setopt(pycurl.TIMEOUT_MS, max(1, int(timeout * 1000)))
            curl.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(timeout * 1000)))
            curl.setopt(pycurl.WRITEDATA, transfer.answer)
            curl.setopt(pycurl.HEADERFUNCTION, transfer.header_line)
            transfer._multi.add(transfer)
        except pycurl.error as exc:
            curl.close()
            raise error_from_curl(exc) from None
        except BaseException:
            curl.close()
            raise
        # The request goes out now (on a kept-alive connection), not at the next
        # look; from here on its outcome, whatever it is, comes from `result()`.
        transfer._multi.progress()
        return transfer


def _checked(host: str, port: int) -> outbound.Destination:
    try:
        return outbound.destination(host, port)
    except OSError as exc:  # socket.gaierror
        raise ConnectionFailed(
            f"{type(exc).__name__}: {exc}", code="dns_failure"
        ) from exc
