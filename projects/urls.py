"""Project pages under /projects/ (namespace "projects")."""

from django.urls import include, path

from projects import views

app_name = "projects"

# `<id:...>`: a row id of at most 18 ASCII digits (projects/converters.py),
# registered in ProjectsConfig.ready() for this URLconf and notifications.project_urls.

urlpatterns = [
    path("", views.project_list, name="list"),
    path("<slug:slug>/", views.project_detail, name="detail"),
    path("<slug:slug>/scans/upload/", views.scan_upload, name="scan_upload"),
    path("<slug:slug>/scans/<id:scan_id>/", views.scan_detail, name="scan"),
    path(
        "<slug:slug>/findings/<id:finding_id>/",
        views.finding_detail,
        name="finding",
    ),
    path("<slug:slug>/settings/", views.project_settings, name="settings"),
    path("<slug:slug>/settings/members/", views.membership_add, name="member_add"),
    path(
        "<slug:slug>/settings/members/<id:membership_id>/remove/",
        views.membership_remove,
        name="member_remove",
    ),
    path("<slug:slug>/settings/tokens/", views.token_create, name="token_create"),
    path(
        "<slug:slug>/settings/tokens/<id:token_id>/revoke/",
        views.token_revoke,
        name="token_revoke",
    ),
    # From the notifications app, in this namespace: Project › Settings › Notification
    # Tools (/projects/<slug>/settings/notification-tools/, "notification_tools";
    # the settings page links to it whenever that address resolves) and the
    # project's delivery log (/projects/<slug>/deliveries/, "deliveries").
    path("<slug:slug>/", include("notifications.project_urls")),
]
