"""Trojan Source: bidirectional and invisible characters in a real-shaped SARIF file
are shown visibly (e.g. ⟨U+202E⟩) on pages and in emails, never rendered raw."""

from pathlib import Path

import pytest
from django.urls import reverse

from notifications.emails import email_for
from notifications.models import Delivery
from projects.models import Finding, ScanSource
from projects.services import scan_import

pytestmark = pytest.mark.django_db

TROJAN = (
    Path(__file__).resolve().parents[1] / "fixtures/sarif/cases/trojan-source.sarif"
)
HIDDEN = ("\u202e", "\u2066", "\u200b")


def test_hidden_characters_are_shown_visibly_on_pages_and_in_emails(
    client, project, owner, link, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        scan_import(project=project, sarif=TROJAN, source=ScanSource.COMMAND)
    finding = Finding.objects.filter(project=project).first()
    client.force_login(owner)
    pages = [
        client.get(reverse("projects:detail", args=[project.slug])),
        client.get(reverse("projects:finding", args=[project.slug, finding.pk])),
    ]
    emails = [email_for(d) for d in Delivery.objects.filter(project=project)]
    assert emails, "the import should have produced a notification"
    texts = [p.content.decode() for p in pages]
    texts += [part for e in emails for part in (e.subject, e.text, e.html)]
    for text in texts:
        assert not any(c in text for c in HIDDEN)
    assert all("⟨U+202E⟩" in text for text in texts[:2])
    assert any("⟨U+202E⟩" in e.text and "⟨U+202E⟩" in e.html for e in emails)
