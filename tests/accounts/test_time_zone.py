"""Times in one format, in each user's time zone (issue 15, item 10): the format,
Your settings, the middleware that activates the zone, and the pages that use it."""

import datetime
import re
import zoneinfo

import pytest
from django.template import Context, Template
from django.urls import reverse
from django.utils import timezone

from accounts.models import Profile
from accounts.time_zones import display_time, time_html, user_time_zone_set
from integrations.models import AuditAction
from integrations.services.audit import audit_record

SETTINGS = "/accounts/settings/"
# 14:05:09 UTC on the first of December: winter in Paris (CET, +01:00).
MOMENT = datetime.datetime(2026, 12, 1, 14, 5, 9, tzinfo=datetime.UTC)


# --- the format ----------------------------------------------------------------------


def test_a_moment_is_written_with_minutes_and_the_zone():
    with timezone.override(datetime.UTC):
        assert display_time(MOMENT) == "2026-12-01 14:05 UTC"
        assert display_time(MOMENT, seconds=True) == "2026-12-01 14:05:09 UTC"


def test_the_active_zone_converts_it_and_names_itself():
    with timezone.override(zoneinfo.ZoneInfo("Europe/Paris")):
        assert display_time(MOMENT) == "2026-12-01 15:05 CET"
        assert display_time(MOMENT.replace(month=7)) == "2026-07-01 16:05 CEST"
    with timezone.override(zoneinfo.ZoneInfo("America/New_York")):
        assert display_time(MOMENT) == "2026-12-01 09:05 EST"


def test_a_zone_without_an_abbreviation_shows_its_offset():
    with timezone.override(zoneinfo.ZoneInfo("Asia/Dubai")):
        assert display_time(MOMENT) == "2026-12-01 18:05 UTC+04"


def test_the_html_carries_the_exact_moment_and_the_seconds():
    with timezone.override(zoneinfo.ZoneInfo("Europe/Paris")):
        rendered = time_html(MOMENT)
    assert rendered == (
        '<time datetime="2026-12-01T15:05:09+01:00" title="2026-12-01 15:05:09 CET">'
        "2026-12-01 15:05 CET</time>"
    )


def test_dates_iso_strings_and_nothing():
    assert time_html(datetime.date(2026, 12, 1)) == (
        '<time datetime="2026-12-01">2026-12-01</time>'
    )
    with timezone.override(datetime.UTC):
        assert display_time("2026-12-01T14:05:09+00:00") == "2026-12-01 14:05 UTC"
    assert display_time("2026-12-01") == "2026-12-01"
    assert time_html(None) == "" and time_html("") == ""
    assert time_html("not a time <b>") == ""


def test_the_filter_escapes_nothing_it_should_not_and_defaults_work():
    template = Template(
        '{% load times %}{{ value|when }}|{{ missing|when|default:"never" }}'
    )
    with timezone.override(datetime.UTC):
        out = template.render(Context({"value": MOMENT, "missing": None}))
    assert out.startswith('<time datetime="2026-12-01T14:05:09+00:00"')
    assert out.endswith("|never")


def test_no_template_uses_a_format_of_its_own():
    from pathlib import Path

    from django.conf import settings

    offenders = [
        str(path.relative_to(settings.BASE_DIR))
        for path in (settings.BASE_DIR / "templates").rglob("*.html")
        if "email" not in path.parts
        and re.search(r"\|\s*(date|time)\s*:", Path(path).read_text())
    ]
    assert offenders == []


# --- Your settings -------------------------------------------------------------------


@pytest.mark.django_db
def test_the_settings_page_offers_every_zone_and_the_server_s_first(
    client, member, settings
):
    settings.TIME_ZONE = "UTC"
    client.force_login(member)
    body = client.get(SETTINGS).content.decode()
    assert '<option value="" selected>The server&#x27;s (UTC)</option>' in body
    assert '<option value="Europe/Paris">Europe/Paris</option>' in body
    assert "Now: 20" in body and " UTC." in body


@pytest.mark.django_db
def test_a_user_chooses_a_zone_and_every_page_follows(client, member, security_admin):
    entry = audit_record(provider_key="", action=AuditAction.SIGN_IN_UNLOCKED)
    type(entry).objects.filter(pk=entry.pk).update(created_at=MOMENT)

    client.force_login(security_admin)
    response = client.post(SETTINGS, {"time_zone": "America/New_York"})
    assert response.status_code == 302 and response["Location"] == SETTINGS
    assert Profile.objects.get(user=security_admin).time_zone == "America/New_York"
    page = client.get(SETTINGS).content.decode()
    assert '<option value="America/New_York" selected>' in page

    log = client.get(reverse("integrations:audit_log")).content.decode()
    assert "2026-12-01 09:05 EST</time>" in log
    assert 'datetime="2026-12-01T09:05:09-05:00"' in log

    # Another user still sees the server's zone.
    client.force_login(member)
    user_time_zone_set(user=security_admin, time_zone="")
    client.force_login(security_admin)
    log = client.get(reverse("integrations:audit_log")).content.decode()
    assert "2026-12-01 14:05 UTC</time>" in log


@pytest.mark.django_db
def test_back_to_the_server_s_zone(client, member):
    user_time_zone_set(user=member, time_zone="Asia/Tokyo")
    client.force_login(member)
    assert client.post(SETTINGS, {"time_zone": ""}).status_code == 302
    assert Profile.objects.get(user=member).time_zone == ""


@pytest.mark.django_db
@pytest.mark.parametrize(
    "value",
    [
        "Mars/Olympus_Mons",
        "../../etc/passwd",
        "Europe/Paris\r\nSet-Cookie: x=y",
        "europe/paris",
        "<script>alert(1)</script>",
        "A" * 300,
        "UTC\x00",
    ],
)
def test_an_unknown_zone_is_refused_with_a_clear_error(client, member, value):
    client.force_login(member)
    response = client.post(SETTINGS, {"time_zone": value})
    assert response.status_code == 400
    body = response.content.decode()
    assert "Choose a time zone from the list" in body
    assert "<script>alert(1)</script>" not in body
    assert not Profile.objects.filter(user=member).exists()


def test_the_service_refuses_an_unknown_zone(db, member):
    with pytest.raises(ValueError):
        user_time_zone_set(user=member, time_zone="Nowhere/Land")


@pytest.mark.django_db
def test_signed_out_visitors_are_sent_to_sign_in(client):
    response = client.get(SETTINGS)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.django_db
def test_the_top_bar_links_to_your_settings(client, member):
    client.force_login(member)
    body = client.get(reverse("projects:list")).content.decode()
    assert f'href="{SETTINGS}"' in body


# --- the middleware -------------------------------------------------------------------


@pytest.mark.django_db
def test_the_zone_is_active_only_during_the_user_s_request(client, member, rf):
    from accounts.middleware import TimeZoneMiddleware

    user_time_zone_set(user=member, time_zone="Asia/Tokyo")
    seen = {}

    def view(request):
        seen["zone"] = timezone.get_current_timezone_name()
        return None

    request = rf.get("/")
    request.user = member
    TimeZoneMiddleware(view)(request)
    assert seen["zone"] == "Asia/Tokyo"
    assert timezone.get_current_timezone_name() == "UTC"

    from django.contrib.auth.models import AnonymousUser

    request.user = AnonymousUser()
    TimeZoneMiddleware(view)(request)
    assert seen["zone"] == "UTC"


@pytest.mark.django_db
def test_a_stored_zone_this_server_no_longer_knows_falls_back(member, rf):
    from accounts.middleware import TimeZoneMiddleware

    Profile.objects.create(user=member, time_zone="Gone/Away")
    seen = {}

    def view(request):
        seen["zone"] = timezone.get_current_timezone_name()

    request = rf.get("/")
    request.user = member
    TimeZoneMiddleware(view)(request)
    assert seen["zone"] == "UTC"
