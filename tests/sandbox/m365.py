"""Real-client helpers for driving the sandbox: msal, requests and smtplib.

Everything here talks to the sandbox over TLS the way the product does: a
``requests.Session`` that trusts only the sandbox CA and ignores the environment
(``REQUESTS_CA_BUNDLE`` would otherwise replace ``Session.verify``), msal given that
session as its ``http_client``, and smtplib upgraded with STARTTLS against the CA.
"""

import base64
import contextlib
import json
import re
import smtplib
import ssl
import uuid
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import msal
import requests

GRAPH_DEFAULT = "https://graph.microsoft.com/.default"
OUTLOOK_DEFAULT = "https://outlook.office365.com/.default"
GRAPH_AUDIENCE = "https://graph.microsoft.com"
OUTLOOK_AUDIENCE = "https://outlook.office365.com"
SMTP_SEND = "https://outlook.office.com/SMTP.Send"
GRAPH_MAIL_SEND = "https://graph.microsoft.com/Mail.Send"
GRAPH_USER_READ = "https://graph.microsoft.com/User.Read"

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def trusted_session(ca_path):
    """A requests session that trusts the sandbox CA and nothing from the env."""
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca_path)
    return session


# --- control API ----------------------------------------------------------------


class Control:
    """The sandbox control API (``/_sandbox/...``) over a trusted session."""

    def __init__(self, sb, http):
        self.sb = sb
        self.http = http
        self.tenant_id = sb.seed["tenant_id"]

    def __call__(self, method, path, json=None, expect=(200, 201)):
        response = self.http.request(
            method, f"{self.sb.base_url}/_sandbox/{path.lstrip('/')}", json=json
        )
        assert response.status_code in expect, (response.status_code, response.text)
        return response.json() if response.content else None

    def patch_tenant(self, tenant=None, **fields):
        return self("PATCH", f"tenants/{tenant or self.tenant_id}", json=fields)

    def add_tenant(self, **fields):
        fields.setdefault("tenant_id", str(uuid.uuid4()))
        self("POST", "tenants", json=fields)
        return fields["tenant_id"]

    def add_app(self, tenant=None, **fields):
        """Register an app with a fresh secret; returns (client_id, secret)."""
        tenant = tenant or self.tenant_id
        fields.setdefault("client_id", str(uuid.uuid4()))
        fields.setdefault("display_name", "Test app")
        fields.setdefault("admin_consent", True)
        fields.setdefault("application_permissions", [])
        fields.setdefault("delegated_permissions", [])
        self("POST", f"tenants/{tenant}/apps", json=fields)
        secret = self.add_secret(fields["client_id"], tenant=tenant)
        return fields["client_id"], secret["value"]

    def patch_app(self, client_id, tenant=None, **fields):
        tenant = tenant or self.tenant_id
        return self("PATCH", f"tenants/{tenant}/apps/{client_id}", json=fields)

    def add_secret(self, client_id, tenant=None, **fields):
        tenant = tenant or self.tenant_id
        return self("POST", f"tenants/{tenant}/apps/{client_id}/secrets", json=fields)

    def add_certificate(self, client_id, certificate_pem, tenant=None):
        tenant = tenant or self.tenant_id
        return self(
            "POST",
            f"tenants/{tenant}/apps/{client_id}/certificates",
            json={"certificate_pem": certificate_pem},
        )

    def add_user(self, upn, tenant=None, **fields):
        tenant = tenant or self.tenant_id
        fields["user_principal_name"] = upn
        fields.setdefault("display_name", upn.split("@")[0])
        return self("POST", f"tenants/{tenant}/users", json=fields)

    def patch_user(self, upn, tenant=None, **fields):
        tenant = tenant or self.tenant_id
        return self("PATCH", f"tenants/{tenant}/users/{upn}", json=fields)

    def revoke_user(self, upn, tenant=None):
        tenant = tenant or self.tenant_id
        return self("POST", f"tenants/{tenant}/users/{upn}/revoke")

    def advance_clock(self, seconds):
        return self("POST", "clock", json={"advance_seconds": seconds})

    def add_fault(self, **fault):
        return self("POST", "faults", json=fault)

    def throttle(self, **settings):
        settings.setdefault("enabled", True)
        return self("PUT", "throttling", json=settings)

    def counters(self):
        return self("GET", "counters")

    def grant(self, *permissions):
        """Add application permissions to the seeded app (README: seed)."""
        from sandbox.seed import APPLICATION_PERMISSIONS

        wanted = list(APPLICATION_PERMISSIONS) + list(permissions)
        client_id = self.sb.seed["client_id"]
        return self.patch_app(client_id, application_permissions=wanted)

    def messages(self, **filters):
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        return self("GET", f"messages?{query}" if query else "messages")["messages"]


# --- identity -------------------------------------------------------------------


def confidential_app(sb, http, client_id=None, credential=None, tenant=None):
    """An msal confidential client pointed at the sandbox authority."""
    seed = sb.seed
    return msal.ConfidentialClientApplication(
        client_id or seed["client_id"],
        client_credential=credential
        if credential is not None
        else seed["client_secret"],
        authority=f"{sb.authority_host}/{tenant or seed['tenant_id']}",
        instance_discovery=False,
        http_client=http,
    )


def app_token(sb, http, scope=GRAPH_DEFAULT, **app_kwargs):
    result = confidential_app(sb, http, **app_kwargs).acquire_token_for_client([scope])
    assert "access_token" in result, result
    return result["access_token"]


def token_endpoint(sb, tenant=None):
    return f"{sb.base_url}/{tenant or sb.seed['tenant_id']}/oauth2/v2.0/token"


def assert_aad_error(body, code, error):
    """The error has Microsoft's full shape and carries the expected AADSTS code."""
    assert body.get("error") == error, body
    assert body["error_description"].startswith(f"AADSTS{code}: "), body
    assert body["error_codes"] == [code], body
    assert re.match(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}", body["timestamp"]), body
    assert GUID.match(body["trace_id"]), body
    assert GUID.match(body["correlation_id"]), body
    assert body["error_uri"].startswith("https://"), body
    assert str(code) in body["error_uri"], body


def jwt_claims(token):
    """Claims of a JWT, unverified (for reading what a token says)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# --- sign-in page ---------------------------------------------------------------


class FormParser(HTMLParser):
    """Collects forms, their inputs and buttons, and the labels of inputs."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms = []
        self.labels = {}  # input id -> label text
        self.text = []
        self._label = None  # (for-id, [text], [inputs inside])
        self._button = None  # (attrs, [text])

    def handle_starttag(self, tag, attrs):
        attrs = {k: (v if v is not None else "") for k, v in attrs}
        form = self.forms[-1] if self.forms else None
        if tag == "form":
            self.forms.append(
                {
                    "action": attrs.get("action", ""),
                    "method": attrs.get("method", "get").lower(),
                    "inputs": [],
                    "buttons": [],
                }
            )
        elif tag == "input" and form is not None:
            kind = attrs.get("type", "text").lower()
            if kind in ("submit", "button", "image"):
                form["buttons"].append({"attrs": attrs, "text": attrs.get("value", "")})
            else:
                form["inputs"].append(attrs)
                if self._label is not None:
                    self._label[2].append(attrs)
        elif tag == "button" and form is not None:
            self._button = (attrs, [])
        elif tag == "label":
            self._label = (attrs.get("for"), [], [])

    def handle_endtag(self, tag):
        if tag == "button" and self._button is not None:
            attrs, text = self._button
            self.forms[-1]["buttons"].append(
                {"attrs": attrs, "text": " ".join("".join(text).split())}
            )
            self._button = None
        elif tag == "label" and self._label is not None:
            for_id, text, inside = self._label
            label = " ".join("".join(text).split())
            if for_id:
                self.labels[for_id] = label
            for attrs in inside:
                attrs["_label"] = label
            self._label = None

    def handle_data(self, data):
        self.text.append(data)
        if self._button is not None:
            self._button[1].append(data)
        if self._label is not None:
            self._label[1].append(data)


class SignInPage:
    """The sandbox sign-in and consent page, parsed like a person would read it."""

    def __init__(self, response):
        self.response = response
        self.url = response.url
        parser = FormParser()
        parser.feed(response.text)
        self.text = " ".join("".join(parser.text).split())
        forms = [f for f in parser.forms if f["buttons"]]
        assert forms, f"no form with buttons on the page:\n{response.text}"
        self.form = forms[0]
        for attrs in self.form["inputs"]:
            attrs.setdefault("_label", parser.labels.get(attrs.get("id"), ""))

    def _input(self, label, fallback_types):
        for attrs in self.form["inputs"]:
            if attrs["_label"].strip().lower().rstrip(":") == label:
                return attrs
        for attrs in self.form["inputs"]:
            if attrs.get("type", "text").lower() in fallback_types:
                return attrs
        raise AssertionError(f"no input labelled {label!r}")

    @property
    def username_field(self):
        return self._input("user name", ("text", "email"))["name"]

    @property
    def password_field(self):
        return self._input("password", ("password",))["name"]

    def button(self, text):
        for button in self.form["buttons"]:
            if button["text"].strip().lower() == text.lower():
                return button["attrs"]
        raise AssertionError(f"no button {text!r} in {self.form['buttons']}")

    def submit(self, http, button, username=None, password=None):
        data = {
            attrs["name"]: attrs.get("value", "")
            for attrs in self.form["inputs"]
            if attrs.get("name") and attrs.get("type", "text").lower() == "hidden"
        }
        if username is not None:
            data[self.username_field] = username
        if password is not None:
            data[self.password_field] = password
        attrs = self.button(button)
        if attrs.get("name"):
            data[attrs["name"]] = attrs.get("value", "")
        url = urljoin(self.url, self.form["action"] or self.url)
        method = self.form["method"].upper()
        if method == "GET":
            return http.get(url, params=data, allow_redirects=False)
        return http.post(url, data=data, allow_redirects=False)


def open_sign_in(http, auth_uri):
    response = http.get(auth_uri, allow_redirects=False)
    assert response.status_code == 200, (response.status_code, response.text)
    return SignInPage(response)


def redirect_params(response):
    """The query of the redirect the sign-in page answered with."""
    assert response.status_code in (302, 303), (response.status_code, response.text)
    location = response.headers["Location"]
    return location, {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def sign_in(http, auth_uri, username, password, button="Accept"):
    """Sign in on the sandbox page and return the redirect's query as a dict."""
    response = open_sign_in(http, auth_uri).submit(http, button, username, password)
    return redirect_params(response)[1]


def delegated_flow(sb, http, scopes, username=None, password=None, app=None, **flow):
    """The authorization code flow end to end: returns (app, auth_code_flow, result)."""
    app = app or confidential_app(sb, http)
    flow.setdefault("redirect_uri", sb.seed["redirect_uris"][0])
    auth_code_flow = app.initiate_auth_code_flow(scopes, **flow)
    params = sign_in(
        http,
        auth_code_flow["auth_uri"],
        username or sb.seed["user"],
        password or sb.seed["password"],
    )
    result = app.acquire_token_by_auth_code_flow(dict(auth_code_flow), params)
    return app, auth_code_flow, result


def delegated_token(sb, http, scopes, **kwargs):
    result = delegated_flow(sb, http, scopes, **kwargs)[2]
    assert "access_token" in result, result
    return result["access_token"]


# --- Graph ----------------------------------------------------------------------


def mail(subject="Sandbox test", to=None, content="Hello from the tests.", **fields):
    """A Graph sendMail body."""
    save = fields.pop("saveToSentItems", False)
    content_type = fields.pop("content_type", "Text")
    message = {
        "subject": subject,
        "body": {"contentType": content_type, "content": content},
        "toRecipients": [{"emailAddress": {"address": a}} for a in to or []],
    }
    message.update(fields)
    return {"message": message, "saveToSentItems": save}


def addresses(*emails):
    return [{"emailAddress": {"address": a}} for a in emails]


def send_mail(sb, http, token, sender, body, **kwargs):
    path = "/v1.0/me/sendMail" if sender is None else f"/v1.0/users/{sender}/sendMail"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kwargs.pop("headers", {}))
    if isinstance(body, (bytes, str)):
        headers.setdefault("Content-Type", "application/json")
        return http.post(f"{sb.graph_host}{path}", data=body, headers=headers, **kwargs)
    return http.post(f"{sb.graph_host}{path}", json=body, headers=headers, **kwargs)


def sent_items(sb, http, token, mailbox, query=None, folder="sentitems", **kwargs):
    """GET the messages of a mailbox's Sent Items (``mailbox=None``: /me).

    ``query`` is a dict (URL-encoded by requests) or a ready query string.
    """
    user = "me" if mailbox is None else f"users/{mailbox}"
    url = f"{sb.graph_host}/v1.0/{user}/mailFolders/{folder}/messages"
    if isinstance(query, str):
        url, query = f"{url}?{query}", None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.get(url, params=query, headers=headers, **kwargs)


def by_message_id(internet_message_id):
    """The $filter for one Internet Message-ID, quoted as an OData string."""
    literal = internet_message_id.replace("'", "''")
    return {
        "$filter": f"internetMessageId eq '{literal}'",
        "$select": "id,internetMessageId",
    }


def assert_graph_error(response, status, code, message=None):
    """Graph's error shape: {"error": {"code", "message", "innerError": {...}}}."""
    assert response.status_code == status, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    if message is not None:
        assert error["message"] == message, error
    inner = error["innerError"]
    assert GUID.match(inner["request-id"]), inner
    assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", inner["date"]), inner
    assert inner["client-request-id"], inner
    assert response.headers["request-id"] == inner["request-id"]
    assert response.headers["client-request-id"] == inner["client-request-id"]
    return error


# --- SMTP -----------------------------------------------------------------------


def tls_context(ca_path):
    return ssl.create_default_context(cafile=str(ca_path))


@contextlib.contextmanager
def smtp_session(sb, starttls=True, timeout=10):
    """An smtplib session to the sandbox, upgraded with STARTTLS against its CA."""
    client = smtplib.SMTP(sb.smtp_host, sb.smtp_port, timeout=timeout)
    try:
        client.ehlo("tests.local")
        if starttls:
            client.starttls(context=tls_context(sb.ca_path))
            client.ehlo("tests.local")
        yield client
    finally:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()
        client.close()


def xoauth2(user, token):
    """An smtplib auth object for XOAUTH2 (empty answer to an error challenge)."""

    def authobject(challenge=None):
        if challenge is not None:
            return ""
        return f"user={user}\x01auth=Bearer {token}\x01\x01"

    return authobject


def smtp_login_xoauth2(client, user, token):
    return client.auth("XOAUTH2", xoauth2(user, token), initial_response_ok=True)


def smtp_reply(exc):
    """(code, text) of a refusal, whichever smtplib exception carried it."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()))
        return code, text.decode() if isinstance(text, bytes) else text
    text = exc.smtp_error
    return exc.smtp_code, text.decode() if isinstance(text, bytes) else text


def mime_message(
    sender, to, subject="SMTP test", text="Plain body.", html=None, headers=None
):
    from email.message import EmailMessage
    from email.utils import make_msgid

    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="tests.local")
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message
