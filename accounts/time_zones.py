"""Times as people read them: one format everywhere, in each user's own time zone.

A user picks a time zone on Your settings (`Profile.time_zone`; blank: the server's
TIME_ZONE). `TimeZoneMiddleware` activates it for each request, and every page
writes a moment with `{% load times %}{{ value|when }}` (`time_html`), or, inside a
sentence built in Python, with `display_time`: "2026-12-01 14:05 UTC".
"""

import datetime
import zoneinfo
from functools import cache

from django.conf import settings
from django.db import transaction
from django.utils import dateformat, timezone
from django.utils.html import format_html

from accounts.models import Profile

#: What a moment looks like on every page: date, minutes, and the zone.
DISPLAY_FORMAT = "Y-m-d H:i"
#: The same with seconds, in the tooltip.
DETAIL_FORMAT = "Y-m-d H:i:s"
DATE_FORMAT = "Y-m-d"


@cache
def time_zone_names() -> tuple[str, ...]:
    """Every IANA time zone name this server knows, sorted ("UTC" included)."""
    return tuple(sorted(zoneinfo.available_timezones() | {"UTC"}))


def is_time_zone(name: str) -> bool:
    return name in time_zone_names()


def user_time_zone(user) -> str:
    """The time zone `user` chose, or "" for the server's (TIME_ZONE)."""
    if not getattr(user, "is_authenticated", False):
        return ""
    return (
        Profile.objects.filter(user_id=user.pk)
        .values_list("time_zone", flat=True)
        .first()
        or ""
    )


@transaction.atomic
def user_time_zone_set(*, user, time_zone: str) -> Profile:
    """Store `user`'s time zone ("" for the server's). ValueError for an unknown one."""
    if time_zone and not is_time_zone(time_zone):
        raise ValueError(f"unknown time zone {time_zone!r}")
    profile, _created = Profile.objects.update_or_create(
        user=user, defaults={"time_zone": time_zone}
    )
    return profile


def activate_for(user) -> None:
    """Make `user`'s time zone the current one (the server's when none is set)."""
    name = user_time_zone(user)
    if name and is_time_zone(name):
        timezone.activate(zoneinfo.ZoneInfo(name))
    else:
        timezone.deactivate()


def _zone_name(moment: datetime.datetime) -> str:
    """The zone's abbreviation ("UTC", "CET", "EST"); "UTC+03" where the zone has
    only an offset for one."""
    name = moment.tzname() or ""
    if name[:1] in "+-" and name:
        return f"UTC{name}"
    return name


def _parse(value):
    """A datetime or date from a model field, or from an ISO string stored in JSON."""
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value
    if isinstance(value, str) and value.strip():
        text = value.strip()
        # "2026-12-01" is a date (datetime.fromisoformat would make it midnight).
        parse = datetime.date if len(text) == 10 else datetime.datetime
        try:
            return parse.fromisoformat(text)
        except ValueError:
            return None
    return None


def _local(moment: datetime.datetime) -> datetime.datetime:
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_default_timezone())
    return timezone.localtime(moment)


def display_time(value, *, seconds: bool = False) -> str:
    """`value` as text in the current time zone: "2026-12-01 14:05 UTC" (a date
    alone: "2026-12-01"); "" for None or a value that is not a time."""
    moment = _parse(value)
    if moment is None:
        return ""
    if not isinstance(moment, datetime.datetime):
        return dateformat.format(moment, DATE_FORMAT)
    local = _local(moment)
    text = dateformat.format(local, DETAIL_FORMAT if seconds else DISPLAY_FORMAT)
    return f"{text} {_zone_name(local)}"


def time_html(value) -> str:
    """`<time datetime="ISO 8601" title="with seconds">2026-12-01 14:05 UTC</time>`;
    "" for None (so that `|default:` can say "never")."""
    moment = _parse(value)
    if moment is None:
        return ""
    if not isinstance(moment, datetime.datetime):
        return format_html(
            '<time datetime="{}">{}</time>', moment.isoformat(), display_time(moment)
        )
    local = _local(moment)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        local.isoformat(timespec="seconds"),
        display_time(local, seconds=True),
        display_time(local),
    )


def server_time_zone() -> str:
    return settings.TIME_ZONE
