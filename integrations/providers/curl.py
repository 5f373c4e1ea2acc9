"""
The worker's sendMail transport: libcurl (pycurl), for the one request a worker
makes per message.

requests and urllib3 spend about 0.35 ms of Python per keep-alive POST (building
the request, parsing the answer's headers); libcurl does the same in C in about a
fifth of that, and lets go of the GIL while it waits, so the worker's sending
threads leave the run's thread the CPU (bench/delivery.py). Everything else (the
token endpoint through msal, Test Connection's reads, a request through a proxy)
stays on requests (`M365Session`), and this transport keeps requests' rules:

- TLS: certificates and host names are always checked, against the same bundle
  requests would use (`M365_CA_BUNDLE` added, `REQUESTS_CA_BUNDLE` honoured), and
  against nothing else (no system store on top);
- the outbound policy: the host name is resolved here and every address checked
  (`outbound.destination`), and libcurl connects only to those (`CURLOPT_RESOLVE`,
  renewed every `PIN_SECONDS`); it never resolves a name itself;
- no proxy (the caller sends proxied requests through requests), no redirects,
  HTTP/1.1 keep-alive, one connection per handle, handles pooled per session;
- failures raised as the error hierarchy (`ConnectionFailed`, `TlsError`...).

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


class CurlPool:
    """Reusable libcurl handles (each one keep-alive connection), for any thread:
    a thread takes an idle handle for one request and gives it back."""

    def __init__(self, maxsize: int = 10):
        self.maxsize = maxsize
        self._idle: list[_Handle] = []
        self._lock = threading.Lock()

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
        # Proxied requests never come here: the environment's proxy is not used.
        curl.setopt(pycurl.PROXY, "")
        curl.setopt(pycurl.SSL_VERIFYPEER, 1)
        curl.setopt(pycurl.SSL_VERIFYHOST, 2)
        curl.setopt(pycurl.ACCEPT_ENCODING, "")
        return handle

    def _give_back(self, handle: _Handle) -> None:
        with self._lock:
            if len(self._idle) < self.maxsize:
                self._idle.append(handle)
                return
        handle.curl.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for handle in idle:
            handle.curl.close()

    @staticmethod
    def _pin(handle: _Handle, host: str, port: int) -> None:
        """Let the handle connect to `host` only at addresses the policy allows."""
        now = time.monotonic()
        checked = handle.pinned.get((host, port))
        if checked is not None and now - checked < PIN_SECONDS:
            return
        try:
            destination = outbound.destination(host, port)
        except OSError as exc:  # socket.gaierror
            raise ConnectionFailed(
                f"{type(exc).__name__}: {exc}", code="dns_failure"
            ) from exc
        addresses = ",".join(f"[{ip}]" if ":" in ip else ip for ip in destination.ips)
        handle.curl.setopt(
            pycurl.RESOLVE, [f"-{host}:{port}", f"{host}:{port}:{addresses}"]
        )
        handle.pinned[(host, port)] = now

    def post(
        self,
        url: str,
        body: bytes,
        *,
        headers: dict,
        timeout: float,
        verify: str | bool,
    ) -> CurlResponse:
        """POST `body` to `url` (http or https), verifying TLS against `verify` (a
        bundle file or directory, or True for certifi's), within `timeout` seconds
        in all. Raises `IntegrationError`s only."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        handle = self._take()
        curl = handle.curl
        answer = io.BytesIO()
        status_line, received = [""], []

        def header_line(line: bytes) -> None:
            text = line.decode("iso-8859-1").rstrip("\r\n")
            if text.startswith("HTTP/"):
                status_line[0] = text
                received.clear()
            elif ":" in text:
                name, _, value = text.partition(":")
                received.append((name.strip(), value.strip()))

        try:
            self._pin(handle, host, port)
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
            curl.setopt(pycurl.WRITEDATA, answer)
            curl.setopt(pycurl.HEADERFUNCTION, header_line)
            curl.perform()
            status = curl.getinfo(pycurl.RESPONSE_CODE)
            # A request sent twice in one transfer counts its bytes twice.
            resent = bool(curl.getinfo(pycurl.NUM_CONNECTS)) and curl.getinfo(
                pycurl.REQUEST_SIZE
            ) >= 2 * (len(body) + sum(len(k) + len(v) for k, v in headers.items()))
        except pycurl.error as exc:
            os_errno = curl.getinfo(pycurl.OS_ERRNO)
            curl.close()
            raise error_from_curl(exc, os_errno) from None
        except BaseException:
            curl.close()
            raise
        self._give_back(handle)
        reason = (
            status_line[0].split(" ", 2)[2] if status_line[0].count(" ") >= 2 else ""
        )
        return CurlResponse(
            status=status,
            reason=reason,
            headers=received,
            content=answer.getvalue(),
            resent=resent,
        )
