"""The sign-in and consent page at /{tenant}/oauth2/v2.0/authorize.

https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-auth-code-flow#request-an-authorization-code
"""

import html
from urllib.parse import urlencode

from aiohttp import web

from sandbox import scopes
from sandbox.errors import AADError
from sandbox.keys import CTX

# The query parameters carried from the page's GET to its POST.
CARRIED = (
    "client_id",
    "response_type",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "response_mode",
    "prompt",
    "login_hint",
    "client_info",
    "claims",
    "domain_hint",
)

STYLE = """
body{font-family:"Segoe UI",system-ui,sans-serif;background:#f2f2f2;margin:0}
main{background:#fff;max-width:440px;margin:8vh auto;padding:44px;
box-shadow:0 2px 6px rgba(0,0,0,.2)}
h1{font-size:24px;font-weight:600;margin:0 0 16px}
label{display:block;margin:12px 0 4px}
input[type=text],input[type=password]{width:100%;padding:6px;box-sizing:border-box;
border:0;border-bottom:1px solid #666;font-size:15px}
.error{color:#e81123;margin:12px 0}
.buttons{margin-top:24px;display:flex;flex-direction:row-reverse;gap:8px}
button{min-width:108px;padding:6px 12px;font-size:15px;border:0;cursor:pointer}
button[value=accept]{background:#0067b8;color:#fff}
small{color:#666}
"""


def _page(title: str, body: str, status: int = 200) -> web.Response:
    document = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width'><title>{title}</title>"
        f"<style>{STYLE}</style></head><body><main>{body}</main></body></html>"
    )
    return web.Response(text=document, status=status, content_type="text/html")


def error_page(error: AADError) -> web.Response:
    body = (
        "<h1>Sign in</h1><p>Sorry, but we're having trouble signing you in.</p>"
        f"<p class=error>AADSTS{error.code}: {html.escape(error.description)}</p>"
    )
    return _page("Sign in to your account", body, status=400)


def redirect(params: dict, answer: dict) -> web.Response:
    """Send ``answer`` to the redirect URI in the requested response mode."""
    uri = params["redirect_uri"]
    if params.get("state") is not None:
        answer["state"] = params["state"]
    mode = params.get("response_mode") or "query"
    if mode == "form_post":
        fields = "".join(
            f"<input type=hidden name='{html.escape(k)}' value='{html.escape(v)}'>"
            for k, v in answer.items()
        )
        document = (
            "<!doctype html><html><head><title>Working...</title></head>"
            "<body onload='document.forms[0].submit()'>"
            f"<form method=POST action='{html.escape(uri)}'>{fields}"
            "<noscript><button type=submit>Continue</button></noscript>"
            "</form></body></html>"
        )
        return web.Response(text=document, content_type="text/html")
    separator = "#" if mode == "fragment" else ("&" if "?" in uri else "?")
    raise web.HTTPFound(uri + separator + urlencode(answer))


def error_redirect(params: dict, error: AADError, error_name=None) -> web.Response:
    return redirect(
        params,
        {
            "error": error_name or error.error,
            "error_description": f"AADSTS{error.code}: {error.description}",
            "error_uri": f"https://login.microsoftonline.com/error?code={error.code}",
        },
    )


async def authorize(request: web.Request) -> web.Response:
    """GET shows the page; POST (the page's form) signs in and answers."""
    ctx = request.app[CTX]
    params = dict(request.query)
    form = {}
    if request.method == "POST":
        form = dict(await request.post())
        params.update({k: v for k, v in form.items() if k in CARRIED})
    try:
        tenant = ctx.state.tenant(request.match_info["tenant"])
        if tenant is None:
            raise AADError(90002, tenant=request.match_info["tenant"])
        client_id = params.get("client_id")
        if not client_id:
            raise AADError(900144, field="client_id")
        app = ctx.state.app(tenant, client_id)
        if app is None:
            raise AADError(
                700016, client_id=client_id, tenant=request.match_info["tenant"]
            )
        redirect_uri = params.get("redirect_uri")
        if not redirect_uri or redirect_uri not in app.redirect_uris:
            raise AADError(50011, redirect_uri=redirect_uri, client_id=client_id)
    except AADError as error:
        return error_page(error)

    if params.get("response_type") != "code":
        return redirect(
            params,
            {
                "error": "unsupported_response_type",
                "error_description": "AADSTS700054: response_type "
                f"'{params.get('response_type')}' is not enabled for the application.",
            },
        )
    method = params.get("code_challenge_method") or "plain"
    if params.get("code_challenge") and method not in ("S256", "plain"):
        error = AADError(900144, field="code_challenge_method")
        return error_redirect(params, error)
    try:
        requested = scopes.parse(params.get("scope"))
    except AADError as error:
        return error_redirect(params, error)

    if request.method == "GET":
        if params.get("prompt") == "none":  # the sandbox keeps no sign-in session
            return redirect(
                params,
                {
                    "error": "login_required",
                    "error_description": "AADSTS50058: A silent sign-in request was "
                    "sent but no user is signed in.",
                },
            )
        return sign_in_page(tenant, app, params, requested)
    if form.get("action") != "accept":
        return redirect(
            params,
            {
                "error": "access_denied",
                "error_description": "AADSTS65004: User declined to consent to "
                "access the app.",
            },
        )
    user = ctx.state.user(tenant, form.get("username", "").strip())
    password = form.get("password", "")
    if user is None or user.password is None or user.password != password:
        error = AADError(50126)
        return sign_in_page(tenant, app, params, requested, error=error)
    if not user.account_enabled:
        # Entra ID says so on its page and never redirects for it.
        return sign_in_page(tenant, app, params, requested, error=AADError(50057))
    try:
        scopes.delegated_scopes(requested, app)
    except AADError as error:
        return error_redirect(params, error, "consent_required")
    code = ctx.state.new_code(
        {
            "tenant_id": tenant.tenant_id,
            "client_id": app.client_id,
            "redirect_uri": redirect_uri,
            "scope": requested.raw,
            "user": user.user_principal_name.lower(),
            "nonce": params.get("nonce"),
            "code_challenge": params.get("code_challenge"),
            "code_challenge_method": method,
            # The sandbox has no second factor: an interactive sign-in counts as
            # MFA done when the user needs it.
            "mfa": user.mfa_required,
        }
    )
    return redirect(params, {"code": code})


def sign_in_page(tenant, app, params, requested, error=None) -> web.Response:
    hidden = "".join(
        f"<input type=hidden name={name} value='{html.escape(params[name])}'>"
        for name in CARRIED
        if params.get(name) is not None
    )
    if requested.default:
        wanted = ["All permissions granted to the app"]
    else:
        wanted = scopes.full_names(requested.audience, requested.permissions)
    wanted += requested.oidc
    permissions = "".join(f"<li>{html.escape(p)}</li>" for p in wanted)
    message = ""
    if error is not None:
        headline = (
            "Your account has been locked. Contact your support person to unlock "
            "it, then try again."
            if error.code == 50057
            else "Your account or password is incorrect."
        )
        message = (
            f"<p class=error role=alert>{headline} "
            f"<small>AADSTS{error.code}: {html.escape(error.description)}</small></p>"
        )
    username = html.escape(params.get("login_hint") or "")
    body = f"""
<h1>Sign in</h1>
<p><b>{html.escape(app.display_name)}</b> wants to sign you in to
<b>{html.escape(tenant.domains[0] if tenant.domains else tenant.tenant_id)}</b>
and asks for these permissions:</p>
<ul>{permissions}</ul>
{message}
<form method=POST>
{hidden}
<label for=username>User name</label>
<input type=text id=username name=username value='{username}' autocomplete=username>
<label for=password>Password</label>
<input type=password id=password name=password autocomplete=current-password>
<div class=buttons>
<button type=submit name=action value=accept>Accept</button>
<button type=submit name=action value=cancel>Cancel</button>
</div>
</form>
<p><small>Microsoft 365 sandbox: not a real Microsoft sign-in.</small></p>
"""
    return _page("Sign in to your account", body)
