"""Project pages of the notifications app, included under /projects/<slug>/ by
projects/urls.py, so they share the "projects" namespace. The `<id:...>` converter
used here (a row id of at most 18 ASCII digits) is registered by the projects app
(ProjectsConfig.ready)."""

from django.urls import path

from notifications import views

urlpatterns = [
    path(
        "settings/notification-tools/",
        views.notification_tools,
        name="notification_tools",
    ),
    path(
        "settings/notification-tools/link/<id:integration_id>/",
        views.link_create,
        name="notification_tool_link",
    ),
    path(
        "settings/notification-tools/<id:link_id>/",
        views.link_update,
        name="notification_tool_update",
    ),
    path(
        "settings/notification-tools/<id:link_id>/unlink/",
        views.link_delete,
        name="notification_tool_unlink",
    ),
    path(
        "settings/notification-tools/<id:link_id>/test/",
        views.link_test,
        name="notification_tool_test",
    ),
    path(
        "settings/notification-tools/<id:link_id>/bounces/clear/",
        views.bounced_recipient_clear,
        name="notification_tool_bounce_clear",
    ),
    path("deliveries/", views.project_deliveries, name="deliveries"),
    path(
        "deliveries/<uuid:delivery_uuid>/",
        views.project_delivery_message,
        name="delivery",
    ),
    path(
        "deliveries/<uuid:delivery_uuid>/resend/",
        views.project_delivery_resend,
        name="delivery_resend",
    ),
]
