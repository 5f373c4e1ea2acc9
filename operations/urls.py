"""Probes at the root (/healthz, /readyz), and the Operations page."""

from django.urls import path

from operations import views
from operations.metrics import metrics_view  # issue 12, item 4

app_name = "operations"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("operations/", views.overview, name="overview"),
    # Prometheus (operations/metrics.py): off unless METRICS_TOKEN is set.
    path("metrics", metrics_view, name="metrics"),
]
