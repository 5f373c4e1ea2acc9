"""Every template's text goes through gettext, so `makemessages` finds it.

`makemessages` runs on a copy of `templates/` in a temporary directory, so the
repository is never written. It needs GNU gettext (`xgettext`), which `bin/test`
installs.
"""

import contextlib
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.template.loader import render_to_string
from django.test import override_settings
from django.utils import translation

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
TEMPLATES = sorted(
    path.relative_to(TEMPLATES_DIR).as_posix()
    for path in TEMPLATES_DIR.rglob("*")
    if path.is_file() and path.suffix in {".html", ".txt"}
)

#: Templates with no words a person reads (only markup around other templates).
NO_TEXT = {"projects/_head.html"}

#: Text that stays as it is in every language: the product's name.
UNTRANSLATED = ("M365 AppSec Mail",)

#: Attributes whose values are read out or shown to a person.
TEXT_ATTRIBUTES = {"aria-label", "title", "placeholder", "alt", "aria-description"}


# -- makemessages -------------------------------------------------------------

_PO_ESCAPES = {"n": "\n", "t": "\t"}


def _parse_po(text: str) -> dict[str, dict]:
    """msgid -> {"plural": msgid_plural or None, "files": {template path, ...}}."""

    def unquote(lines):
        return "".join(
            re.sub(r"\\(.)", lambda m: _PO_ESCAPES.get(m[1], m[1]), line.strip()[1:-1])
            for line in lines
        )

    entries = {}
    for block in text.split("\n\n"):
        files, fields, key = set(), {}, None
        for line in block.splitlines():
            if line.startswith("#: "):
                files.update(ref.rsplit(":", 1)[0] for ref in line[3:].split())
            elif line.startswith(("msgid ", "msgid_plural ", "msgstr")):
                key, _, rest = line.partition(" ")
                fields[key] = [rest]
            elif line.startswith('"') and key:
                fields[key].append(line)
        if "msgid" in fields and unquote(fields["msgid"]):
            plural = fields.get("msgid_plural")
            entries[unquote(fields["msgid"])] = {
                "plural": unquote(plural) if plural else None,
                "files": {f.removeprefix("./") for f in files},
            }
    return entries


@pytest.fixture(scope="module")
def locale_dir(tmp_path_factory):
    """A `locale/` with `xx/LC_MESSAGES/django.po` made from a copy of templates/."""
    if shutil.which("xgettext") is None:
        pytest.fail(
            "GNU gettext is not installed: makemessages needs xgettext. "
            "Install it with `apt-get install gettext` (bin/test does this).",
            pytrace=False,
        )
    root = tmp_path_factory.mktemp("makemessages")
    shutil.copytree(TEMPLATES_DIR, root / "templates")
    locale = root / "locale"
    locale.mkdir()
    with contextlib.chdir(root), override_settings(LOCALE_PATHS=[str(locale)]):
        call_command(
            "makemessages",
            locale=["xx"],
            extensions=["html", "txt"],
            no_wrap=True,
            verbosity=0,
        )
    return locale


@pytest.fixture(scope="module")
def catalog(locale_dir):
    po = locale_dir / "xx" / "LC_MESSAGES" / "django.po"
    return _parse_po(po.read_text(encoding="utf-8"))


@pytest.mark.parametrize("template", sorted(set(TEMPLATES) - NO_TEXT))
def test_every_template_has_strings_in_the_catalog(catalog, template):
    referenced = set().union(*(entry["files"] for entry in catalog.values()))
    assert f"templates/{template}" in referenced


@pytest.mark.parametrize(
    ("msgid", "template"),
    [
        ("Security notifications", "base.html"),
        ("Notification Tools", "integrations/notification_tools.html"),
        ("Test Connection", "integrations/notification_tools.html"),
        ("Connection successful", "integrations/notification_tools.html"),
        ("Save &amp; Authorize", "integrations/includes/smtp_actions.html"),
        (
            "A value is saved. Leave blank to keep it.",
            "integrations/includes/field.html",
        ),
        ("Send test notification", "notifications/project_tools.html"),
        ("Unlink %(name)s", "notifications/project_tools.html"),
        ("(no default recipients)", "notifications/project_tools.html"),
        ("Severity", "notifications/email/_section.html"),
        ("See all findings", "notifications/email/_section.html"),
        (
            "This is a test notification for %(name)s. If you can read it, "
            "vulnerability notifications for this project will reach you.",
            "notifications/email/_section.txt",
        ),
        ("Project: %(name)s — %(project_url)s", "notifications/email/message.txt"),
        ("Notification settings: %(settings_url)s", "notifications/email/message.txt"),
        (
            "You receive this because %(name)s sends notifications here.",
            "notifications/email/message.html",
        ),
        ("Upload a scan", "projects/_upload_form.html"),
        ("Sign in", "registration/login.html"),
    ],
)
def test_known_strings_are_extracted(catalog, msgid, template):
    assert msgid in catalog
    assert f"templates/{template}" in catalog[msgid]["files"]


@pytest.mark.parametrize(
    ("msgid", "plural"),
    [
        ("…and %(more)s more: %(project_url)s", "…and %(more)s more: %(project_url)s"),
        (
            "Page %(number)s of %(num_pages)s (%(total)s finding)",
            "Page %(number)s of %(num_pages)s (%(total)s findings)",
        ),
    ],
)
def test_counts_are_extracted_with_plural_forms(catalog, msgid, plural):
    assert catalog[msgid]["plural"] == plural


def test_a_translated_catalog_is_used_by_the_email(locale_dir, tmp_path):
    """The wiring works end to end: fill in two strings, compile, render in "xx"."""
    locale = tmp_path / "locale"
    shutil.copytree(locale_dir, locale)
    po = locale / "xx" / "LC_MESSAGES" / "django.po"
    text = po.read_text(encoding="utf-8").replace(
        "nplurals=INTEGER; plural=EXPRESSION;", "nplurals=2; plural=(n != 1);"
    )
    for msgid, msgstr in [
        ("This is one digest for the scan, instead of one email per event.", "DIGEST"),
        ("Project: %(name)s — %(project_url)s", "PROJECT %(name)s %(project_url)s"),
    ]:
        entry = f'msgid "{msgid}"\nmsgstr ""'
        assert entry in text
        text = text.replace(entry, f'msgid "{msgid}"\nmsgstr "{msgstr}"')
    po.write_text(text, encoding="utf-8")
    with override_settings(LOCALE_PATHS=[str(locale)]):
        with contextlib.chdir(tmp_path):
            call_command("compilemessages", locale=["xx"], verbosity=0)
        context = {
            "subject": "Subject",
            "project": SimpleNamespace(name="Shop"),
            "project_url": "https://example.test/p",
            "settings_url": "https://example.test/s",
            "sections": [],
            "is_digest": True,
        }
        with translation.override("xx"):
            text = render_to_string("notifications/email/message.txt", context)
    assert text == (
        "Subject\n\n--\nDIGEST\nPROJECT Shop https://example.test/p\n"
        "Notification settings: https://example.test/s\n\n"
    )


# -- no raw text left in templates -----------------------------------------------

_COMMENT = re.compile(r"{%\s*comment\b.*?%}.*?{%\s*endcomment\s*%}|{#.*?#}", re.S)
_BLOCKTRANSLATE = re.compile(
    r"{%\s*blocktrans(?:late)?\b.*?%}.*?{%\s*endblocktrans(?:late)?\s*%}", re.S
)
_TRANSLATE = re.compile(r"{%\s*trans(?:late)?\s.*?%}", re.S)
_TAG = re.compile(r"{%.*?%}|{{.*?}}", re.S)
# A literal shown to the user as a filter argument: `|default:"none"`, not `_("none")`.
_RAW_LITERAL_ARGUMENT = re.compile(
    r"\|\s*default(?:_if_none)?\s*:\s*[\"'][^\"']*[A-Za-z]"
)
_WORD = re.compile(r"[^\W\d_]{2,}")


class _TextCollector(HTMLParser):
    """Text nodes (outside <script> and <style>) and readable attribute values."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.texts, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in {"script", "style"}:
            self._skip += 1
        self.texts.extend(v for k, v in attrs if k in TEXT_ATTRIBUTES and v)

    def handle_endtag(self, tag):
        if tag in {"script", "style"} and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.texts.append(data)


def untranslated_words(source: str, *, html: bool) -> list[str]:
    """Words a person would read that no translate tag covers."""
    source = _COMMENT.sub(" ", source)
    raw_literals = _RAW_LITERAL_ARGUMENT.findall(source)
    source = _BLOCKTRANSLATE.sub(" ", source)
    source = _TRANSLATE.sub(" ", source)
    source = _TAG.sub(" ", source)
    if html:
        parser = _TextCollector()
        parser.feed(source)
        parser.close()
        text = "\n".join(parser.texts)
    else:
        text = source
    for phrase in UNTRANSLATED:
        text = text.replace(phrase, "")
    return raw_literals + _WORD.findall(text)


def test_the_untranslated_text_check_finds_raw_text():
    source = (
        '{% load i18n %}<h1>{% translate "Fine" %}</h1><p title="Raw title">Raw text'
        "{% blocktranslate %}Fine {{ x }}{% endblocktranslate %}</p>"
        '{{ x|default:"raw default" }}{{ y|default:_("fine") }}'
        '<td class="words-in-class">{{ value }}</td><script>let code;</script>'
    )
    assert untranslated_words(source, html=True) == [
        '|default:"raw default',
        "Raw",
        "title",
        "Raw",
        "text",
    ]


@pytest.mark.parametrize("template", TEMPLATES)
def test_templates_have_no_untranslated_text(template):
    source = (TEMPLATES_DIR / template).read_text(encoding="utf-8")
    assert untranslated_words(source, html=template.endswith(".html")) == []
