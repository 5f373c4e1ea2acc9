"""
Text from outside (provider error descriptions, an OAuth callback's query, a sender
name saved before the form checked it) made safe for a single line: a log line or a
mail header.
"""

import re

#: C0 and C1 control characters (CR, LF, TAB, NUL, ESC, ...).
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: Runs of control characters and of the Unicode line and paragraph separators.
_LINE_BREAKING_RUN = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def single_line(text, limit: int) -> str:
    """`text` on one line (each run of control characters, CR and LF included,
    made one space), at most `limit` characters: safe to log whoever wrote it."""
    text = _LINE_BREAKING_RUN.sub(" ", str(text or "")).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
