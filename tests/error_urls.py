"""The product's URLs plus views that fail, for tests/test_error_pages.py."""

from django.urls import path

from config.urls import handler400, handler500
from config.urls import urlpatterns as product_urlpatterns


def fail(request):
    raise RuntimeError("boom: a bug, never shown")


urlpatterns = [
    path("boom/", fail),
    # Before the product's catch-all under /api/, so it reaches this view.
    path("api/v1/boom/", fail),
    *product_urlpatterns,
]

__all__ = ["handler400", "handler500", "urlpatterns"]
