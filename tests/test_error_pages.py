"""Error pages (templates/400.html, 403.html, 404.html, 500.html): in the product's
layout, saying what happened and where to go; the API keeps answering JSON."""

import pytest
from django.test import Client, RequestFactory
from django.views import defaults

pytestmark = pytest.mark.django_db


@pytest.fixture
def production(settings):
    """Django shows its technical pages for 404 and 500 while DEBUG is on."""
    settings.DEBUG = False


def assert_product_page(response, status, title):
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "M365 AppSec Mail" in html and "/static/css/app.css" in html
    assert title in html
    assert 'href="/projects/"' in html  # where to go
    return html


def test_an_unknown_address_is_the_styled_404(client, production, member):
    client.force_login(member)
    html = assert_product_page(client.get("/no/such/page/"), 404, "Page not found")
    assert "not yours to see" in html
    assert "Sign in" not in html.split("</header>")[1]  # already signed in


def test_a_project_one_may_not_see_is_the_same_404(
    client, production, member, other_project
):
    client.force_login(member)
    html = assert_product_page(client.get("/projects/payroll/"), 404, "Page not found")
    assert "Payroll" not in html


def test_the_404_offers_sign_in_to_an_anonymous_visitor(client, production):
    html = assert_product_page(client.get("/no/such/page/"), 404, "Page not found")
    assert 'href="/accounts/login/?next=/no/such/page/"' in html


def test_the_api_still_answers_404_in_json(client, production):
    response = client.get("/api/v1/no-such-endpoint")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_refused_change_is_the_styled_403_with_its_reason(client, member, project):
    client.force_login(member)
    response = client.post("/projects/shop/settings/tokens/", {"name": "ci"})
    html = assert_product_page(response, 403, "You may not do this")
    assert "Only project owners can change this." in html
    assert f"You are signed in as {member.username}" in html


def test_a_security_admin_page_says_who_may_use_it(client, member):
    client.force_login(member)
    response = client.get("/integrations/notification-tools/")
    html = assert_product_page(response, 403, "You may not do this")
    assert "Only security admins can see and use this page." in html


def test_members_are_added_by_security_admins_only(client, owner, project):
    client.force_login(owner)
    response = client.post(
        "/projects/shop/settings/members/", {"username": "mike", "role": "owner"}
    )
    html = assert_product_page(response, 403, "You may not do this")
    assert "Only security admins can add or remove project members." in html


def test_a_403_without_a_reason_has_no_empty_line(rf, member):
    request = rf.get("/")
    request.user = member
    response = defaults.permission_denied(request, PermissionError())
    html = response.content.decode()
    assert 'class="error-reason"' not in html and "You may not do this" in html


@pytest.mark.urls("tests.error_urls")
def test_a_server_error_is_the_styled_500_without_its_text(production):
    client = Client(raise_request_exception=False)
    html = assert_product_page(client.get("/boom/"), 500, "Something went wrong")
    assert "boom" not in html and "RuntimeError" not in html
    assert 'href="/accounts/login/"' in html


@pytest.mark.urls("tests.error_urls")
def test_a_server_error_under_the_api_is_json(production):
    client = Client(raise_request_exception=False)
    response = client.get("/api/v1/boom/")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "server_error"
    assert "boom" not in response.content.decode()


def test_the_500_renders_without_a_request_context():
    """Django renders 500.html with no context at all (no user, no request)."""
    response = defaults.server_error(RequestFactory().get("/"))
    html = assert_product_page(response, 500, "Something went wrong")
    assert "Sign out" not in html


def test_a_malformed_request_is_the_styled_400(client, production):
    response = client.get("/projects/", HTTP_HOST="not-allowed.example")
    html = assert_product_page(response, 400, "The request could not be understood")
    assert "not-allowed.example" not in html


def test_a_malformed_api_request_is_json(client, production):
    response = client.get("/api/v1/projects", HTTP_HOST="not-allowed.example")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_an_expired_form_is_the_styled_csrf_page(member):
    client = Client(enforce_csrf_checks=True)
    client.force_login(member)
    response = client.post("/projects/shop/settings/tokens/", {"name": "ci"})
    html = assert_product_page(response, 403, "The form could not be sent")
    assert "Reload the page" in html
