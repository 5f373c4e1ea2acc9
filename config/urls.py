"""URL configuration: each app owns its URLs under one prefix."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from accounts.urls import people_urlpatterns
from config.api import api, unknown_address

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="projects:list"), name="home"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Sign-in lockouts (django-axes): the list and Unlock, for security admins.
    path("accounts/", include("accounts.urls")),
    # People (issue 15, item 8): users and the security-admin role.
    path("people/", include(people_urlpatterns)),
    path("admin/", admin.site.urls),
    path("integrations/", include("integrations.urls")),
    path("projects/", include("projects.urls")),
    path("notifications/", include("notifications.urls")),
    # Probes (/healthz, /readyz, /metrics) and the Operations page (issue 12).
    path("", include("operations.urls")),
    path("api/v1/", api.urls),
    # Any other address under /api/ (another version, a typo) is the API's JSON 404.
    re_path(r"^api/", unknown_address, name="api-unknown"),
]

# Errors raised outside a view (a middleware, a disallowed Host) are answered in
# JSON under /api/ and with Django's pages elsewhere.
handler400 = "config.api.handler400"
handler500 = "config.api.handler500"
