"""URL configuration: each app owns its URLs under one prefix."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from config.api import api

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="projects:list"), name="home"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("integrations/", include("integrations.urls")),
    path("projects/", include("projects.urls")),
    path("notifications/", include("notifications.urls")),
    path("api/v1/", api.urls),
]
