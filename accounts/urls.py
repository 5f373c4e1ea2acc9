from django.urls import path

from accounts import views

app_name = "accounts"

urlpatterns = [
    path("lockouts/", views.lockouts, name="lockouts"),
    path("lockouts/unlock/", views.unlock, name="unlock"),
]
