"""Django admin: security admins create projects and assign owners here too."""

from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from projects import services
from projects.models import ApiToken, Finding, Membership, Project, Scan


class MembershipInlineForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ["user", "role"]

    def clean(self):
        """What membership_set refuses, as a form error rather than a 500."""
        cleaned = super().clean()
        user = cleaned.get("user")
        if user and not user.is_active and self.has_changed():
            if not cleaned.get("DELETE"):
                self.add_error(
                    "user",
                    _("%(user)s is deactivated and cannot join a project.")
                    % {"user": user.get_username()},
                )
        return cleaned


class MembershipInline(admin.TabularInline):
    model = Membership
    form = MembershipInlineForm
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def save_formset(self, request, form, formset, change):
        """Memberships change through the services, so that each change is audited
        (and tokens follow: projects.access.api_token_state)."""
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        project = form.instance
        for inline in formset.forms:
            if not inline.has_changed() or not inline.cleaned_data:
                continue
            before = inline.instance if inline.instance.pk else None
            if before is not None:
                # The row as stored, not as the form left it.
                before = Membership.objects.select_related("user").get(pk=before.pk)
            if inline in formset.deleted_forms:
                if before is not None:
                    services.membership_remove(
                        project=project, user=before.user, actor=request.user
                    )
                continue
            user, role = inline.cleaned_data["user"], inline.cleaned_data["role"]
            if before is not None and before.user_id != user.pk:
                services.membership_remove(
                    project=project, user=before.user, actor=request.user
                )
            services.membership_set(
                project=project, user=user, role=role, actor=request.user
            )
        formset.new_objects = formset.changed_objects = formset.deleted_objects = []


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
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = ["project"]
    # The hash is never shown; tokens are created in the project's settings page.
    exclude = ["token_hash"]
    # Revoked through the action, so that it is audited; never un-revoked.
    readonly_fields = [
        "project",
        "name",
        "prefix",
        "created_by",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    @admin.action(description=_("Revoke the selected tokens"))
    def revoke(self, request, queryset):
        for token in queryset.select_related("project"):
            services.api_token_revoke(token=token, actor=request.user)
