"""Text read from SARIF files, made safe to store and show.

`visible()` is applied at parse time to every string a SARIF result contributes
(message, rule name, path, snippet, tool name, category), so what is stored and
rendered is already safe: a bidirectional override or a zero-width space in a scanner's
message (the "Trojan Source" trick, CVE-2021-42574) shows up as a marker such as
`⟨U+202E⟩` instead of silently reordering or hiding the code a reviewer reads.

Also here: SARIF's message syntax (§3.11.5 placeholders, §3.11.6 embedded links).
"""

import re
import unicodedata

# Invisible characters that Unicode does not class as format or control characters:
# the Hangul fillers render as blank space and are a known way to fake identifiers.
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")
# Unicode categories replaced by a marker: control (C0, C1), format (bidi controls,
# zero-width characters, word joiner, BOM, soft hyphen, tags), surrogate, and the line
# and paragraph separators (which break a line without looking like a line break).
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Anything but printable ASCII: the only characters that need a closer look.
_CANDIDATE = re.compile(r"[^\x20-\x7e]")


def _marker(char: str) -> str:
    return f"⟨U+{ord(char):04X}⟩"


def _single_line(match: re.Match) -> str:
    char = match.group()
    if char in _INVISIBLE_LETTERS or unicodedata.category(char) in _HIDDEN_CATEGORIES:
        return _marker(char)
    return char


def _multi_line(match: re.Match) -> str:
    char = match.group()
    if char == "\n" or char == "\t":
        return char
    return _single_line(match)


def visible(text: str, *, multiline: bool = False) -> str:
    """`text` with every invisible or direction-changing character shown as `⟨U+XXXX⟩`.

    Replaced: C0 and C1 control characters (NUL, ESC, CR, ...), Unicode format
    characters (the bidirectional controls U+202A-U+202E, U+2066-U+2069, U+200E,
    U+200F, U+061C; U+200B-U+200D, U+2060, U+FEFF, U+00AD, tags, ...), lone
    surrogates, U+2028/U+2029 and the Hangul filler letters. With `multiline`, newline
    and tab are kept and CRLF or a lone CR becomes a newline. Visible text in any
    script, emoji included, is unchanged. Idempotent: the markers are plain text.
    """
    if _CANDIDATE.search(text) is None:
        return text
    if multiline:
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        return _CANDIDATE.sub(_multi_line, text)
    return _CANDIDATE.sub(_single_line, text)


def clip(text: str, limit: int) -> str:
    """`text`, cut to at most `limit` characters with an ellipsis when it is longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# §3.11.5: "{0}" takes arguments[0]; "{{" and "}}" are literal braces. The index is
# bounded so that a hostile "{99999...}" is never turned into a huge int.
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{(\d{1,6})\}")


def message_fill(template: str, arguments: list[str]) -> str:
    """The message string `template` with its `{n}` placeholders filled in (§3.11.5).

    A placeholder without an argument is left as written.
    """

    def fill(match: re.Match) -> str:
        index = match.group(1)
        if index is None:
            return match.group()[0]
        index = int(index)
        return arguments[index] if index < len(arguments) else match.group()

    return _PLACEHOLDER.sub(fill, template)


# §3.11.6: "[link text](target)", where the link text may hold escaped brackets and the
# target is a relatedLocations id or a URI. The alternatives cannot both match one
# character, so the pattern runs in linear time.
_LINK = re.compile(r"(?<!\\)\[((?:\\.|[^\\\]])*)\]\(([^()]*)\)")
_ESCAPED_BRACKET = re.compile(r"\\([\[\]])")


def message_links(text: str, related) -> str:
    """Plain-text `text` with its embedded links rendered for reading (§3.11.6).

    `[text](3)` becomes "text (path:line)" when `related(3)` gives that location,
    else just "text"; a link to a URI becomes its text. Escaped brackets `\\[` and
    `\\]` become plain brackets.
    """
    if "[" not in text and "]" not in text:
        return text

    def render(match: re.Match) -> str:
        label = _ESCAPED_BRACKET.sub(r"\1", match.group(1))
        target = match.group(2).strip()
        numeric = target.isascii() and target.isdigit() and len(target) < 10
        where = related(int(target)) if numeric else ""
        return f"{label} ({where})" if where else label

    parts = []
    position = 0
    for match in _LINK.finditer(text):
        parts.append(_ESCAPED_BRACKET.sub(r"\1", text[position : match.start()]))
        parts.append(render(match))
        position = match.end()
    parts.append(_ESCAPED_BRACKET.sub(r"\1", text[position:]))
    return "".join(parts)
