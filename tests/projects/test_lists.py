"""The project pages' lists and forms as people read them (issue 15, item 10): the
upload help's command as code, times in one format, compact filter bars."""

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from projects.services import api_token_create, scan_import
from tests.projects.sarif_documents import sarif_bytes, sarif_result

pytestmark = pytest.mark.django_db

TIME = r'<time datetime="[^"]+" title="[^"]+">\d{4}-\d\d-\d\d \d\d:\d\d UTC</time>'


def test_the_upload_help_shows_the_command_as_code(client, project, owner):
    client.force_login(owner)
    body = client.get(reverse("projects:detail", args=[project.slug])).content.decode()
    assert "e.g. from <code>bandit -r . -f sarif</code>." in body
    assert "`" not in body


def test_scans_findings_and_tokens_show_times_one_way(client, project, owner):
    scan = scan_import(
        project=project, sarif=sarif_bytes([sarif_result()]), source="api"
    )
    api_token_create(project=project, name="CI", actor=owner)
    finding = project.findings.get()
    client.force_login(owner)

    detail = client.get(reverse("projects:detail", args=[project.slug]))
    assert re.search(
        rf'<td class="when"><a href="[^"]+">{TIME}</a>', detail.content.decode()
    )

    scan_page = client.get(reverse("projects:scan", args=[project.slug, scan.pk]))
    assert re.search(rf"Uploaded {TIME}", scan_page.content.decode())

    finding_page = client.get(
        reverse("projects:finding", args=[project.slug, finding.pk])
    ).content.decode()
    assert re.search(rf"scan #{scan.pk}, {TIME}", finding_page)

    settings_page = client.get(
        reverse("projects:settings", args=[project.slug])
    ).content.decode()
    assert re.search(rf"{TIME} by olivia", settings_page)
    assert "never" in settings_page  # never used
    # No date in Django's default format ("Dec. 1, 2026, 2:05 p.m.") is left.
    for body in (detail.content.decode(), finding_page, settings_page):
        assert not re.search(r"\b(a|p)\.m\.", body)


def test_a_token_s_reason_uses_the_same_format(project, owner):
    from django.utils import timezone

    from projects.access import api_token_state

    token, _raw = api_token_create(project=project, name="CI", actor=owner)
    token.revoked_at = timezone.now()
    state = api_token_state(token=token)
    assert re.fullmatch(r"Revoked \d{4}-\d\d-\d\d \d\d:\d\d UTC\.", str(state.reason))


def test_filter_bars_are_as_wide_as_their_fields():
    css = Path(settings.BASE_DIR, "static/css/app.css").read_text()
    rules = dict(re.findall(r"([^{}]+)\{([^}]*)\}", css))
    fields = next(v for k, v in rules.items() if ".filters select" in k)
    assert "width: auto" in fields
    labels = next(v for k, v in rules.items() if k.strip() == ".filters label")
    assert "inline" in labels
