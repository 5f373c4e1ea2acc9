"""Reading SARIF 2.1.0 files into plain results, streaming. No database access here.

Spec: https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html (§ numbers
below). GitHub's conventions: https://docs.github.com/en/code-security/code-scanning/
integrating-with-code-scanning/sarif-support-for-code-scanning

    document = sarif_open(path_or_bytes_or_binary_file, category="")
    document.runs          # one SarifRun per run, known once the file is opened
    document.results()     # every SarifResult, in file order, one at a time

`sarif_open` reads the file once to check it and learn each run's metadata, without
building its results; `results()` reads it again, building one result at a time, so
memory does not grow with the number of results (projects/sarif_stream.py). Anything
that is not SARIF 2.1.0 raises SarifError naming the JSON path to fix ("runs[0].results[3]
.level must be a string"); `results()` does not raise for a file `sarif_open` accepted,
unless the file changes in between. A property of the wrong JSON type is an error; a
value of the right type that makes no sense (line 0, an unknown level) is ignored.

Identity: what makes two results, in this scan or the next, the same finding. It is the
SHA-256 (64 hex characters) of the tool name, the run's category, the rule id, the
result's normalised path, and then either
  * the tool's own fingerprints: every usable `partialFingerprints` and `fingerprints`
    entry, sorted by key (so key order does not matter). A value that carries no
    identity is ignored: see PLACEHOLDER_FINGERPRINTS (Semgrep without a login writes
    "requires login" for every result, which would merge them all into one finding);
  * or, without a usable fingerprint, where and what: start line and column, the
    region's snippet text and the message text (two `eval` calls on one line are two
    findings; so are two results sharing a snippet but saying different things), and
    the logical location (`pkg.Class.method`) when the result has no file.
Because the path and category are part of it, the same fingerprint in bad/a.py and
good/a.py is two findings, and so is one result reported under two categories. The
fallback moves with the code (a line inserted above reads as "fixed here, new there"):
the honest answer when a tool gives no fingerprint. Duplicates (same identity) are all
yielded; the caller counts them. That includes results a tool fingerprinted alike:
`sarif-multitool rewrite` hashes lines, so two `eval` calls on one line share their
`primaryLocationLineHash` and are one finding seen twice.

Paths are relative to the scanned source tree, percent-decoded, so two checkouts of one
repository in different directories give the same paths and identities (see
projects/sarif_uri.py for how the root is found).

Category: the run's `automationDetails.id` up to its last "/" (GitHub's convention:
"my-analysis/run-1" is category "my-analysis"; an id without "/" is the category), or
the `category` argument of sarif_open, which wins when given. Findings of one category
are one analysis: a later scan resolves only findings of its own tool and category.

Severity: a numeric `security-severity` property (the result's, else its rule's) in
GitHub's CVSS v3 bands: 9.0-10.0 Critical, 7.0-8.9 High, 4.0-6.9 Medium, 0.1-3.9 Low.
Without a usable score (missing, not a number, 0.0, outside 0.1-10.0) the SARIF level
decides (the result's, else its rule's defaultConfiguration, else "warning" as the spec
says): error High, warning Medium, note Low, none Info.

Rules (§3.52, §3.27.6): a result names its rule by `rule.toolComponent` (an index into
`tool.extensions`, a guid, or a name; else the driver), then `ruleIndex`/`rule.index`
in that component, then `ruleId` (a hierarchical "A/B" falls back to "A"). CodeQL puts
its rules in `tool.extensions`. A result without any rule is valid (§3.27.5): its
rule id is "" and its identity comes from its location and message.

What the importer must know to resolve findings correctly:
  * `SarifRun.complete` is False when an invocation says `executionSuccessful: false`
    or the run's `results` is null or absent (the tool did not finish, or the run only
    exports rules; §3.14.23): absence from such a run proves nothing, so it must
    resolve nothing. Error notifications are in `SarifRun.notifications`.
  * Results with `baselineState: "absent"` are not yielded: they say a finding is
    gone, and must neither create nor reopen one.
  * Results whose `kind` is not "fail" (pass, notApplicable, ...) and results with an
    accepted suppression are not findings and are not yielded.

Every string a result contributes is passed through `visible()` (projects/sarif_text.py)
and cut to its column's size, so invisible and bidirectional control characters
arrive in the database already shown as `⟨U+202E⟩` markers.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice

import ijson
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from projects import sarif_stream as stream
from projects.exceptions import SarifError
from projects.models import Severity
from projects.sarif_stream import ARRAY, INTEGER, ITEM_OBJECT, OBJECT, RESULTS, STRING
from projects.sarif_text import clip, message_fill, message_links, visible
from projects.sarif_uri import UriResolver

__all__ = [
    "PLACEHOLDER_FINGERPRINTS",
    "SarifDocument",
    "SarifReport",
    "SarifResult",
    "SarifRun",
    "sarif_open",
    "sarif_parse",
    "severity_from_score",
    "visible",
]

SUPPORTED_VERSION = "2.1.0"
IDENTITY_VERSION = "sarif-identity/2"

# Column sizes in projects.models; longer text is cut, never rejected.
MAX_TOOL = 200
MAX_VERSION = 100
MAX_RULE = 255
MAX_CATEGORY = 255
MAX_PATH = 1000
MAX_MESSAGE = 20_000
MAX_LOGICAL = 1000
MAX_NOTIFICATION = 1000
MAX_NOTIFICATIONS = 20

LEVEL_SEVERITY = {
    "error": Severity.HIGH,
    "warning": Severity.MEDIUM,
    "note": Severity.LOW,
    "none": Severity.INFO,
}

# Fingerprint values that identify nothing, compared trimmed and case-folded. Semgrep
# writes "requires login" when run without a login; other tools write an empty or
# zero value when they could not compute one. All-zero hashes ("0000", "0000:1", with
# CodeQL's ":n" occurrence suffix) are caught by _ZERO_FINGERPRINT.
PLACEHOLDER_FINGERPRINTS = frozenset(
    {"", "0", "requires login", "none", "null", "undefined", "n/a", "unknown"}
)
_ZERO_FINGERPRINT = re.compile(r"[0\s:._-]*(?::\d+)?")


def _location_fields(prefix: str, *, logical: bool) -> dict[str, frozenset]:
    physical = f"{prefix}.physicalLocation"
    fields = {
        prefix: ITEM_OBJECT,
        physical: OBJECT,
        f"{physical}.artifactLocation": OBJECT,
        f"{physical}.artifactLocation.uri": STRING,
        f"{physical}.artifactLocation.uriBaseId": STRING,
        f"{physical}.artifactLocation.index": INTEGER,
        f"{physical}.region": OBJECT,
        f"{physical}.region.startLine": INTEGER,
        f"{physical}.region.startColumn": INTEGER,
        f"{physical}.region.snippet": OBJECT,
        f"{physical}.region.snippet.text": STRING,
    }
    if logical:
        fields |= {
            f"{prefix}.logicalLocations": ARRAY,
            f"{prefix}.logicalLocations.item": ITEM_OBJECT,
            f"{prefix}.logicalLocations.item.fullyQualifiedName": STRING,
            f"{prefix}.logicalLocations.item.name": STRING,
            f"{prefix}.logicalLocations.item.index": INTEGER,
        }
    return fields


# Every result property this module reads, by ijson prefix, with the JSON type it must
# have (null is read as absent). The first pass checks these without building results;
# _read_result() checks the same when it reads them (tests/projects/
# test_sarif_malformed.py keeps the two in step).
RESULT_FIELDS: dict[str, frozenset] = {
    RESULTS: ITEM_OBJECT,
    f"{RESULTS}.ruleId": STRING,
    f"{RESULTS}.ruleIndex": INTEGER,
    f"{RESULTS}.rule": OBJECT,
    f"{RESULTS}.rule.id": STRING,
    f"{RESULTS}.rule.index": INTEGER,
    f"{RESULTS}.rule.guid": STRING,
    f"{RESULTS}.rule.toolComponent": OBJECT,
    f"{RESULTS}.rule.toolComponent.index": INTEGER,
    f"{RESULTS}.rule.toolComponent.guid": STRING,
    f"{RESULTS}.rule.toolComponent.name": STRING,
    f"{RESULTS}.kind": STRING,
    f"{RESULTS}.level": STRING,
    f"{RESULTS}.baselineState": STRING,
    f"{RESULTS}.message": OBJECT,
    f"{RESULTS}.message.text": STRING,
    f"{RESULTS}.message.markdown": STRING,
    f"{RESULTS}.message.id": STRING,
    f"{RESULTS}.message.arguments": ARRAY,
    f"{RESULTS}.message.arguments.item": STRING,
    f"{RESULTS}.locations": ARRAY,
    **_location_fields(f"{RESULTS}.locations.item", logical=True),
    f"{RESULTS}.relatedLocations": ARRAY,
    **_location_fields(f"{RESULTS}.relatedLocations.item", logical=False),
    f"{RESULTS}.relatedLocations.item.id": INTEGER,
    f"{RESULTS}.partialFingerprints": OBJECT,
    f"{RESULTS}.fingerprints": OBJECT,
    f"{RESULTS}.suppressions": ARRAY,
    f"{RESULTS}.suppressions.item": ITEM_OBJECT,
    f"{RESULTS}.suppressions.item.status": STRING,
    f"{RESULTS}.properties": OBJECT,
}
# Objects whose every value must be a string.
RESULT_STRING_MAPS = frozenset(
    {f"{RESULTS}.partialFingerprints", f"{RESULTS}.fingerprints"}
)


# -- the public API ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SarifRun:
    index: int
    tool_name: str
    tool_version: str
    # automationDetails.id up to its last "/", or sarif_open's `category` argument.
    category: str
    # False when an invocation failed or `results` is null or absent: resolve nothing.
    complete: bool
    # Texts of the invocations' error-level toolExecutionNotifications (at most 20).
    notifications: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SarifResult:
    run_index: int
    tool_name: str
    category: str
    identity: str  # 64 hex characters
    rule_id: str  # "" when the result names no rule
    rule_name: str
    message: str
    severity: str  # a projects.models.Severity value
    path: str  # relative to the source root, percent-decoded; "" without a file
    start_line: int | None
    start_column: int | None
    logical_location: str  # e.g. "pkg.Class.method"; "" when there is none

    @property
    def fingerprint(self) -> str:
        """The identity, under the name the storage side used before."""
        return self.identity


class SarifDocument:
    """An opened SARIF file: its runs, and its results to stream.

    Keeps a reference to the source: a file must stay unchanged (and a file object
    open) until `results()` has been consumed. `results()` may be called again; two
    iterations over one file object must not be interleaved (they share its position).
    """

    def __init__(self, source: stream.Source, runs: list[_Run], big_numbers: bool):
        self._source = source
        self._runs = runs
        self._big_numbers = big_numbers
        self.runs: list[SarifRun] = [run.public for run in runs]

    def results(self) -> Iterator[SarifResult]:
        """Every result once, in file order (duplicates included), read one at a time.

        Results that are not findings (kind other than "fail", accepted suppressions,
        baselineState "absent") are skipped. Each call reads the file again.
        """
        if not any(run.result_count for run in self._runs):
            return
        with self._source.open() as handle:
            items = stream.results(handle, big_numbers=self._big_numbers)
            for run in self._runs:
                for result_index in range(run.result_count):
                    try:
                        raw = next(items, None)
                    except (ijson.JSONError, ValueError) as exc:
                        raise self._source.json_error(
                            exc, big_numbers=self._big_numbers
                        ) from None
                    if raw is None:
                        raise SarifError(
                            _("The file changed while it was being read. Try again.")
                        )
                    try:
                        result = _read_result(raw, run)
                    except _Wrong as wrong:
                        where = f"runs[{run.index}].results[{result_index}]"
                        raise wrong.under(where).error() from None
                    if result is not None:
                        yield result


def sarif_open(source, *, category: str = "") -> SarifDocument:
    """Open and check a SARIF 2.1.0 file: a path, bytes, or a seekable binary file.

    Reads the whole file once (without building its results) and raises SarifError
    saying what to fix when it is not SARIF 2.1.0. `category`, when given, is the
    category of every run, instead of the runs' automationDetails.id.

    A file object is read from its current position. For an upload, pass the path of
    the stored file (Django's `TemporaryUploadedFile.temporary_file_path()`) or the
    UploadedFile itself; a `str` is always a path, never SARIF text.
    """
    source = stream.Source(source)
    source.check_start()
    big_numbers = False
    try:
        scan = _scan(source, big_numbers=False)
    except stream.NumberOverflow:
        # An integer beyond 64 bits or a float beyond double range: read exactly.
        source.check_numbers()
        big_numbers = True
        scan = _scan(source, big_numbers=True)
    _check_version(scan.version)
    if scan.runs is None:
        raise SarifError(
            _('"runs" must be a list of runs (it may be empty), one per tool run.')
        )
    runs = [_run(raw, category=category.strip()) for raw in scan.runs]
    return SarifDocument(source, runs, big_numbers)


def severity_from_score(score: float) -> str | None:
    """GitHub's band for a `security-severity` score, or None outside 0.1-10.0."""
    if not math.isfinite(score) or score < 0.1 or score > 10.0:
        return None
    if score >= 9.0:
        return Severity.CRITICAL
    if score >= 7.0:
        return Severity.HIGH
    if score >= 4.0:
        return Severity.MEDIUM
    return Severity.LOW


# -- the previous API, kept until the storage side reads results as a stream -----------


@dataclass(frozen=True, slots=True)
class SarifReport:
    runs: list[SarifRun]
    # One per identity, first occurrence wins.
    results: list[SarifResult]

    @property
    def tool_names(self) -> list[str]:
        return list(dict.fromkeys(run.tool_name for run in self.runs))


def sarif_parse(data: bytes) -> SarifReport:
    """Parse SARIF bytes into a report holding one result per identity.

    Holds every result in memory: prefer sarif_open() and SarifDocument.results().
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    document = sarif_open(data)
    unique: dict[str, SarifResult] = {}
    for result in document.results():
        unique.setdefault(result.identity, result)
    return SarifReport(runs=document.runs, results=list(unique.values()))


# -- the first pass ------------------------------------------------------------------


def _scan(source: stream.Source, *, big_numbers: bool) -> stream.Scan:
    with source.open() as handle:
        try:
            return stream.scan(
                handle,
                big_numbers=big_numbers,
                result_fields=RESULT_FIELDS,
                string_maps=RESULT_STRING_MAPS,
                whole_keys=frozenset(
                    {"tool", "originalUriBaseIds", "automationDetails"}
                ),
                item_handlers={
                    "invocations": _invocation,
                    "artifacts": _artifact,
                    "logicalLocations": _logical_location_entry,
                },
            )
        except stream.ResultFieldError as exc:
            wrong = exc
        except (ijson.JSONError, ValueError) as exc:
            raise source.json_error(exc, big_numbers=big_numbers) from None
    raise _result_field_error(source, wrong, big_numbers)


def _result_field_error(source, wrong, big_numbers) -> SarifError:
    """The precise error for a result the first pass found a wrongly typed value in:
    read that one result and let _result() say what is wrong."""
    raw = None
    with source.open() as handle:
        items = stream.results(handle, big_numbers=big_numbers)
        try:
            raw = next(islice(items, wrong.file_index, None), None)
        except (ijson.JSONError, ValueError):
            pass  # a later part of the file is broken too: the first error stands
    if raw is not None:
        try:
            _result(raw, _Run.placeholder(wrong.run_index), wrong.result_index)
        except SarifError as exc:
            return exc
    # Not expected: RESULT_FIELDS and _result() disagree. Still say where.
    path = wrong.path[len(RESULTS) :].replace(".item", "[]")
    where = f"runs[{wrong.run_index}].results[{wrong.result_index}]{path}"
    return SarifError(
        _("%(where)s must be %(kind)s.")
        % {"where": where, "kind": _(_KIND_WORDS[wrong.expected])}
    )


def _check_version(version) -> None:
    if version == SUPPORTED_VERSION:
        return
    if version is None:
        raise SarifError(
            _(
                'The "version" property is missing. Only SARIF 2.1.0 is supported: '
                'the file must contain "version": "2.1.0".'
            )
        )
    if isinstance(version, (str, int, float, Decimal)) and type(version) is not bool:
        shown = str(version)
    else:
        shown = "true" if version is True else "false" if version is False else "…"
    raise SarifError(
        _(
            'SARIF version "%(version)s" is not supported. Export the scan as SARIF 2.1.0.'
        )
        % {"version": clip(visible(shown), 40)}
    )


# -- reading typed values, naming the JSON path when the type is wrong ----------------

A_STRING = gettext_noop("a string")
AN_INTEGER = gettext_noop("an integer")
AN_OBJECT = gettext_noop("a JSON object")
A_LIST = gettext_noop("a list")
A_BOOLEAN = gettext_noop("true or false")
_KIND_WORDS = {
    OBJECT: AN_OBJECT,
    ITEM_OBJECT: AN_OBJECT,
    ARRAY: A_LIST,
    STRING: A_STRING,
    INTEGER: AN_INTEGER,
}


class _Wrong(Exception):
    """A value of the wrong JSON type. Its path grows as it propagates (`under`), so
    results pay for path strings only when one is wrong."""

    def __init__(self, path: str, kind: str):
        super().__init__(path)
        self.path = path
        self.kind = kind

    def under(self, where: str) -> _Wrong:
        if not self.path:
            path = where
        elif self.path.startswith("["):
            path = where + self.path
        else:
            path = f"{where}.{self.path}"
        return _Wrong(path, self.kind)

    def error(self) -> SarifError:
        return SarifError(
            _("%(where)s must be %(kind)s.")
            % {"where": self.path, "kind": _(self.kind)}
        )


_STRING_TYPES = frozenset({str, type(None)})
_INTEGER_TYPES = frozenset({int, type(None)})
_OBJECT_TYPES = frozenset({dict, type(None)})
_LIST_TYPES = frozenset({list, type(None)})


def _str(value, path: str) -> str | None:
    if value is None or type(value) is str:
        return value
    raise _Wrong(path, A_STRING)


def _int(value, path: str) -> int | None:
    if value is None or type(value) is int:
        return value
    raise _Wrong(path, AN_INTEGER)


def _obj(value, path: str) -> dict | None:
    if value is None or type(value) is dict:
        return value
    raise _Wrong(path, AN_OBJECT)


def _lst(value, path: str) -> list:
    if value is None:
        return ()
    if type(value) is list:
        return value
    raise _Wrong(path, A_LIST)


def _objects(value, path: str) -> list[dict]:
    """A list whose every item is a JSON object."""
    values = _lst(value, path)
    for index, item in enumerate(values):
        if type(item) is not dict:
            raise _Wrong(f"{path}[{index}]", AN_OBJECT)
    return values


def _string_map(value, path: str) -> dict[str, str] | None:
    if value is None:
        return None
    if type(value) is not dict:
        raise _Wrong(path, AN_OBJECT)
    for name, item in value.items():
        if item is not None and type(item) is not str:
            raise _Wrong(f"{path}.{name}", A_STRING)
    return value


def _positive(value: int | None) -> int | None:
    return value if value is not None and 0 < value < 2**31 else None


# -- run metadata ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rule:
    id: str
    guid: str
    name: str  # visible, clipped
    level: str | None
    score_severity: str | None
    message_strings: dict[str, str]
    description: str


@dataclass(slots=True)
class _Component:
    name: str
    guid: str
    rules: list[_Rule]
    by_id: dict[str, _Rule]
    by_guid: dict[str, _Rule]
    message_strings: dict[str, str]

    def rule(self, rule_id: str | None, guid: str | None) -> _Rule | None:
        if guid:
            found = self.by_guid.get(guid.lower())
            if found is not None:
                return found
        if rule_id:
            found = self.by_id.get(rule_id)
            # A hierarchical id "A/B" falls back to its base rule "A" (§3.52.4), one
            # component at a time: CodeQL's own ids contain "/" ("py/sql-injection").
            base = rule_id
            while found is None and "/" in base:
                base = base.rpartition("/")[0]
                found = self.by_id.get(base)
            return found
        return None


_NO_COMPONENT = _Component("", "", [], {}, {}, {})


class _Run:
    """One run's metadata, and the caches its results share."""

    def __init__(
        self,
        *,
        public: SarifRun,
        tool_key: str,
        category_key: str,
        driver: _Component,
        extensions: list[_Component],
        resolver: UriResolver,
        logical_locations: list[str],
        result_count: int,
    ):
        self.public = public
        self.index = public.index
        self.tool_key = tool_key
        self.category_key = category_key
        self.driver = driver
        self.extensions = extensions
        self.resolver = resolver
        self.logical_locations = logical_locations
        self.result_count = result_count
        self._display_paths: dict[str, str] = {}
        self._display_rule_ids: dict[str, str] = {}

    @classmethod
    def placeholder(cls, index: int) -> _Run:
        """A run without metadata: enough to check a result's types."""
        return cls(
            public=SarifRun(index, "", "", "", True, ()),
            tool_key="",
            category_key="",
            driver=_NO_COMPONENT,
            extensions=[],
            resolver=UriResolver(
                base_ids={}, working_directories=[], common_directory=None, artifacts=[]
            ),
            logical_locations=[],
            result_count=0,
        )

    def component(self, index, guid, name) -> _Component:
        """The tool component a toolComponentReference names, else the driver."""
        if index is not None:
            if 0 <= index < len(self.extensions):
                return self.extensions[index]
            return self.driver
        if guid:
            for component in (self.driver, *self.extensions):
                if component.guid and component.guid == guid.lower():
                    return component
        if name:
            for component in (self.driver, *self.extensions):
                if component.name == name:
                    return component
        return self.driver

    def rule(self, component, index, rule_id, guid) -> _Rule | None:
        if index is not None and 0 <= index < len(component.rules):
            return component.rules[index]
        found = component.rule(rule_id, guid)
        if found is None and (rule_id or guid):
            # Some tools put rules in extensions without saying which one.
            for other in (self.driver, *self.extensions):
                if other is not component:
                    found = other.rule(rule_id, guid)
                    if found is not None:
                        break
        return found

    def display_rule_id(self, rule_id: str) -> str:
        shown = self._display_rule_ids.get(rule_id)
        if shown is None:
            if len(self._display_rule_ids) > 10_000:
                self._display_rule_ids.clear()
            shown = self._display_rule_ids[rule_id] = clip(visible(rule_id), MAX_RULE)
        return shown

    def display_path(self, path: str) -> str:
        shown = self._display_paths.get(path)
        if shown is None:
            if len(self._display_paths) > 50_000:
                self._display_paths.clear()
            shown = self._display_paths[path] = clip(visible(path), MAX_PATH)
        return shown


def _run(raw: stream.RawRun, *, category: str) -> _Run:
    try:
        return _read_run(raw, category)
    except _Wrong as wrong:
        raise wrong.error() from None


def _read_run(raw: stream.RawRun, category: str) -> _Run:
    where = f"runs[{raw.index}]"
    tool = raw.values.get("tool")
    if tool is None:
        raise SarifError(_("%(where)s is missing.") % {"where": f"{where}.tool"})
    tool = _obj(tool, f"{where}.tool")
    driver = _obj(tool.get("driver"), f"{where}.tool.driver")
    if driver is None:
        raise SarifError(_("%(where)s is missing.") % {"where": f"{where}.tool.driver"})
    tool_name = (_str(driver.get("name"), f"{where}.tool.driver.name") or "").strip()
    if not tool_name:
        raise SarifError(
            _(
                "%(where)s.tool.driver.name is missing: each run must name the tool "
                "that produced it."
            )
            % {"where": where}
        )
    semantic_version = _str(
        driver.get("semanticVersion"), f"{where}.tool.driver.semanticVersion"
    )
    version = _str(driver.get("version"), f"{where}.tool.driver.version")
    tool_version = (semantic_version or version or "").strip()
    extensions = [
        _component(extension, f"{where}.tool.extensions[{index}]")
        for index, extension in enumerate(
            _objects(tool.get("extensions"), f"{where}.tool.extensions")
        )
    ]

    automation = _obj(raw.values.get("automationDetails"), f"{where}.automationDetails")
    automation_id = ""
    if automation is not None:
        automation_id = (
            _str(automation.get("id"), f"{where}.automationDetails.id") or ""
        )
    category_key = category or _category(automation_id)

    base_ids = {}
    original = _obj(raw.values.get("originalUriBaseIds"), f"{where}.originalUriBaseIds")
    for name, base in (original or {}).items():
        base_where = f"{where}.originalUriBaseIds.{name}"
        base = _obj(base, base_where)
        if base is not None:
            base_ids[name] = (
                _str(base.get("uri"), f"{base_where}.uri") or "",
                _str(base.get("uriBaseId"), f"{base_where}.uriBaseId") or "",
            )

    invocations = raw.items.get("invocations") or []
    complete = raw.results == "list" and not any(
        successful is False for successful, _directory, _errors in invocations
    )
    notifications = [text for _ok, _directory, errors in invocations for text in errors]
    resolver = UriResolver(
        base_ids=base_ids,
        working_directories=[
            directory for _ok, directory, _e in invocations if directory
        ],
        common_directory=raw.common_directory.directory,
        artifacts=raw.items.get("artifacts") or [],
    )
    public = SarifRun(
        index=raw.index,
        tool_name=clip(visible(tool_name), MAX_TOOL),
        tool_version=clip(visible(tool_version), MAX_VERSION),
        category=clip(visible(category_key), MAX_CATEGORY),
        complete=complete,
        notifications=tuple(notifications[:MAX_NOTIFICATIONS]),
    )
    return _Run(
        public=public,
        tool_key=tool_name,
        category_key=category_key,
        driver=_component(driver, f"{where}.tool.driver"),
        extensions=extensions,
        resolver=resolver,
        logical_locations=raw.items.get("logicalLocations") or [],
        result_count=raw.result_count,
    )


def _category(automation_id: str) -> str:
    """GitHub's category: automationDetails.id up to its last "/", or all of it."""
    automation_id = automation_id.strip()
    if "/" in automation_id:
        return automation_id.rpartition("/")[0]
    return automation_id


def _component(component: dict, where: str) -> _Component:
    rules = []
    by_id: dict[str, _Rule] = {}
    by_guid: dict[str, _Rule] = {}
    for index, rule in enumerate(_objects(component.get("rules"), f"{where}.rules")):
        rule = _rule(rule, f"{where}.rules[{index}]")
        rules.append(rule)
        if rule.id:
            by_id.setdefault(rule.id, rule)
        if rule.guid:
            by_guid.setdefault(rule.guid, rule)
    return _Component(
        name=_str(component.get("name"), f"{where}.name") or "",
        guid=(_str(component.get("guid"), f"{where}.guid") or "").lower(),
        rules=rules,
        by_id=by_id,
        by_guid=by_guid,
        message_strings=_message_strings(
            component.get("globalMessageStrings"), f"{where}.globalMessageStrings"
        ),
    )


def _rule(rule: dict, where: str) -> _Rule:
    configuration = _obj(
        rule.get("defaultConfiguration"), f"{where}.defaultConfiguration"
    )
    level = None
    if configuration is not None:
        level = _str(configuration.get("level"), f"{where}.defaultConfiguration.level")
    properties = _obj(rule.get("properties"), f"{where}.properties")
    description = ""
    for key in ("shortDescription", "fullDescription"):
        text = _obj(rule.get(key), f"{where}.{key}")
        if text is not None:
            text = _str(text.get("text"), f"{where}.{key}.text")
            description = description or text or ""
    return _Rule(
        id=_str(rule.get("id"), f"{where}.id") or "",
        guid=(_str(rule.get("guid"), f"{where}.guid") or "").lower(),
        name=clip(visible(_str(rule.get("name"), f"{where}.name") or ""), MAX_RULE),
        level=level if level in LEVEL_SEVERITY else None,
        score_severity=_score_severity(properties) if properties else None,
        message_strings=_message_strings(
            rule.get("messageStrings"), f"{where}.messageStrings"
        ),
        description=description,
    )


def _message_strings(value, where: str) -> dict[str, str]:
    strings = {}
    for name, string in (_obj(value, where) or {}).items():
        string = _obj(string, f"{where}.{name}")
        if string is not None:
            text = _str(string.get("text"), f"{where}.{name}.text")
            if text:
                strings[name] = text
    return strings


def _invocation(value, raw: stream.RawRun, index: int):
    """What is kept of an invocation: (executionSuccessful, working directory URI,
    error notification texts)."""
    where = f"runs[{raw.index}].invocations[{index}]"
    try:
        value = _obj(value, where) or {}
        successful = value.get("executionSuccessful")
        if successful is not None and type(successful) is not bool:
            raise _Wrong(f"{where}.executionSuccessful", A_BOOLEAN)
        directory = _obj(value.get("workingDirectory"), f"{where}.workingDirectory")
        working = ""
        if directory is not None:
            working = _str(directory.get("uri"), f"{where}.workingDirectory.uri") or ""
        errors = []
        notes = f"{where}.toolExecutionNotifications"
        for i, note in enumerate(
            _objects(value.get("toolExecutionNotifications"), notes)
        ):
            level = _str(note.get("level"), f"{notes}[{i}].level")
            message = _obj(note.get("message"), f"{notes}[{i}].message") or {}
            text = _str(message.get("text"), f"{notes}[{i}].message.text") or ""
            if level == "error" and text.strip() and len(errors) < MAX_NOTIFICATIONS:
                text = visible(text.strip(), multiline=True)
                errors.append(clip(text, MAX_NOTIFICATION))
    except _Wrong as wrong:
        raise wrong.error() from None
    return (successful, working, errors)


def _artifact(value, raw: stream.RawRun, index: int):
    """What is kept of an artifact: (uri, uriBaseId) of its location, or None."""
    where = f"runs[{raw.index}].artifacts[{index}]"
    try:
        value = _obj(value, where) or {}
        location = _obj(value.get("location"), f"{where}.location")
        if location is None:
            return None
        uri = _str(location.get("uri"), f"{where}.location.uri")
        base_id = _str(location.get("uriBaseId"), f"{where}.location.uriBaseId")
    except _Wrong as wrong:
        raise wrong.error() from None
    if uri is None:
        return None
    if uri[:5].lower() == "file:":
        raw.common_directory.add(uri)
    return (uri, base_id or "")


def _logical_location_entry(value, raw: stream.RawRun, index: int) -> str:
    where = f"runs[{raw.index}].logicalLocations[{index}]"
    try:
        value = _obj(value, where) or {}
        name = _str(value.get("name"), f"{where}.name")
        qualified = _str(value.get("fullyQualifiedName"), f"{where}.fullyQualifiedName")
    except _Wrong as wrong:
        raise wrong.error() from None
    return qualified or name or ""


# -- one result ------------------------------------------------------------------------


def _score_severity(properties: dict) -> str | None:
    value = properties.get("security-severity")
    kind = type(value)
    try:
        if kind is str:
            score = float(value) if len(value) < 40 else math.nan
        elif kind is int or kind is float or kind is Decimal:
            score = float(value)
        else:
            return None
    except (ValueError, OverflowError):
        return None
    return severity_from_score(score)


def _usable(value: str | None) -> bool:
    if value is None:
        return False
    value = value.strip().casefold()
    return value not in PLACEHOLDER_FINGERPRINTS and not _ZERO_FINGERPRINT.fullmatch(
        value
    )


def _location(location, logical: bool):
    """Check one location object; return (has a physical location, its
    artifactLocation, its region, its first logical location)."""
    if type(location) is not dict:
        raise _Wrong("", AN_OBJECT)
    artifact = region = None
    physical = location.get("physicalLocation")
    if physical is not None:
        physical = _obj(physical, "physicalLocation")
        artifact = physical.get("artifactLocation")
        region = physical.get("region")
        if artifact is not None:
            artifact = _obj(artifact, "physicalLocation.artifactLocation")
            get = artifact.get
            if not (
                type(get("uri")) in _STRING_TYPES
                and type(get("uriBaseId")) in _STRING_TYPES
                and type(get("index")) in _INTEGER_TYPES
            ):
                where = "physicalLocation.artifactLocation"
                _str(get("uri"), f"{where}.uri")
                _str(get("uriBaseId"), f"{where}.uriBaseId")
                _int(get("index"), f"{where}.index")
        if region is not None:
            region = _obj(region, "physicalLocation.region")
            get = region.get
            snippet = get("snippet")
            if not (
                type(get("startLine")) in _INTEGER_TYPES
                and type(get("startColumn")) in _INTEGER_TYPES
                and type(snippet) in _OBJECT_TYPES
            ):
                _int(get("startLine"), "physicalLocation.region.startLine")
                _int(get("startColumn"), "physicalLocation.region.startColumn")
                _obj(snippet, "physicalLocation.region.snippet")
            if snippet is not None:
                _str(snippet.get("text"), "physicalLocation.region.snippet.text")
    first = None
    if logical:
        entries = location.get("logicalLocations")
        if entries is not None:
            for index, entry in enumerate(_objects(entries, "logicalLocations")):
                where = f"logicalLocations[{index}]"
                _str(entry.get("fullyQualifiedName"), f"{where}.fullyQualifiedName")
                _str(entry.get("name"), f"{where}.name")
                _int(entry.get("index"), f"{where}.index")
                if first is None:
                    first = entry
    return physical is not None, artifact, region, first


def _result(raw, run: _Run, result_index: int) -> SarifResult | None:
    """Check one result object and turn it into a SarifResult (None: not a finding)."""
    try:
        return _read_result(raw, run)
    except _Wrong as wrong:
        where = f"runs[{run.index}].results[{result_index}]"
        raise wrong.under(where).error() from None


def _read_result(raw, run: _Run) -> SarifResult | None:
    if type(raw) is not dict:
        raise _Wrong("", AN_OBJECT)
    get = raw.get
    kind = get("kind")
    level = get("level")
    baseline = get("baselineState")
    rule_id = get("ruleId")
    rule_index = get("ruleIndex")
    message = get("message")
    # One test for the common case; the loop below only runs to name the culprit.
    if not (
        type(kind) in _STRING_TYPES
        and type(level) in _STRING_TYPES
        and type(baseline) in _STRING_TYPES
        and type(rule_id) in _STRING_TYPES
        and type(rule_index) in _INTEGER_TYPES
        and type(message) in _OBJECT_TYPES
    ):
        for key in ("kind", "level", "baselineState", "ruleId"):
            _str(get(key), key)
        _int(rule_index, "ruleIndex")
        _obj(message, "message")
    component = run.driver
    rule_guid = None
    reference = get("rule")
    if reference is not None:
        reference = _obj(reference, "rule")
        reference_id = _str(reference.get("id"), "rule.id")
        reference_index = _int(reference.get("index"), "rule.index")
        rule_guid = _str(reference.get("guid"), "rule.guid")
        tool_component = _obj(reference.get("toolComponent"), "rule.toolComponent")
        if tool_component is not None:
            component = run.component(
                _int(tool_component.get("index"), "rule.toolComponent.index"),
                _str(tool_component.get("guid"), "rule.toolComponent.guid"),
                _str(tool_component.get("name"), "rule.toolComponent.name"),
            )
        rule_id = rule_id or reference_id
        if rule_index is None or rule_index < 0:
            rule_index = reference_index

    text = message_id = None
    arguments = ()
    markdown = False
    if message is not None:
        text = message.get("text")
        markdown_text = message.get("markdown")
        message_id = message.get("id")
        arguments = message.get("arguments")
        if not (
            type(text) in _STRING_TYPES
            and type(markdown_text) in _STRING_TYPES
            and type(message_id) in _STRING_TYPES
            and type(arguments) in _LIST_TYPES
        ):
            for key in ("text", "markdown", "id"):
                _str(message.get(key), f"message.{key}")
            _lst(arguments, "message.arguments")
        if arguments is None:
            arguments = ()
        else:
            for index, argument in enumerate(arguments):
                if type(argument) is not str:
                    raise _Wrong(f"message.arguments[{index}]", A_STRING)
        if not text and markdown_text:
            text, markdown = markdown_text, True

    has_file = False
    artifact = region = logical_entry = None
    locations = get("locations")
    if locations is not None:
        for index, location in enumerate(_lst(locations, "locations")):
            try:
                physical, a, r, logical = _location(location, True)
            except _Wrong as wrong:
                raise wrong.under(f"locations[{index}]") from None
            if physical and not has_file:
                has_file, artifact, region = True, a, r
            if logical is not None and logical_entry is None:
                logical_entry = logical
    related = get("relatedLocations")
    if related is not None:
        related = _lst(related, "relatedLocations")
        for index, location in enumerate(related):
            try:
                _location(location, False)
                _int(location.get("id"), "id")
            except _Wrong as wrong:
                raise wrong.under(f"relatedLocations[{index}]") from None
    partial = _string_map(get("partialFingerprints"), "partialFingerprints")
    full = _string_map(get("fingerprints"), "fingerprints")
    suppressed = False
    suppressions = get("suppressions")
    if suppressions is not None:
        for index, suppression in enumerate(_objects(suppressions, "suppressions")):
            status = _str(suppression.get("status"), f"suppressions[{index}].status")
            suppressed = suppressed or status is None or status == "accepted"
    properties = _obj(get("properties"), "properties")

    # Checked: now, is it a finding at all?
    if (kind is not None and kind != "fail") or baseline == "absent" or suppressed:
        return None

    if rule_index is not None and rule_index < 0:
        rule_index = None
    rule = run.rule(component, rule_index, rule_id, rule_guid)
    if not rule_id:
        rule_id = rule.id if rule is not None else ""

    path = snippet = ""
    start_line = start_column = None
    if artifact is not None:
        path = run.resolver.path(
            artifact.get("uri"), artifact.get("uriBaseId"), artifact.get("index")
        )
    if region is not None:
        start_line = _positive(region.get("startLine"))
        start_column = _positive(region.get("startColumn"))
        snippet_object = region.get("snippet")
        if snippet_object is not None:
            snippet = (snippet_object.get("text") or "").strip()
    logical = ""
    if logical_entry is not None:
        logical = (
            logical_entry.get("fullyQualifiedName") or logical_entry.get("name") or ""
        )
        index = logical_entry.get("index")
        if (
            not logical
            and index is not None
            and 0 <= index < len(run.logical_locations)
        ):
            logical = run.logical_locations[index]

    text = _message_text(
        run, rule, component, text, markdown, message_id, arguments, related
    )

    severity = _score_severity(properties) if properties else None
    if severity is None and rule is not None:
        severity = rule.score_severity
    if severity is None:
        if level not in LEVEL_SEVERITY:
            level = rule.level if rule is not None and rule.level else "warning"
        severity = LEVEL_SEVERITY[level]

    fingerprint = _fingerprint(partial, full) if partial or full else ""
    if fingerprint:
        basis = (
            IDENTITY_VERSION,
            run.tool_key,
            run.category_key,
            rule_id,
            path,
            "fingerprints",
            fingerprint,
        )
    else:
        basis = (
            IDENTITY_VERSION,
            run.tool_key,
            run.category_key,
            rule_id,
            path,
            "location",
            str(start_line or ""),
            str(start_column or ""),
            snippet,
            text,
            "" if path else logical,
        )
    identity = hashlib.sha256(
        "\x00".join(basis).encode("utf-8", "surrogatepass")
    ).hexdigest()

    return SarifResult(
        run_index=run.index,
        tool_name=run.public.tool_name,
        category=run.public.category,
        identity=identity,
        rule_id=run.display_rule_id(rule_id),
        rule_name=rule.name if rule is not None else "",
        message=clip(visible(text, multiline=True), MAX_MESSAGE),
        severity=severity,
        path=run.display_path(path) if path else "",
        start_line=start_line,
        start_column=start_column,
        logical_location=clip(visible(logical), MAX_LOGICAL) if logical else "",
    )


def _message_text(run, rule, component, text, markdown, message_id, arguments, related):
    """The result's message as plain text (§3.11): its text, or the rule's message
    string it names, with placeholders filled in and embedded links rendered."""
    if not text and message_id:
        for strings in (
            rule.message_strings if rule is not None else {},
            component.message_strings,
            run.driver.message_strings,
        ):
            text = strings.get(message_id)
            if text:
                break
    if not text:
        return rule.description if rule is not None else ""
    if arguments:
        text = message_fill(text, arguments)
    if not markdown and ("[" in text or "]" in text):
        text = message_links(text, _related_lookup(run, related or ()))
    return text


def _related_lookup(run: _Run, related):
    """A function from a relatedLocations id to "path:line" (or "")."""

    def lookup(location_id: int) -> str:
        for location in related:
            if location.get("id") != location_id:
                continue
            physical = location.get("physicalLocation") or {}
            artifact = physical.get("artifactLocation") or {}
            path = run.resolver.path(
                artifact.get("uri"), artifact.get("uriBaseId"), artifact.get("index")
            )
            if not path:
                return ""
            line = _positive((physical.get("region") or {}).get("startLine"))
            shown = run.display_path(path)
            return f"{shown}:{line}" if line else shown
        return ""

    return lookup


def _fingerprint(partial: dict | None, full: dict | None) -> str:
    """The usable fingerprint entries, sorted, as one string ("" when none)."""
    entries = []
    for tag, given in (("partial", partial), ("full", full)):
        if given:
            for key, value in given.items():
                if _usable(value):
                    entries.append(f"{tag}\x1f{key}\x1f{value.strip()}")
    if not entries:
        return ""
    entries.sort()
    return "\x1e".join(entries)
