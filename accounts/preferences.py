"""Your settings: what a signed-in user chooses for themselves (the time zone times
are shown in). The form and the view of that one page."""

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from accounts.time_zones import (
    display_time,
    is_time_zone,
    time_zone_names,
    user_time_zone,
    user_time_zone_set,
)


class TimeZoneForm(forms.Form):
    time_zone = forms.ChoiceField(
        label=gettext_lazy("Time zone"),
        required=False,
        help_text=gettext_lazy(
            "Every date and time in this product is shown in this time zone."
        ),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        default = _("The server's (%(zone)s)") % {"zone": settings.TIME_ZONE}
        self.fields["time_zone"].choices = [("", default)] + [
            (name, name) for name in time_zone_names()
        ]
        self.fields["time_zone"].error_messages["invalid_choice"] = gettext_lazy(
            "Choose a time zone from the list (an IANA name such as Europe/Paris)."
        )

    def clean_time_zone(self):
        value = self.cleaned_data["time_zone"]
        if value and not is_time_zone(value):  # the list changed under the form
            raise forms.ValidationError(
                self.fields["time_zone"].error_messages["invalid_choice"]
            )
        return value


@login_required
@require_http_methods(["GET", "POST"])
def your_settings(request):
    status = 200
    if request.method == "POST":
        form = TimeZoneForm(request.POST)
        if form.is_valid():
            user_time_zone_set(
                user=request.user, time_zone=form.cleaned_data["time_zone"]
            )
            messages.success(request, _("Your settings are saved."))
            return redirect("accounts:settings")
        status = 400
    else:
        form = TimeZoneForm(initial={"time_zone": user_time_zone(request.user)})
    return TemplateResponse(
        request,
        "accounts/settings.html",
        {"form": form, "now": display_time(timezone.now())},
        status=status,
    )
