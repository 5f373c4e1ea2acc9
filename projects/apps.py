from django.apps import AppConfig
from django.urls import register_converter

from projects.converters import IdConverter


class ProjectsConfig(AppConfig):
    name = "projects"
    verbose_name = "Projects"

    def ready(self):
        # `<id:...>`: a row id of at most 18 ASCII digits, in the URLconfs of this
        # app and of notifications (its project pages). Registered once, before
        # any URLconf is imported.
        register_converter(IdConverter, "id")
