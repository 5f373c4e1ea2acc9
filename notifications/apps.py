from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self):
        from integrations.signals import tool_ready
        from notifications.services.health_checks import tool_ready_received

        tool_ready.connect(tool_ready_received, dispatch_uid="notifications.tool_ready")
