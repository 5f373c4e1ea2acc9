"""Django admin: read-only views. Secret fields are not editable fields at all, so
the admin never renders them; settings are changed in the product's drawer."""

from django.contrib import admin

from integrations.models import AuditEntry, Integration


@admin.register(Integration)
class IntegrationAdmin(admin.ModelAdmin):
    list_display = ["provider", "state", "updated_at", "updated_by"]
    fields = [
        "provider",
        "state",
        "config",
        "attention_code",
        "activated_at",
        "updated_at",
        "updated_by",
    ]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "actor_name",
        "action",
        "provider",
        "subject",
        "succeeded",
        "error_code",
    ]
    list_filter = ["action", "provider", "succeeded"]
    readonly_fields = [f.name for f in AuditEntry._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
