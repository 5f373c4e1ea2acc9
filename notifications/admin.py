"""Read-only admin for events and deliveries; tool links are managed in the app."""

from django.contrib import admin

from notifications.models import Delivery, Event, ToolLink


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "uuid",
        "project",
        "integration",
        "status",
        "attempts",
        "error_code",
        "created_at",
        "sent_at",
    )
    list_filter = ("status", "integration__provider")
    search_fields = ("uuid", "subject", "request_id", "project__slug")
    date_hierarchy = "created_at"
    list_select_related = ("project", "integration")


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("kind", "project", "scan", "created_at")
    list_filter = ("kind",)
    list_select_related = ("project", "scan")


@admin.register(ToolLink)
class ToolLinkAdmin(ReadOnlyAdmin):
    list_display = ("project", "integration", "enabled", "delivery_mode")
    list_select_related = ("project", "integration")
