from django.urls import path

from integrations import views

app_name = "integrations"

urlpatterns = [
    path("notification-tools/", views.notification_tools, name="notification_tools"),
    # Before <slug:key>/, which would take "health-recipients" for a tool's key.
    path(
        "notification-tools/health-recipients/",
        views.tool_health_recipients,
        name="health_recipients",
    ),
    path("notification-tools/<slug:key>/", views.tool_settings, name="tool"),
    path("notification-tools/<slug:key>/test/", views.tool_test, name="test"),
    path(
        "notification-tools/<slug:key>/deactivate/",
        views.tool_deactivate,
        name="deactivate",
    ),
    path(
        "notification-tools/<slug:key>/validate/", views.tool_validate, name="validate"
    ),
    path("notification-tools/<slug:key>/save/", views.tool_save, name="save"),
    path(
        "notification-tools/<slug:key>/authorize/",
        views.tool_authorize,
        name="authorize",
    ),
    path("oauth/callback/", views.oauth_callback, name="oauth_callback"),
    path("audit-log/", views.audit_log, name="audit_log"),
]
