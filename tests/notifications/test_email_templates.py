"""The email templates' Jinja2 engine gives the bytes the Django template language
gave (tests/notifications/reference_templates/), for hostile values too, and speaks
Django's translation tags."""

from types import SimpleNamespace

import jinja2
import pytest
from django.template import TemplateDoesNotExist, engines
from django.template.loader import get_template, render_to_string
from django.utils import translation

from notifications.emails import HTML_TEMPLATE, TEXT_TEMPLATE, FindingLine, Section
from notifications.models import EventKind
from tests.notifications.email_reference import render_to_string as reference

HOSTILE = "<b>\"q\" & 'a' %(name)s %% {{ x }} {% if %}</b>"
#: "e" and a combining acute accent: NFC makes them one character.
DECOMPOSED = "cafe\u0301"


def _findings(n: int) -> list[FindingLine]:
    return [
        FindingLine(
            rule=f"R{i}{HOSTILE}",
            rule_name=f"name {i}{HOSTILE}" if i % 2 else "",
            severity="high",
            severity_label="High",
            location=f"src/{i}.py:{i}{HOSTILE}",
            message=[
                "",
                f"short {DECOMPOSED} {HOSTILE}",
                "x" * 200,
                "y" * 201,
                DECOMPOSED * 60,
                "z" * 299 + "\u0301",
            ][i % 6],
            url=f'https://appsec.example/p/findings/{i}/?a=1&b="2"',
            change=f"Open → Fixed{HOSTILE}" if i % 3 else "",
        )
        for i in range(n)
    ]


def _contexts():
    sections = [
        Section(
            kind=kind,
            title=f"3 things{HOSTILE}",
            counts=[("high", "High", 3), ("low", f"Low{HOSTILE}", 1)],
            total=4,
            findings=_findings(12),
            more=more,
            facts=[(f"New{HOSTILE}", 3), ("Tool", f"scanner{HOSTILE}")],
            top_severity=top,
        )
        for kind in EventKind.values
        for more, top in [(0, "critical"), (1, ""), (7, "info"), (2, "low")]
    ]
    for is_digest in (False, True):
        for first in range(0, len(sections), 3):
            yield {
                "subject": f"[High] subject {HOSTILE}",
                "project": SimpleNamespace(name=f"Shop & Co {HOSTILE}"),
                "project_url": "https://appsec.example/p/?a=1&b=2",
                "settings_url": "https://appsec.example/p/settings/",
                "sections": sections[first : first + 3],
                "is_digest": is_digest,
            }
    yield {"subject": "", "project": None, "sections": [], "is_digest": False}


@pytest.mark.parametrize("name", [TEXT_TEMPLATE, HTML_TEMPLATE])
def test_jinja2_renders_the_same_bytes_as_the_django_templates_did(name):
    template = get_template(name)
    assert template.backend.name == "email"
    checked = 0
    for context in _contexts():
        assert template.render(context) == reference(name, context)
        checked += 1
    assert checked > 10


def test_values_are_escaped_in_html_and_not_in_text():
    context = next(_contexts())

    html = render_to_string(HTML_TEMPLATE, context)
    text = render_to_string(TEXT_TEMPLATE, context)

    assert HOSTILE not in html
    assert "&lt;b&gt;&quot;q&quot; &amp; &#x27;a&#x27; %(name)s %% {{ x }}" in html
    assert "Shop &amp; Co &lt;b&gt;" in html
    assert f"Shop & Co {HOSTILE}" in text
    assert "&amp;" not in text.replace("?a=1&b=2", "")


def test_translations_use_the_active_language_and_keep_values_escaped():
    context = next(_contexts())
    context["is_digest"] = True
    with translation.override("en"):
        english = render_to_string(HTML_TEMPLATE, context)
    assert "This is one digest for the scan, instead of one email per event." in (
        english
    )
    assert "You receive this because Shop &amp; Co &lt;b&gt;" in english
    assert "Change the project's notification settings" in english  # not escaped


def test_the_engine_answers_only_for_the_email_templates():
    email = engines["email"]
    with pytest.raises(TemplateDoesNotExist):
        email.get_template("base.html")
    # Other names go on to Django's engine.
    assert get_template("base.html").backend.name == "django"


@pytest.mark.parametrize(
    "source",
    [
        "{% blocktranslate trimmed %}x{% endblocktranslate %}",
        "{% blocktranslate with %}x{% endblocktranslate %}",
        "{% blocktranslate %}{{ a.b }}{% endblocktranslate %}",
        "{% blocktranslate %}{% if x %}{% endif %}{% endblocktranslate %}",
        "{% blocktranslate %}x{% plural %}y{% endblocktranslate %}",
        "{% blocktranslate count n=1 %}x{% endblocktranslate %}",
        "{% blocktranslate %}never closed",
        "{% translate name %}",
    ],
)
def test_what_the_translation_tags_do_not_support_is_a_syntax_error(source):
    with pytest.raises(jinja2.TemplateSyntaxError):
        engines["email"].from_string(source)


def test_blocktranslate_counts_and_formats_like_django():
    template = engines["email"].from_string(
        "{% load i18n %}{% blocktranslate count n=items|length %}{{ n }} item of"
        " {{ who }}{% plural %}{{ n }} items of {{ who }}{% endblocktranslate %}"
        " {% translate '100% sure' %}"
    )
    assert template.render({"items": [1], "who": "<a>"}) == (
        "1 item of &lt;a&gt; 100% sure"
    )
    assert template.render({"items": [1, 2], "who": "b"}) == "2 items of b 100% sure"
