"""Django admin: security admins create projects and assign owners here too."""

from django.contrib import admin

from projects.models import ApiToken, Finding, Membership, Project, Scan


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Scan)
class ScanAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "project",
        "tool_name",
        "source",
        "created_at",
        "new_count",
        "seen_again_count",
        "resolved_count",
        "reopened_count",
    ]
    list_filter = ["source", "project"]
    readonly_fields = [f.name for f in Scan._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(Finding)
class FindingAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "project",
        "rule_id",
        "severity",
        "status",
        "path",
        "start_line",
    ]
    list_filter = ["severity", "status", "project"]
    search_fields = ["rule_id", "path", "fingerprint"]
    # Statuses change through the app or API, so that each change is recorded and
    # notified.
    readonly_fields = [f.name for f in Finding._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "project",
        "prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["project"]
    # The hash is never shown; tokens are created in the project's settings page.
    exclude = ["token_hash"]
    readonly_fields = [
        "project",
        "name",
        "prefix",
        "created_by",
        "created_at",
        "last_used_at",
    ]

    def has_add_permission(self, request):
        return False
