"""Streaming the JSON of a SARIF file with ijson, in bounded memory.

The file is read twice. The first pass (`scan`) walks ijson's parse events: it builds
the small parts of each run (tool, invocations, base ids, ...), counts each run's
results, checks the type of every result property the reader uses against a table
(cheaply, without building the results), and notes the absolute `file:` URIs. The
second pass (`results`) lets ijson's C backend build one result object at a time.
A SARIF file may put `tool` after `results` (Semgrep, Ruff do), so one pass is not
enough; the first one is kept cheap instead.

Every failure becomes a SarifError that says where and what to fix. Limits keep hostile
files cheap: nesting depth (`MAX_DEPTH`), JSON path length (`MAX_PATH_CHARS`; ijson
builds a path string per container, so unbounded key lengths would cost quadratic
time) and numbers: integers wider than 64 bits are read only after checking that no
number has more than 4,300 digits, because ijson 3.6's C backend crashes the process
(segmentation fault) on such an integer, which Python refuses to convert.
"""

import io
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field

import ijson
from django.utils.translation import gettext as _
from ijson.common import ObjectBuilder

from projects.exceptions import SarifError
from projects.sarif_uri import CommonDirectory

RESULTS = "runs.item.results.item"
RESULTS_ARRAY = "runs.item.results"
RUN = "runs.item"
LOCATION_URI = f"{RESULTS}.locations.item.physicalLocation.artifactLocation.uri"
MAX_DEPTH = 256
MAX_PATH_CHARS = 2000
# ijson's C backend parses a whole buffer before yielding its events, building a path
# string for every container opened in it: with a 64 KiB buffer, 64 Ki "[" cost ~10 GB
# before the depth check could see them. 4 KiB bounds that to a few MB, at no loss of
# speed.
BUFFER_SIZE = 4 * 1024
# Python will not convert an integer string longer than this (sys.int_info).
MAX_DIGITS = 4300

_LONG_NUMBER = re.compile(rb"(?<![0-9])[0-9]{%d}" % MAX_DIGITS)
_NUMBER_OVERFLOW = ("integer overflow", "numeric (floating point) overflow")
_TOKEN = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")
_NOT_CONTINUATION = bytes(range(0x80)) + bytes(range(0xC0, 0x100))
_OPENERS = frozenset({"start_map", "start_array"})
_SKIP = frozenset({"map_key", "end_map", "end_array"})
_CLOSERS = frozenset({"end_map", "end_array"})

# Event sets for the result property table (see projects.sarif.RESULT_FIELDS).
OBJECT = frozenset({"start_map", "null"})
ARRAY = frozenset({"start_array", "null"})
STRING = frozenset({"string", "null"})
INTEGER = frozenset({"number", "null"})  # and an int, not a float
ITEM_OBJECT = frozenset({"start_map"})  # an array item that must be an object


class NumberOverflow(Exception):
    """A number does not fit a float or a 64-bit integer: re-read with big numbers."""


class ResultFieldError(Exception):
    """The first pass found a result property of the wrong type.

    Raised with the run and result index, so the caller can re-read that one result
    and say exactly which property is wrong.
    """

    def __init__(self, run: "RawRun", position: int, path: str, expected: frozenset):
        super().__init__(path)
        self.run_index = run.index
        # The result's index in its run and among all the file's results.
        self.result_index = run.result_count - 1 + position
        self.file_index = run.results_before + run.result_count - 1 + position
        self.path = path
        self.expected = expected


@dataclass(slots=True)
class RawRun:
    """What the first pass keeps of one run: everything but its results."""

    index: int
    values: dict = field(default_factory=dict)  # "tool", "originalUriBaseIds", ...
    items: dict = field(default_factory=dict)  # "artifacts": [compacted item, ...]
    results: str = "absent"  # "absent", "null" or "list"
    result_count: int = 0
    results_before: int = 0  # results in the runs before this one
    common_directory: CommonDirectory = field(default_factory=CommonDirectory)


@dataclass(slots=True)
class Scan:
    version: object
    runs: list[RawRun] | None  # None: no "runs" property


_ABSENT = object()


class Source:
    """Where the SARIF bytes come from; `open()` gives a fresh reader for each pass."""

    def __init__(self, source):
        self._path = self._data = self._file = None
        if isinstance(source, (str, os.PathLike)):
            self._path = os.fspath(source)
        elif isinstance(source, (bytes, bytearray, memoryview)):
            self._data = source if isinstance(source, bytes) else bytes(source)
        elif hasattr(source, "read") and getattr(source, "seekable", bool)():
            self._file = source
            self._start = source.tell() if hasattr(source, "tell") else 0
        else:
            raise TypeError(
                "sarif_open() takes a path, bytes or a seekable binary file object"
            )

    @contextmanager
    def open(self):
        """A binary reader positioned after any UTF-8 byte order mark."""
        if self._path is not None:
            try:
                handle = open(self._path, "rb")  # noqa: SIM115 (closed below)
            except OSError as exc:
                raise SarifError(
                    _("The SARIF file cannot be read: %(error)s")
                    % {"error": exc.strerror or exc}
                ) from None
            with handle:
                yield self._skip_bom(handle, 0)
        elif self._data is not None:
            yield self._skip_bom(io.BytesIO(self._data), 0)
        else:
            self._file.seek(self._start)
            yield self._skip_bom(self._file, self._start)

    @staticmethod
    def _skip_bom(handle, start):
        head = handle.read(4)
        if not isinstance(head, bytes):
            raise TypeError("sarif_open() needs a file opened in binary mode")
        if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")):
            raise _not_utf8()
        handle.seek(start + (3 if head.startswith(b"\xef\xbb\xbf") else 0))
        return handle

    def check_start(self) -> None:
        """Refuse an empty file and one that is plainly not UTF-8, before parsing."""
        with self.open() as handle:
            head = handle.read(64 * 1024)
        if not head.strip():
            raise SarifError(_("The file is empty. Upload a SARIF 2.1.0 JSON file."))
        if b"\x00" in head:
            raise _not_utf8()

    def check_numbers(self) -> None:
        """Refuse a number (or digit run) too long for Python to convert safely."""
        carry = b""
        with self.open() as handle:
            while chunk := handle.read(1024 * 1024):
                data = carry + chunk
                if _LONG_NUMBER.search(data):
                    raise SarifError(
                        _(
                            "The file contains a number with more than %(digits)s "
                            "digits, which no SARIF property needs. Remove it or "
                            "write it as a string."
                        )
                        % {"digits": f"{MAX_DIGITS:,}"}
                    )
                kept = data.rstrip(b"0123456789")
                carry = data[len(kept) :]

    def json_error(self, exc: Exception, *, big_numbers: bool) -> Exception:
        """The SarifError (or NumberOverflow) for an error raised by ijson."""
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if isinstance(exc, ValueError) and "digits" in text:
            return SarifError(
                _("The file contains a number too long to read. Remove it.")
            )
        if any(reason in text for reason in _NUMBER_OVERFLOW) and not big_numbers:
            return NumberOverflow()
        if "invalid bytes in UTF8" in text:
            return _not_utf8()
        if "premature EOF" in text or "Incomplete" in text:
            return SarifError(
                _(
                    "The file ends before its JSON does: it is cut short. Upload the "
                    "complete SARIF file."
                )
            )
        position = self._error_position(big_numbers)
        detail = text.split(": ", 1)[-1].rstrip(".") if text else "invalid JSON"
        if position is None:
            return SarifError(
                _(
                    "The file is not valid JSON (%(msg)s). Export the scan as SARIF "
                    "JSON, e.g. `bandit -f sarif`."
                )
                % {"msg": detail}
            )
        return SarifError(
            _(
                "The file is not valid JSON (line %(line)s, column %(col)s: %(msg)s). "
                "Export the scan as SARIF JSON, e.g. `bandit -f sarif`."
            )
            % {"line": position[0], "col": position[1], "msg": detail}
        )

    def _error_position(self, big_numbers: bool) -> tuple[int, int] | None:
        """(line, column) of a JSON syntax error, found by parsing again and feeding
        the failing chunk one byte at a time."""
        failed_chunk = self._failing_range(None, big_numbers)
        if failed_chunk is None:
            return None
        offset = self._failing_range(failed_chunk[0], big_numbers)
        if offset is None:
            return None
        end = offset[1] - 1  # the byte whose arrival made the parser fail
        newlines = column = 0  # column: characters since the last newline
        tail = b""
        with self.open() as handle:
            remaining = end
            while remaining > 0:  # a chunk at a time: the file may be large
                chunk = handle.read(min(1024 * 1024, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                last_newline = chunk.rfind(b"\n")
                if last_newline >= 0:
                    newlines += chunk.count(b"\n")
                    column = _characters(chunk[last_newline + 1 :])
                else:
                    column += _characters(chunk)
                tail = (tail + chunk)[-100:]
        # Point at the start of the word or number the parser choked on ("nul"):
        # ASCII letters, digits and signs, one byte and one character each.
        back = 0
        while back < len(tail) and tail[len(tail) - 1 - back] in _TOKEN:
            back += 1
        return newlines + 1, column - back + 1

    def _failing_range(self, slow_from, big_numbers):
        """Parse, feeding 64 KiB chunks (or, from byte `slow_from`, single bytes);
        return the (start, end) offsets of the chunk during which parsing failed."""
        with self.open() as handle:
            feeder = _Feeder(handle, slow_from)
            try:
                for _event in ijson.basic_parse(
                    feeder, buf_size=64 * 1024, use_float=not big_numbers
                ):
                    pass
            except (ijson.JSONError, ValueError):
                return feeder.last
        return None


def _characters(data: bytes) -> int:
    """How many UTF-8 characters `data` holds (its bytes but continuation bytes)."""
    return len(data) - len(data.translate(None, _NOT_CONTINUATION))


class _Feeder:
    def __init__(self, handle, slow_from):
        self._handle = handle
        self._slow_from = slow_from
        self._offset = 0
        self.last = (0, 0)

    def read(self, size):
        if size == 0:
            return b""  # ijson's probe for bytes or text
        size = 64 * 1024
        if self._slow_from is not None:
            if self._offset < self._slow_from:
                size = self._slow_from - self._offset
            else:
                size = 1
        data = self._handle.read(size)
        self.last = (self._offset, self._offset + len(data))
        self._offset += len(data)
        return data


def _not_utf8() -> SarifError:
    return SarifError(
        _("The file is not UTF-8 text. SARIF files are JSON encoded as UTF-8.")
    )


def _too_deep(where: str) -> SarifError:
    return SarifError(
        _(
            "The JSON is nested too deeply to be a SARIF file (more than %(depth)s "
            "levels, at %(where)s)."
        )
        % {"depth": MAX_DEPTH, "where": where}
    )


def _too_long(where: str) -> SarifError:
    return SarifError(
        _(
            "A property name is too long to be SARIF (at %(where)s). Property paths "
            "are limited to %(limit)s characters."
        )
        % {"where": where, "limit": f"{MAX_PATH_CHARS:,}"}
    )


def _where(prefix: str, run_index: int, result_index: int | None = None) -> str:
    """A readable position from an ijson prefix ("runs[0].results[3].a.b[]")."""
    where, rest = "", prefix
    if prefix.startswith(RUN):
        where = f"runs[{max(run_index, 0)}]"
        rest = prefix[len(RUN) :]
        if result_index is not None and rest.startswith(".results.item"):
            where += f".results[{result_index}]"
            rest = rest[len(".results.item") :]
    elif prefix:
        rest = "." + prefix
    rest = rest.replace(".item", "[]")
    rest = rest if len(rest) <= 200 else rest[:200] + "…"
    return (where + rest).lstrip(".") or "the top level"


def scan(
    handle,
    *,
    big_numbers: bool,
    result_fields: dict[str, frozenset],
    string_maps: frozenset,
    whole_keys: frozenset,
    item_handlers: dict,
) -> Scan:
    """First pass: the run metadata, result counts and result property types.

    `result_fields` maps an ijson prefix inside a result to the events allowed there;
    `string_maps` are prefixes of objects whose values must be strings; `whole_keys`
    are run properties kept as they are; `item_handlers` maps a run property holding a
    list to a function (item, raw_run, item_index) -> what to keep of the item.
    """
    version = _ABSENT
    runs: list[RawRun] | None = None
    run: RawRun | None = None
    run_index = -1
    builder = None
    depth = 0
    store = None
    item_arrays = {f"{RUN}.{key}": key for key in item_handlers}
    item_prefixes = {f"{RUN}.{key}.item": key for key in item_handlers}
    fields_get = result_fields.get
    events = ijson.parse(handle, buf_size=BUFFER_SIZE, use_float=not big_numbers)

    for prefix, event, value in events:
        # Most events are keys and closing brackets, which only matter to a builder
        # or at the run level: one set lookup skips them.
        if event in _SKIP and builder is None and prefix != RUN:
            continue
        allowed = fields_get(prefix)
        if allowed is not None:  # a result property the reader uses
            if event not in allowed or (
                allowed is INTEGER and event == "number" and type(value) is not int
            ):
                # A result that is not an object is the next one, not the current.
                position = 1 if prefix == RESULTS else 0
                raise ResultFieldError(run, position, prefix, allowed)
            if prefix == RESULTS:
                run.result_count += 1
            elif prefix == LOCATION_URI and event == "string":
                if value[:5].lower() == "file:":
                    run.common_directory.add(value)
            continue
        if event in _OPENERS:
            # Path strings grow only where containers open: bounding them here
            # bounds every key's path too.
            if len(prefix) > MAX_PATH_CHARS:
                raise _too_long(_where(prefix, run_index, _current(run)))
            if prefix.count(".") > MAX_DEPTH:
                raise _too_deep(_where(prefix, run_index, _current(run)))
        if prefix.startswith(RESULTS):  # a result property the reader ignores
            if event != "string" and event != "null":
                if prefix.rpartition(".")[0] in string_maps:
                    raise ResultFieldError(run, 0, prefix, STRING)
            continue

        # -- outside the results: small, so clarity over speed ------------------------
        if builder is not None:
            builder.event(event, value)
            if event in _OPENERS:
                depth += 1
            elif event in _CLOSERS:
                depth -= 1
            if depth == 0:
                store(builder.value)
                builder = None
            continue

        if prefix == RUN:
            if event == "start_map":
                run_index += 1
                before = run.results_before + run.result_count if run else 0
                run = RawRun(index=run_index, results_before=before)
                runs.append(run)
            elif event == "map_key":
                if value in whole_keys:
                    builder, depth = ObjectBuilder(), 0
                    store = _store_value(run.values, value)
            elif event != "end_map":
                raise SarifError(
                    _("%(where)s must be a JSON object.")
                    % {"where": f"runs[{run_index + 1}]"}
                )
            continue
        if prefix == RESULTS_ARRAY:
            if event == "start_array":
                run.results = "list"
            elif event == "null":
                run.results = "null"
            elif event != "end_array":
                raise SarifError(
                    _("%(where)s.results must be a list.")
                    % {"where": f"runs[{run_index}]"}
                )
            continue
        key = item_prefixes.get(prefix)
        if key is not None:
            items = run.items[key]
            builder, depth = ObjectBuilder(), 0
            store = _store_item(item_handlers[key], items, run)
            builder.event(event, value)
            if event in _OPENERS:
                depth = 1
            else:
                store(builder.value)
                builder = None
            continue
        key = item_arrays.get(prefix)
        if key is not None:
            if event == "start_array":
                run.items[key] = []
            elif event != "end_array" and event != "null":
                raise SarifError(
                    _("%(where)s must be a list.")
                    % {"where": f"runs[{run_index}].{key}"}
                )
            continue
        if prefix == "":
            if event not in ("start_map", "map_key", "end_map"):
                raise SarifError(
                    _(
                        "The top level of a SARIF file must be a JSON object with "
                        '"version" and "runs".'
                    )
                )
        elif prefix == "version":
            if event in _OPENERS:
                version = []  # a list or object: wrong, and not worth building
            elif event not in _CLOSERS:
                version = value
        elif prefix == "runs":
            if event == "start_array":
                runs = [] if runs is None else runs
            elif event != "end_array":
                raise SarifError(
                    _(
                        '"runs" must be a list of runs (it may be empty), one per '
                        "tool run."
                    )
                )
    return Scan(version=None if version is _ABSENT else version, runs=runs)


def _current(run: RawRun | None) -> int | None:
    return run.result_count - 1 if run is not None else None


def _store_value(values: dict, key: str):
    def store(value):
        values[key] = value

    return store


def _store_item(handler, items: list, run: RawRun):
    def store(value):
        items.append(handler(value, run, len(items)))

    return store


def results(handle, *, big_numbers: bool):
    """Second pass: every result object, in file order, built by ijson's C backend."""
    return ijson.items(handle, RESULTS, buf_size=BUFFER_SIZE, use_float=not big_numbers)
