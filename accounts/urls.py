from django.urls import path

from accounts import preferences, views

app_name = "accounts"

urlpatterns = [
    path("lockouts/", views.lockouts, name="lockouts"),
    path("lockouts/unlock/", views.unlock, name="unlock"),
    # Your settings: the time zone times are shown in (issue 15, item 10).
    path("settings/", preferences.your_settings, name="settings"),
    # The link a new user gets from the People page; open to anyone holding it.
    path("set-password/", views.set_password, name="set_password"),
]

# The People page of security admins, under /people/ (config/urls.py), in the
# "people" namespace.
people_urlpatterns = (
    [
        path("", views.people, name="list"),
        path("create/", views.person_create, name="create"),
        path("search/", views.people_search, name="search"),
        path(
            "<int:user_id>/deactivate/",
            views.person_deactivate,
            name="deactivate",
        ),
        path(
            "<int:user_id>/reactivate/",
            views.person_reactivate,
            name="reactivate",
        ),
        path("<int:user_id>/grant-admin/", views.role_grant, name="role_grant"),
        path("<int:user_id>/remove-admin/", views.role_remove, name="role_remove"),
        path(
            "<int:user_id>/password-link/",
            views.password_link_create,
            name="password_link",
        ),
    ],
    "people",
)
