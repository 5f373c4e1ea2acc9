"""visible() and SARIF's message syntax, on their own."""

import pytest

from projects.sarif import visible
from projects.sarif_text import clip, message_fill, message_links


@pytest.mark.parametrize(
    "char",
    [
        "\u202a",
        "\u202b",
        "\u202c",
        "\u202d",
        "\u202e",  # the bidirectional embeddings and overrides
        "\u2066",
        "\u2067",
        "\u2068",
        "\u2069",  # the isolates
        "\u200e",
        "\u200f",
        "\u061c",  # the marks
        "\u200b",
        "\u200c",
        "\u200d",
        "\u2060",
        "\ufeff",  # zero-width and joiners
        "\u00ad",
        "\U000e0041",  # soft hyphen, a tag character
        "\x00",
        "\x1b",
        "\x7f",
        "\x85",
        "\x9b",  # C0 and C1 controls
        "\u2028",
        "\u2029",
        "\u3164",
        "\ud800",
    ],
)
def test_invisible_and_bidirectional_characters_become_markers(char):
    marker = f"⟨U+{ord(char):04X}⟩"
    assert visible(f"a{char}b") == f"a{marker}b"
    assert visible(f"a{char}b", multiline=True) == f"a{marker}b"


def test_newline_and_tab_are_kept_only_in_multi_line_text():
    assert visible("a\nb\tc") == "a⟨U+000A⟩b⟨U+0009⟩c"
    assert visible("a\nb\tc", multiline=True) == "a\nb\tc"
    assert visible("a\r\nb\rc", multiline=True) == "a\nb\nc"
    assert visible("a\r\nb") == "a⟨U+000D⟩⟨U+000A⟩b"


def test_visible_text_in_any_script_is_unchanged():
    for text in ("plain ASCII ~!@#", "café", "中文", "עברית", "العربية", "😀 👍🏽", ""):
        assert visible(text) == text


def test_visible_is_idempotent():
    once = visible("x\u202ey\x00")
    assert visible(once) == once


def test_clip_cuts_with_an_ellipsis():
    assert clip("abcdef", 10) == "abcdef"
    assert clip("abcdef", 4) == "abc…"


def test_message_placeholders():
    assert message_fill("{0} and {1}", ["a", "b"]) == "a and b"
    assert message_fill("{{0}} is {0}", ["x"]) == "{0} is x"
    assert message_fill("{1} {5}", ["a", "b"]) == "b {5}"
    assert message_fill("{99999999999999999999}", ["a"]) == "{99999999999999999999}"


def test_message_links():
    def related(location_id):
        return {1: "src/a.py:3"}.get(location_id, "")

    assert message_links("See [this](1).", related) == "See this (src/a.py:3)."
    assert message_links("See [this](2).", related) == "See this."
    assert message_links("See [docs](https://x.test/a).", related) == "See docs."
    assert message_links(r"a \[b\] [c \[d\]](1)", related) == "a [b] c [d] (src/a.py:3)"
    assert message_links("no links", related) == "no links"
    assert message_links("[unclosed(1)", related) == "[unclosed(1)"


def test_message_links_take_linear_time_on_hostile_text():
    text = "[" + "\\[" * 50_000 + "](x"
    assert message_links(text, lambda _id: "").startswith("[")
