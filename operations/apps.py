"""The operations app: health, metrics, periodic work and the Operations page."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class OperationsConfig(AppConfig):
    name = "operations"
    verbose_name = _("Operations")

    def ready(self):
        # -- issue 12, item 7 (production engineer): request and task ids on log lines
        from config.logs import connect_signals

        connect_signals()
        # -- end request and task ids
