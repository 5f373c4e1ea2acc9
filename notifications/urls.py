"""Global notification pages under /notifications/ (namespace "notifications")."""

from django.urls import path

from notifications import views

app_name = "notifications"

urlpatterns = [
    path("deliveries/", views.all_deliveries, name="deliveries"),
    path("deliveries/<uuid:delivery_uuid>/", views.delivery_message, name="delivery"),
    path(
        "deliveries/<uuid:delivery_uuid>/resend/",
        views.delivery_resend,
        name="delivery_resend",
    ),
]
