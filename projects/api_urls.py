"""The HTTP API, mounted at /api/v1/. See projects/openapi.json."""

from django.urls import path, re_path

from projects import api

app_name = "api"

urlpatterns = [
    path("openapi.json", api.openapi, name="openapi"),
    path("projects/<slug:slug>/scans", api.scans, name="scans"),
    path("projects/<slug:slug>/findings", api.findings, name="findings"),
    # Any string, so that an id that is not one gets the API's JSON 404.
    path("projects/<slug:slug>/findings/<str:finding_id>", api.finding, name="finding"),
    re_path(r"", api.unknown_address, name="unknown_address"),
]
