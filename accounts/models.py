"""Rows of the accounts app: what a person chose for themselves."""

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Profile(models.Model):
    """A user's own settings (Your settings). No row: every default applies."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile"
    )
    #: An IANA time zone name ("Europe/Paris") times are shown in; blank: the
    #: server's TIME_ZONE.
    time_zone = models.CharField(_("time zone"), max_length=64, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"Profile of {self.user}"
