"""Database ids in URLs and query strings: bounded ASCII decimal integers.

`str.isdigit()` accepts "²" and "٣" (which `int()` then refuses or reads as 3),
`int()` refuses more than 4,300 digits, and a number past 64 bits makes SQLite answer
"datatype mismatch". So an id is 1 to 18 ASCII digits, which always fits a
BigAutoField, and anything else is simply not an id.
"""

import re

ID_PATTERN = "[0-9]{1,18}"
_ID = re.compile(ID_PATTERN)


def decimal_id(value: str | None) -> int | None:
    """`value` as an int when it is 1 to 18 ASCII digits, else None."""
    if value is None or not _ID.fullmatch(value):
        return None
    return int(value)


class IdConverter:
    """The `<id:...>` path converter: like `<int:...>`, but at most 18 digits."""

    regex = ID_PATTERN

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value) -> str:
        return str(value)
