"""Who gets what, on every route: a matrix generated from the URLconf.

Every named route (pages, the admin, and every API operation, found by walking
`get_resolver()`), requested with GET and POST (and PATCH where the API takes it) by
every role, each request in its own transaction that is rolled back, so no request
sees another's changes and the order of roles or tests does not matter. The answer's
class is compared with EXPECTED below. A route without an entry fails, naming it and
showing what each role gets today: check every cell is what that role should get,
then add the entry.

POSTs carry no body: an action (revoke, remove, deactivate) runs for whoever may
do it, and is rolled back; a form is answered with its errors.
"""

from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from notifications.models import Delivery, ToolLink
from projects.models import Membership
from projects.services import api_token_create, scan_import
from tests.projects.sarif_documents import sarif_bytes, sarif_result
from tests.tools import activate_azure_mail

ROLES = (
    "anonymous",
    "user",  # signed in, in no project
    "member",  # a member of "shop"
    "other_owner",  # the owner of another project
    "owner",  # the owner of "shop"
    "admin",  # a security admin (not a member of "shop", not staff)
    "token",  # no session, a "shop" API token (created by its owner)
    "other_token",  # no session, another project's API token
)

# Answer classes: "ok" 2xx; "redirect" 3xx to anywhere but a sign-in page; "login" 3xx
# to the sign-in page (the product's or the admin's); else the status code: "400"
# (form errors or a refused action), "401", "403", "404", "405", ...
#
# Each method's row lists the classes in ROLES order. The rules they follow: a project
# page is a 404 for whoever is not in the project (its existence is not revealed), a
# 403 for a member trying to change something; security-admin pages are a 403 for
# every other signed-in user; the API takes tokens only (a session is a 401) and
# another project's token gets a 404; a token opens no page.
EXPECTED: dict[str, dict[str, str]] = {
    "admin:login": {
        "GET": "ok ok ok ok ok ok ok ok",
        "POST": "ok ok ok ok ok ok ok ok",
    },
    # Non-staff are sent to the admin's index (and from there to its sign-in).
    "admin:logout": {
        "GET": "redirect redirect redirect redirect redirect redirect redirect redirect",
        "POST": "redirect redirect redirect redirect redirect redirect redirect redirect",
    },
    "accounts:lockouts": {
        "GET": "login 403 403 403 403 ok login login",
        "POST": "405 405 405 405 405 405 405 405",
    },
    # Your settings (issue 15, item 10): every signed-in user's own; an empty POST
    # is a valid form (the server's time zone) and is saved.
    "accounts:settings": {
        "GET": "login ok ok ok ok ok login login",
        "POST": "login redirect redirect redirect redirect redirect login login",
    },
    "accounts:unlock": {
        "GET": "405 405 405 405 405 405 405 405",
        "POST": "login 403 403 403 403 400 login login",
    },
    # The set-password link of a new user (People): open to whoever holds a valid
    # link, whoever is signed in; without one (as here), the page says it is not valid.
    "accounts:set_password": {
        "GET": "400 400 400 400 400 400 400 400",
        "POST": "400 400 400 400 400 400 400 400",
    },
    "api-unknown": {
        "GET": "404 404 404 404 404 404 404 404",
        "POST": "404 404 404 404 404 404 404 404",
    },
    "api:api-root": {
        "GET": "404 404 404 404 404 404 404 404",
        "POST": "404 404 404 404 404 404 404 404",
    },
    "api:finding": {
        "GET": "401 401 401 401 401 401 ok 404",
        "POST": "405 405 405 405 405 405 405 405",
    },
    "api:finding_status_change": {
        "GET": "401 401 401 401 401 401 ok 404",
        "POST": "405 405 405 405 405 405 405 405",
        # No body: the token's own project is told what to send.
        "PATCH": "401 401 401 401 401 401 400 404",
    },
    "api:findings": {
        "GET": "401 401 401 401 401 401 ok 404",
        "POST": "405 405 405 405 405 405 405 405",
    },
    "api:openapi": {
        "GET": "ok ok ok ok ok ok ok ok",
        "POST": "405 405 405 405 405 405 405 405",
    },
    "api:openapi-json": {
        "GET": "ok ok ok ok ok ok ok ok",
        "POST": "405 405 405 405 405 405 405 405",
    },
    "api:scan": {
        "GET": "401 401 401 401 401 401 ok 404",
        "POST": "405 405 405 405 405 405 405 405",
    },
    "api:scans": {
        "GET": "405 405 405 405 405 405 405 405",
        "POST": "401 401 401 401 401 401 400 404",
    },
    "api:unknown_address": {
        "GET": "404 404 404 404 404 404 404 404",
        "POST": "404 404 404 404 404 404 404 404",
    },
    "home": {
        "GET": "redirect redirect redirect redirect redirect redirect redirect redirect",
        "POST": "redirect redirect redirect redirect redirect redirect redirect redirect",
    },
    "integrations:audit_log": {
        "GET": "login 403 403 403 403 ok login login",
        "POST": "405 405 405 405 405 405 405 405",
    },
    "integrations:authorize": {
        "GET": "405 405 405 405 405 405 405 405",
        "POST": "login 403 403 403 403 400 login login",
    },
    "integrations:health_recipients": {
        # POST only: the form lives on the Notification Tools page.
        "GET": "405 405 405 405 405 405 405 405",
        "POST": "login 403 403 403 403 redirect login login",
    },
    "integrations:deactivate": {
        # GET: the confirmation page (for browsers without JavaScript).
        "GET": "login 403 403 403 403 ok login login",
        "POST": "login 403 403 403 403 redirect login login",
    },
    "integrations:notification_tools": {
        "GET": "login 403 403 403 403 ok login login",
        "POST": "405 405 405 405 405 405 405 405",
    },
    "integrations:oauth_callback": {
        "GET": "login 403 403 403 403 400 login login",
        "POST": "405 405 405 405 405 405 405 405",
    },
    "integrations:save": {
        "GET": "405 405 405 405 405 405 405 405",
        "POST": "login 403 403 403 403 400 login login",
    },
    "integrations:test": {
        "GET": "405 405 405 405 405 405 405 405",
        "POST": "login 403 403 403 403 400 login login",
    },
    "integrations:tool": {
        "GET": "login 403 403 403 403 ok login login",
        "POST": "login 403 403 403 403 400 login login",
    },
    "integrations:validate": {
        "GET": "405 405 405 405 405 405 405 405",
        "POST": "login 403 403 403 403 400 login login",
    },
    "login": {
        "GET": "ok redirect redirect redirect redirect redirect ok ok",
        "POST": "ok redirect redirect redirect redirect redirect ok ok",
    },
    "logout": {
        "GET": "405 405 405 405 405 405 405 405",
        "POST": "login login login login login login login login",
    },
    "notifications:deliveries": {
        "GET": "login 403 403 403 403 ok login login",
        "POST": "login 403 403 403 403 405 login login",
    },
    # A delivery's message as sent (issue 15, item 10), as the log.
    "notifications:delivery": {
        "GET": "login 403 403 403 403 ok login login",
        "POST": "login 403 403 403 403 405 login login",
    },
    "notifications:delivery_resend": {
        "GET": "login 403 403 403 403 405 login login",
        "POST": "login 403 403 403 403 redirect login login",
    },
    # Probes (issue 12): /healthz answers anyone; /readyz answers loopback (the test
    # client) whoever it is, 503 here since no task worker has been seen.
    "operations:healthz": {
        "GET": "ok ok ok ok ok ok ok ok",
        "POST": "405 405 405 405 405 405 405 405",
    },
    "operations:readyz": {
        "GET": "503 503 503 503 503 503 503 503",
        "POST": "405 405 405 405 405 405 405 405",
    },
    "operations:overview": {
        "GET": "login 403 403 403 403 ok login login",
        "POST": "login 403 403 403 403 405 login login",
    },
    # Prometheus (issue 12): off (404) unless METRICS_TOKEN is set; with it, only that
    # bearer token opens it, never a session or a project's API token
    # (tests/operations/test_metrics.py).
    "operations:metrics": {
        "GET": "404 404 404 404 404 404 404 404",
        "POST": "404 404 404 404 404 404 404 404",
    },
    # People (issue 15, item 8): security admins only; the user-name search (the
    # member field's suggestions) for security admins and project owners. POSTs with
    # no body: the action runs on ursula for the admin (rolled back); a new link is
    # for a user with no password yet.
    "people:list": {
        "GET": "login 403 403 403 403 ok login login",
        "POST": "405 405 405 405 405 405 405 405",
    },
    "people:create": {
        "GET": "405 405 405 405 405 405 405 405",
        "POST": "login 403 403 403 403 400 login login",
    },
    "people:search": {
        "GET": "login 403 403 ok ok ok login login",
        "POST": "405 405 405 405 405 405 405 405",
    },
    "people:deactivate": {
        "GET": "405 405 405 405 405 405 405 405",
        "POST": "login 403 403 403 403 redirect login login",
    },
    "people:reactivate": {
        "GET": "405 405 405 405 405 405 405 405",
        "POST": "login 403 403 403 403 redirect login login",
    },
    "people:role_grant": {
        "GET": "405 405 405 405 405 405 405 405",
        "POST": "login 403 403 403 403 redirect login login",
    },
    "people:role_remove": {
        "GET": "405 405 405 405 405 405 405 405",
        "POST": "login 403 403 403 403 redirect login login",
    },
    "people:password_link": {
        "GET": "405 405 405 405 405 405 405 405",
        "POST": "login 403 403 403 403 ok login login",
    },
    "projects:deliveries": {
        "GET": "login 404 ok 404 ok ok login login",
        "POST": "login 404 405 404 405 405 login login",
    },
    "projects:delivery": {
        "GET": "login 404 ok 404 ok ok login login",
        "POST": "login 404 405 404 405 405 login login",
    },
    "projects:delivery_resend": {
        "GET": "login 404 405 404 405 405 login login",
        "POST": "login 404 403 404 redirect redirect login login",
    },
    "projects:detail": {
        "GET": "login 404 ok 404 ok ok login login",
        "POST": "405 405 405 405 405 405 405 405",
    },
    "projects:finding": {
        "GET": "login 404 ok 404 ok ok login login",
        "POST": "login 404 403 404 400 400 login login",
    },
    "projects:list": {
        "GET": "login ok ok ok ok ok login login",
        "POST": "login 403 403 403 403 ok login login",
    },
    "projects:member_add": {
        "GET": "405 405 405 405 405 405 405 405",
        "POST": "login 404 403 404 403 400 login login",
    },
    "projects:member_remove": {
        "GET": "405 405 405 405 405 405 405 405",
        "POST": "login 404 403 404 403 redirect login login",
    },
    "projects:notification_tool_link": {
        "GET": "login 404 403 404 405 405 login login",
        "POST": "login 404 403 404 redirect redirect login login",
    },
    "projects:notification_tool_bounce_clear": {
        "GET": "login 404 403 404 405 405 login login",
        "POST": "login 404 403 404 redirect redirect login login",
    },
    "projects:notification_tool_test": {
        "GET": "login 404 403 404 405 405 login login",
        "POST": "login 404 403 404 redirect redirect login login",
    },
    "projects:notification_tool_unlink": {
        "GET": "login 404 403 404 405 405 login login",
        "POST": "login 404 403 404 redirect redirect login login",
    },
    "projects:notification_tool_update": {
        "GET": "login 404 403 404 405 405 login login",
        "POST": "login 404 403 404 400 400 login login",
    },
    "projects:notification_tools": {
        "GET": "login 404 ok 404 ok ok login login",
        "POST": "login 404 405 404 405 405 login login",
    },
    "projects:scan": {
        "GET": "login 404 ok 404 ok ok login login",
        "POST": "405 405 405 405 405 405 405 405",
    },
    "projects:scan_upload": {
        "GET": "405 405 405 405 405 405 405 405",
        "POST": "login 404 403 404 400 400 login login",
    },
    "projects:settings": {
        "GET": "login 404 ok 404 ok ok login login",
        "POST": "405 405 405 405 405 405 405 405",
    },
    "projects:token_create": {
        "GET": "405 405 405 405 405 405 405 405",
        "POST": "login 404 403 404 400 400 login login",
    },
    "projects:token_revoke": {
        "GET": "405 405 405 405 405 405 405 405",
        "POST": "login 404 403 404 redirect redirect login login",
    },
}

# The admin is for staff only, and none of the roles is staff: every admin page
# sends them to the admin's sign-in. New ModelAdmins are covered by this rule; the
# admin's own sign-in and helper pages are listed in EXPECTED.
ADMIN_DEFAULT = {
    "GET": "login login login login login login login login",
    "POST": "login login login login login login login login",
}

#: Unnamed routes are allowed only in Django's admin, which adds them itself (its
#: catch-all, and a redirect from each object's old address to its change page).
UNNAMED_ALLOWED_UNDER = "admin/"


def _walk(resolver, prefix="", namespace=(), converters=()):
    for pattern in resolver.url_patterns:
        route = prefix + str(pattern.pattern)
        names = tuple(pattern.pattern.regex.groupindex)
        if isinstance(pattern, URLResolver):
            ns = namespace + ((pattern.namespace,) if pattern.namespace else ())
            yield from _walk(pattern, route, ns, converters + names)
        elif isinstance(pattern, URLPattern):
            name = ":".join((*namespace, pattern.name)) if pattern.name else None
            yield name, route, converters + names


def all_routes() -> list[tuple[str | None, str, tuple]]:
    return list(_walk(get_resolver()))


def named_routes() -> dict[str, tuple[str, tuple]]:
    routes = {}
    for name, route, kwargs in all_routes():
        if name is not None:
            routes.setdefault(name, (route, kwargs))
    return routes


ROUTES = named_routes()


def expected_for(name: str) -> dict[str, str] | None:
    if name in EXPECTED:
        return EXPECTED[name]
    if name.startswith("admin:"):
        return ADMIN_DEFAULT
    return None


# -- the world every route is requested in ---------------------------------------------


@pytest.fixture
def world(sandbox, project, owner, member, outsider, other_project, security_admin):
    """Users in every role and one object of each kind a URL can name."""
    cache.clear()  # rate limits count per user id, which a fresh database reuses
    plain = User.objects.create_user("ursula", password="pw-ursula-123456")
    # Created on the People page, no password set yet (its set-password link).
    newcomer = User.objects.create_user("nina", "nina@contoso.com")
    scan = scan_import(
        project=project,
        sarif=sarif_bytes([sarif_result("B602")]),
        source="api",
        actor=owner,
    )
    tool = activate_azure_mail(sandbox.seed)
    link = ToolLink.objects.create(
        project=project,
        integration=tool,
        notify_new_vulnerabilities=True,
        minimum_severity="info",
    )
    # A second import with a new result: an event, and its delivery through the link.
    scan = scan_import(
        project=project,
        sarif=sarif_bytes([sarif_result("B602"), sarif_result("B105", line=3)]),
        source="api",
        actor=owner,
    )
    delivery = Delivery.objects.filter(project=project).first()
    assert delivery is not None, "the world needs a delivery to name"
    token, raw_token = api_token_create(project=project, name="CI", actor=owner)
    _other, raw_other_token = api_token_create(
        project=other_project, name="CI", actor=outsider
    )
    finding = project.findings.order_by("pk").first()
    values = {
        "slug": project.slug,
        "scan_id": scan.pk,
        "finding_id": finding.pk,
        "membership_id": Membership.objects.get(project=project, user=member).pk,
        "token_id": token.pk,
        "key": tool.provider,
        "integration_id": tool.pk,
        "link_id": link.pk,
        "delivery_uuid": delivery.uuid,
        "user_id": plain.pk,
        # The admin's: any id (no role gets past the admin's sign-in).
        "object_id": "1",
        "app_label": "projects",
        "content_type_id": 1,
    }
    # The API's `{id}`: the object its route is about.
    per_route = {
        "api:scan": {"id": scan.pk},
        "api:finding": {"id": finding.pk},
        "api:finding_status_change": {"id": finding.pk},
        "admin:auth_user_password_change": {"id": owner.pk},
        "people:password_link": {"user_id": newcomer.pk},
    }
    return {
        "users": {
            "user": plain,
            "member": member,
            "other_owner": outsider,
            "owner": owner,
            "admin": security_admin,
        },
        "tokens": {"token": raw_token, "other_token": raw_other_token},
        "values": values,
        "per_route": per_route,
    }


def url_for(name: str, world) -> str:
    _route, kwarg_names = ROUTES[name]
    values = {**world["values"], **world["per_route"].get(name, {})}
    missing = [k for k in kwarg_names if k not in values]
    assert not missing, (
        f"No value for URL argument(s) {missing} of route {name!r}: add a real "
        "object for it to the `world` fixture in tests/security/test_rbac_matrix.py."
    )
    return reverse(name, kwargs={k: values[k] for k in kwarg_names})


SIGN_IN_PATHS = ("/accounts/login/", "/admin/login/")


def answer_class(response) -> str:
    status = response.status_code
    if 200 <= status < 300:
        return "ok"
    if 300 <= status < 400:
        path = urlsplit(response["Location"]).path
        return "login" if path in SIGN_IN_PATHS else "redirect"
    return str(status)


def request_as(world, role: str, method: str, url: str):
    """One request, in a transaction rolled back afterwards."""
    with transaction.atomic():
        client = Client()
        headers = {}
        if role in world["users"]:
            client.force_login(world["users"][role])
        elif role in world["tokens"]:
            headers["HTTP_AUTHORIZATION"] = f"Bearer {world['tokens'][role]}"
        response = getattr(client, method.lower())(url, **headers)
        transaction.set_rollback(True)
    return response


def observed_row(world, name: str, methods) -> dict[str, str]:
    url = url_for(name, world)
    return {
        method: " ".join(
            answer_class(request_as(world, role, method, url)) for role in ROLES
        )
        for method in methods
    }


def _as_entry(name, row) -> str:
    lines = [f'    "{name}": {{']
    lines += [f'        "{method}": "{classes}",' for method, classes in row.items()]
    return "\n".join([*lines, "    },"])


# -- the tests ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(ROUTES))
def test_route_answers_every_role_as_expected(world, name):
    expected = expected_for(name)
    if expected is None:
        pytest.fail(
            f"Route {name!r} ({ROUTES[name][0]}) has no entry in EXPECTED "
            "(tests/security/test_rbac_matrix.py). Today it answers (roles: "
            f"{', '.join(ROLES)}):\n{_as_entry(name, observed_row(world, name, ('GET', 'POST')))}\n"
            "Check that every cell is what that role should get, then add it."
        )
    assert {"GET", "POST"} <= set(expected), f"{name}: GET and POST are required"
    observed = observed_row(world, name, expected)
    wrong = {
        method: [
            f"{role}: expected {want}, got {got}"
            for role, want, got in zip(
                ROLES, expected[method].split(), observed[method].split(), strict=True
            )
            if want != got
        ]
        for method in expected
    }
    wrong = {method: cells for method, cells in wrong.items() if cells}
    assert not wrong, f"{name} ({url_for(name, world)}): {wrong}"


def test_every_route_outside_the_admin_is_named():
    unnamed = [
        route
        for name, route, _kwargs in all_routes()
        if name is None and not route.startswith(UNNAMED_ALLOWED_UNDER)
    ]
    assert not unnamed, (
        f"Routes without a name escape the RBAC matrix: {unnamed}. Name them."
    )


def test_every_expected_entry_is_a_route():
    stale = sorted(set(EXPECTED) - set(ROUTES))
    assert not stale, f"EXPECTED lists routes that no longer exist: {stale}"


def test_every_row_names_each_role_once():
    for name, entry in EXPECTED.items():
        for method, classes in entry.items():
            assert len(classes.split()) == len(ROLES), (name, method)
