"""The aiohttp application, the SMTP and IMAP servers and the ``Sandbox`` that
runs them.

One asyncio event loop in one background thread serves the three ports.
"""

import asyncio
import shutil
import tempfile
import threading
from pathlib import Path

import requests
from aiohttp import web

from sandbox import applications, authorize, breakages, control, graph, identity, seed
from sandbox.control import inbox_public, sent_item_public
from sandbox.imap import IMAPService
from sandbox.keys import CTX
from sandbox.smtp import smtp_factory
from sandbox.state import State
from sandbox.tls import ensure_tls
from sandbox.tokens import Signer

START_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 2.0  # seconds an in-flight request may take when stopping


class ControlAPIError(RuntimeError):
    """A control-API call answered with an error status."""

    def __init__(self, status: int, body):
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class Context:
    """What every handler needs: state, keys, TLS files and addresses."""

    def __init__(self, *, state, signer, tls, control_enabled, host):
        self.state = state
        self.signer = signer
        self.tls = tls
        self.control = control_enabled
        self.host = host
        self.https_port = 0
        self.smtp_port = 0
        self.imap_port = 0
        self.loop = None
        self.smtp_protocols = set()
        self.imap_protocols = set()

    @property
    def public_host(self) -> str:
        if self.host in ("", "0.0.0.0", "::"):  # nosec B104  # compared, not bound
            return "127.0.0.1"
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def base_url(self) -> str:
        return f"https://{self.public_host}:{self.https_port}"

    def reset(self) -> None:
        self.state.reset()
        self.signer.clear_cache()

    def seed(self) -> dict:
        return {
            "tenant_id": seed.TENANT_ID,
            "domain": seed.DOMAIN,
            "client_id": seed.CLIENT_ID,
            "client_secret": seed.CLIENT_SECRET,
            "client_secret_id": seed.CLIENT_SECRET_ID,
            "sender": seed.SENDER,
            "recipient": seed.RECIPIENT,
            "user": seed.USER,
            "password": seed.PASSWORD,
            "authority": f"{self.base_url}/{seed.TENANT_ID}",
            "graph_url": f"{self.base_url}/v1.0",
            "smtp_host": self.public_host.strip("[]"),
            "smtp_port": self.smtp_port,
            "imap_host": self.public_host.strip("[]"),
            "imap_port": self.imap_port,
            "redirect_uris": list(seed.REDIRECT_URIS),
            "ca_url": f"{self.base_url}/_sandbox/ca.pem",
            "breakages": breakages.described(seed.TENANT_ID, seed.CLIENT_ID),
        }


def build_app(ctx: Context) -> web.Application:
    """The HTTPS application: identity, Graph and the control API."""
    app = web.Application(client_max_size=40 * 1024 * 1024)
    app[CTX] = ctx
    r = app.router
    r.add_get(
        "/{tenant}/v2.0/.well-known/openid-configuration",
        identity.openid_configuration,
    )
    r.add_get("/{tenant}/discovery/v2.0/keys", identity.keys)
    r.add_route("GET", "/{tenant}/oauth2/v2.0/authorize", authorize.authorize)
    r.add_route("POST", "/{tenant}/oauth2/v2.0/authorize", authorize.authorize)
    r.add_post("/{tenant}/oauth2/v2.0/token", identity.token)
    r.add_post("/v1.0/users/{user}/sendMail", graph.send_mail)
    r.add_post("/v1.0/me/sendMail", graph.send_mail)
    # Graph's path segments are case-insensitive (mailFolders, mailfolders, ...).
    messages = "{_f:(?i:mailFolders)}/{folder}/{_m:(?i:messages)}"
    r.add_get(f"/v1.0/users/{{user}}/{messages}", graph.list_messages)
    r.add_get(f"/v1.0/me/{messages}", graph.list_messages)
    delta = messages + "/{_d:(?i:delta)}"
    r.add_get(f"/v1.0/users/{{user}}/{delta}", graph.inbox_delta)
    r.add_get(f"/v1.0/me/{delta}", graph.inbox_delta)
    value = "{_m:(?i:messages)}/{message_id}/{_v:\\$value}"
    r.add_get(f"/v1.0/users/{{user}}/{value}", graph.get_mime)
    r.add_get(f"/v1.0/me/{value}", graph.get_mime)
    r.add_get("/v1.0/me", graph.me)
    r.add_get("/v1.0/{_u:(?i:users)}/{user}", graph.get_user)
    r.add_get("/v1.0/{_a:(?i:applications)}", applications.list_applications)
    r.add_get(
        r"/v1.0/{_a:(?i:applications)}({key:[^/)]*})", applications.get_application
    )
    r.add_get("/v1.0/{_a:(?i:applications)}/{object_id}", applications.get_application)
    r.add_route("*", "/v1.0/{tail:.*}", graph.not_found)
    control.add_routes(app)
    return app


class Sandbox:
    """The Microsoft 365 sandbox in a background thread.

    ``Sandbox(host="127.0.0.1", https_port=0, smtp_port=0, imap_port=0,
    state_dir=None, control=True, grant=())``; port 0 picks a free port, no ``state_dir`` means a
    temporary one removed on ``stop()``, ``grant`` adds application permissions
    to the seeded app (kept across ``reset()``). Use as a context manager or call
    ``start()`` and ``stop()``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        https_port: int = 0,
        smtp_port: int = 0,
        imap_port: int = 0,
        state_dir=None,
        control: bool = True,
        grant: tuple | list = (),
    ):
        self.host = host
        self._grant = list(grant)
        self._https_port = https_port
        self._smtp_port = smtp_port
        self._imap_port = imap_port
        self._state_dir = Path(state_dir) if state_dir else None
        self._control = control
        self._temp_dir = None
        self._thread = None
        self._loop = None
        self._session = None
        self.ctx = None

    # -- lifecycle -----------------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def start(self) -> "Sandbox":
        if self._thread is not None:
            raise RuntimeError("The sandbox is already running.")
        if self._state_dir is None:
            self._temp_dir = tempfile.mkdtemp(prefix="m365-sandbox-")
            state_dir = Path(self._temp_dir)
        else:
            state_dir = self._state_dir
        tls = ensure_tls(state_dir)
        self.ctx = Context(
            state=State(extra_app_permissions=self._grant),
            signer=Signer(state_dir),
            tls=tls,
            control_enabled=self._control,
            host=self.host,
        )
        self._loop = asyncio.new_event_loop()
        self.ctx.loop = self._loop
        ready = threading.Event()
        failure = []
        self._thread = threading.Thread(
            target=self._run, args=(ready, failure), name="m365-sandbox", daemon=True
        )
        self._thread.start()
        if not ready.wait(START_TIMEOUT) or failure:
            self._thread.join(5)
            self._thread = None
            self._cleanup_dir()
            if failure:
                raise failure[0]
            raise RuntimeError("The sandbox did not start in time.")
        return self

    def stop(self) -> None:
        """Close both servers and every connection, and join the thread."""
        if self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = None
        if self._session is not None:
            self._session.close()
            self._session = None
        self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def _run(self, ready: threading.Event, failure: list) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup())
        except Exception as error:  # reported to start()'s caller
            failure.append(error)
            loop.run_until_complete(self._shutdown())
            loop.close()
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.close()

    async def _startup(self) -> None:
        ctx = self.ctx
        self._runner = web.AppRunner(
            build_app(ctx),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
        await self._runner.setup()
        ssl_context = ctx.tls.server_context()
        http_server = self._runner.server

        def https_factory():
            ctx.state.count("tcp_connections", "https")
            return http_server()

        self._https = await self._loop.create_server(
            https_factory, self.host, self._https_port, ssl=ssl_context, backlog=1024
        )
        ctx.https_port = self._https.sockets[0].getsockname()[1]
        self._smtp = await self._loop.create_server(
            smtp_factory(ctx, ssl_context), self.host, self._smtp_port, backlog=256
        )
        ctx.smtp_port = self._smtp.sockets[0].getsockname()[1]
        self._imap = IMAPService(ctx, self._loop)
        ctx.imap_port = self._imap.listen(self.host, self._imap_port)

    async def _shutdown(self) -> None:
        for server in (getattr(self, "_https", None), getattr(self, "_smtp", None)):
            if server is not None:
                server.close()
        for protocol in list(self.ctx.smtp_protocols):
            if protocol.transport is not None:
                protocol.transport.abort()
        imap = getattr(self, "_imap", None)
        if imap is not None:
            await imap.close(self._loop)
            self._imap = None
        runner = getattr(self, "_runner", None)
        if runner is not None:
            await runner.cleanup()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._loop.shutdown_asyncgens()

    # -- addresses -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self.ctx.base_url

    @property
    def authority_host(self) -> str:
        return self.ctx.base_url

    @property
    def graph_host(self) -> str:
        return self.ctx.base_url

    @property
    def authority(self) -> str:
        return f"{self.ctx.base_url}/{seed.TENANT_ID}"

    @property
    def smtp_host(self) -> str:
        return self.ctx.public_host.strip("[]")

    @property
    def smtp_port(self) -> int:
        return self.ctx.smtp_port

    @property
    def imap_host(self) -> str:
        return self.ctx.public_host.strip("[]")

    @property
    def imap_port(self) -> int:
        """The IMAP port (implicit TLS, like outlook.office365.com:993)."""
        return self.ctx.imap_port

    @property
    def https_port(self) -> int:
        return self.ctx.https_port

    @property
    def ca_path(self) -> Path:
        return self.ctx.tls.ca_path

    @property
    def seed(self) -> dict:
        return self.ctx.seed()

    @property
    def inbox_url(self) -> str:
        return f"{self.ctx.base_url}/_sandbox/inbox"

    # -- state, straight from memory -------------------------------------------------

    def messages(self, to=None, sender=None, subject=None) -> list:
        return self.ctx.state.find_messages(to=to, sender=sender, subject=subject)

    def clear_messages(self) -> int:
        return self.ctx.state.clear_messages()

    def inbox(self, upn: str) -> list:
        """The items of ``upn``'s inbox, oldest first: ``id``, ``uid``,
        ``internet_message_id``, ``subject``, ``from``, ``received_at`` and
        ``raw`` (bytes), as read over IMAP and Graph."""
        return [
            inbox_public(item, raw=True) for item in self.ctx.state.inbox_items(upn)
        ]

    def sent_items(self, mailbox=None) -> list:
        """Copies saved in Sent Items (all mailboxes, or ``mailbox``'s), oldest
        first, including those not filed yet; same as GET /_sandbox/sent_items."""
        return [
            sent_item_public(item) for item in self.ctx.state.all_sent_items(mailbox)
        ]

    def counters(self) -> dict:
        return self.ctx.state.counters_snapshot()

    def reset(self) -> None:
        """Back to the seeded state (messages, counters, faults, directory, ...)."""
        self.ctx.reset()

    # -- control API over HTTPS --------------------------------------------------------

    def control(self, method: str, path: str, json=None):
        """Call the control API and return its parsed JSON answer.

        ``path`` may omit the ``/_sandbox`` prefix. Error statuses raise
        ControlAPIError (with ``status`` and ``body``).
        """
        if not path.startswith("/"):
            path = "/" + path
        if not path.startswith("/_sandbox/"):
            path = "/_sandbox" + path
        if self._session is None:
            self._session = requests.Session()
            self._session.trust_env = False
            self._session.verify = str(self.ca_path)
        response = self._session.request(
            method.upper(), self.base_url + path, json=json, timeout=30
        )
        try:
            data = response.json()
        except ValueError:
            data = {"status": response.status_code, "text": response.text}
        if response.status_code >= 400:
            raise ControlAPIError(response.status_code, data)
        return data

    def add_fault(self, **fault) -> dict:
        """POST /_sandbox/faults; returns ``{"id": ...}``."""
        return self.control("POST", "/_sandbox/faults", json=fault)
