"""Reading SARIF 2.1.0 into plain results. No database access here.

Spec: https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html

Fingerprints (what makes two results "the same finding" across scans), in order:

1. `result.partialFingerprints` when given: the tool's own stable hashes (e.g. CodeQL's
   `primaryLocationLineHash`). Every key/value pair is used, sorted by key, so the
   result does not depend on the order the tool wrote them in.
2. `result.fingerprints` when given, the same way.
3. Otherwise our own: rule id, artifact location URI, start line, and the region's
   snippet text (whitespace-trimmed) or, without a snippet, the message text.

Each is SHA-256'd together with the tool name and rule id (and a tag saying which of the
three it is), so two tools, or two rules of one tool, never share a finding. A finding's
fingerprint is therefore always 64 hex characters. The fallback changes when the code
moves to another line: that reads as "resolved here, new there", which is the honest
answer when a scanner gives no fingerprint of its own.

Severity: a numeric `security-severity` property (CVSS-like, 0.0-10.0; on the result's
properties first, then the rule's) maps >= 9.0 Critical, >= 7.0 High, >= 4.0 Medium,
> 0.1 Low, else Info. Without it, the SARIF level (the result's, else the rule's
defaultConfiguration, else "warning" as the spec says): error High, warning Medium,
note Low, none Info.

Results whose `kind` is not "fail" (pass, notApplicable, informational...) and results
carrying an accepted suppression are not findings and are skipped.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from django.utils.translation import gettext as _

from projects.exceptions import SarifError
from projects.models import Severity

SUPPORTED_VERSION = "2.1.0"

# Column sizes in projects.models.Finding; longer text is cut, never rejected.
MAX_TOOL = 200
MAX_RULE = 255
MAX_PATH = 1000
MAX_MESSAGE = 20_000

LEVEL_SEVERITY = {
    "error": Severity.HIGH,
    "warning": Severity.MEDIUM,
    "note": Severity.LOW,
    "none": Severity.INFO,
}


@dataclass(frozen=True, slots=True)
class SarifResult:
    tool_name: str
    fingerprint: str
    rule_id: str
    rule_name: str
    message: str
    severity: str
    path: str
    start_line: int | None


@dataclass(frozen=True, slots=True)
class SarifRun:
    tool_name: str
    tool_version: str


@dataclass(frozen=True, slots=True)
class SarifReport:
    runs: list[SarifRun]
    # One per fingerprint, first occurrence wins.
    results: list[SarifResult]

    @property
    def tool_names(self) -> list[str]:
        return list(dict.fromkeys(run.tool_name for run in self.runs))


def sarif_parse(data: bytes) -> SarifReport:
    """Parse and validate SARIF bytes. Raises SarifError saying what to fix."""
    if not data or not data.strip():
        raise SarifError(_("The file is empty. Upload a SARIF 2.1.0 JSON file."))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SarifError(
            _("The file is not UTF-8 text. SARIF files are JSON encoded as UTF-8.")
        ) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SarifError(
            _(
                "The file is not valid JSON (line %(line)s, column %(col)s: %(msg)s). "
                "Export the scan as SARIF JSON, e.g. `bandit -f sarif`."
            )
            % {"line": exc.lineno, "col": exc.colno, "msg": exc.msg}
        ) from None
    except RecursionError:
        raise SarifError(
            _("The JSON is nested too deeply to be a SARIF file.")
        ) from None
    return sarif_read(document)


def sarif_read(document) -> SarifReport:
    """Validate an already-decoded SARIF document and extract its results."""
    if not isinstance(document, dict):
        raise SarifError(
            _(
                'The top level of a SARIF file must be a JSON object with "version" '
                'and "runs".'
            )
        )
    version = document.get("version")
    if version != SUPPORTED_VERSION:
        if version is None:
            raise SarifError(
                _(
                    'The "version" property is missing. Only SARIF 2.1.0 is '
                    'supported: the file must contain "version": "2.1.0".'
                )
            )
        raise SarifError(
            _(
                'SARIF version "%(version)s" is not supported. Export the scan as '
                "SARIF 2.1.0."
            )
            % {"version": _clip(str(version), 40)}
        )
    runs = document.get("runs")
    if not isinstance(runs, list):
        raise SarifError(
            _('"runs" must be a list of runs (it may be empty), one per tool run.')
        )

    report_runs: list[SarifRun] = []
    results: dict[str, SarifResult] = {}
    for run_index, run in enumerate(runs):
        where = f"runs[{run_index}]"
        run = _object(run, where)
        driver = _object(
            _object(run.get("tool"), f"{where}.tool", required=True).get("driver"),
            f"{where}.tool.driver",
            required=True,
        )
        tool_name = driver.get("name")
        if not isinstance(tool_name, str) or not tool_name.strip():
            raise SarifError(
                _(
                    "%(where)s.tool.driver.name is missing: each run must name the "
                    "tool that produced it."
                )
                % {"where": where}
            )
        tool_name = _clip(_clean(tool_name.strip()), MAX_TOOL)
        tool_version = driver.get("semanticVersion") or driver.get("version") or ""
        report_runs.append(
            SarifRun(
                tool_name=tool_name, tool_version=_clip(_clean(str(tool_version)), 100)
            )
        )

        rules = _list(driver.get("rules"), f"{where}.tool.driver.rules")
        rules_by_id = {}
        for rule in rules:
            if isinstance(rule, dict) and isinstance(rule.get("id"), str):
                rules_by_id.setdefault(rule["id"], rule)
        artifacts = _list(run.get("artifacts"), f"{where}.artifacts")

        raw_results = _list(run.get("results"), f"{where}.results")
        for result_index, raw in enumerate(raw_results):
            result = _result(
                _object(raw, f"{where}.results[{result_index}]"),
                where=f"{where}.results[{result_index}]",
                tool_name=tool_name,
                rules=rules,
                rules_by_id=rules_by_id,
                artifacts=artifacts,
            )
            if result is not None:
                results.setdefault(result.fingerprint, result)
    return SarifReport(runs=report_runs, results=list(results.values()))


def severity_from_score(score: float) -> str:
    """Map a CVSS-like `security-severity` score to a Severity value."""
    if score >= 9.0:
        return Severity.CRITICAL
    if score >= 7.0:
        return Severity.HIGH
    if score >= 4.0:
        return Severity.MEDIUM
    if score > 0.1:
        return Severity.LOW
    return Severity.INFO


def _result(result, *, where, tool_name, rules, rules_by_id, artifacts):
    if result.get("kind", "fail") != "fail":
        return None
    if _is_suppressed(result):
        return None

    rule = _rule_for(result, rules, rules_by_id)
    rule_id = result.get("ruleId")
    if not isinstance(rule_id, str) or not rule_id:
        reference = result.get("rule")
        rule_id = reference.get("id") if isinstance(reference, dict) else None
    if not isinstance(rule_id, str) or not rule_id:
        rule_id = rule.get("id") if isinstance(rule.get("id"), str) else ""
    if not rule_id:
        raise SarifError(
            _(
                "%(where)s has no rule: give it a ruleId (or a rule reference) so "
                "the finding can be named."
            )
            % {"where": where}
        )
    rule_name = rule.get("name") if isinstance(rule.get("name"), str) else ""

    message = _message(result.get("message"), rule)
    path, start_line, snippet = _location(result, where, artifacts)
    severity = _severity(result, rule)
    fingerprint = _fingerprint(
        result,
        tool_name=tool_name,
        rule_id=rule_id,
        path=path,
        start_line=start_line,
        evidence=snippet or message,
    )
    return SarifResult(
        tool_name=tool_name,
        fingerprint=fingerprint,
        rule_id=_clip(_clean(rule_id), MAX_RULE),
        rule_name=_clip(_clean(rule_name), MAX_RULE),
        message=_clip(_clean(message), MAX_MESSAGE),
        severity=severity,
        path=_clip(_clean(path), MAX_PATH),
        start_line=start_line,
    )


def _rule_for(result, rules, rules_by_id) -> dict:
    index = result.get("ruleIndex")
    reference = result.get("rule")
    if index is None and isinstance(reference, dict):
        index = reference.get("index")
    if (
        isinstance(index, int)
        and not isinstance(index, bool)
        and 0 <= index < len(rules)
    ):
        if isinstance(rules[index], dict):
            return rules[index]
    rule_id = result.get("ruleId")
    if not isinstance(rule_id, str) and isinstance(reference, dict):
        rule_id = reference.get("id")
    if isinstance(rule_id, str):
        # "A/B" hierarchical ids fall back to their base rule "A" (SARIF 3.52.4).
        return rules_by_id.get(rule_id) or rules_by_id.get(rule_id.split("/")[0]) or {}
    return {}


def _is_suppressed(result) -> bool:
    suppressions = result.get("suppressions")
    if not isinstance(suppressions, list):
        return False
    return any(
        isinstance(s, dict) and s.get("status", "accepted") == "accepted"
        for s in suppressions
    )


_PLACEHOLDER = re.compile(r"\{(\d+)\}")


def _message(message, rule) -> str:
    if isinstance(message, dict):
        for key in ("text", "markdown"):
            if isinstance(message.get(key), str) and message[key]:
                return message[key]
        # A message string defined by the rule, with {0}-style arguments.
        strings = rule.get("messageStrings")
        if isinstance(message.get("id"), str) and isinstance(strings, dict):
            template = strings.get(message["id"])
            if isinstance(template, dict) and isinstance(template.get("text"), str):
                args = message.get("arguments")
                args = args if isinstance(args, list) else []

                def fill(match):
                    i = int(match.group(1))
                    return str(args[i]) if i < len(args) else match.group(0)

                return _PLACEHOLDER.sub(fill, template["text"])
    for key in ("shortDescription", "fullDescription"):
        description = rule.get(key)
        if isinstance(description, dict) and isinstance(description.get("text"), str):
            return description["text"]
    return ""


def _location(result, where, artifacts) -> tuple[str, int | None, str]:
    locations = _list(result.get("locations"), f"{where}.locations")
    for location in locations:
        if not isinstance(location, dict):
            continue
        physical = location.get("physicalLocation")
        if not isinstance(physical, dict):
            continue
        artifact = physical.get("artifactLocation")
        uri = ""
        if isinstance(artifact, dict):
            uri = artifact.get("uri") if isinstance(artifact.get("uri"), str) else ""
            index = artifact.get("index")
            if not uri and isinstance(index, int) and 0 <= index < len(artifacts):
                entry = artifacts[index]
                entry_location = (
                    entry.get("location") if isinstance(entry, dict) else None
                )
                if isinstance(entry_location, dict) and isinstance(
                    entry_location.get("uri"), str
                ):
                    uri = entry_location["uri"]
        region = physical.get("region")
        start_line = None
        snippet = ""
        if isinstance(region, dict):
            line = region.get("startLine")
            if (
                isinstance(line, int)
                and not isinstance(line, bool)
                and 0 < line < 2**31
            ):
                start_line = line
            snip = region.get("snippet")
            if isinstance(snip, dict) and isinstance(snip.get("text"), str):
                snippet = snip["text"].strip()
        return uri, start_line, snippet
    return "", None, ""


def _severity(result, rule) -> str:
    for properties in (result.get("properties"), rule.get("properties")):
        if isinstance(properties, dict) and "security-severity" in properties:
            score = _score(properties["security-severity"])
            if score is not None:
                return severity_from_score(score)
    level = result.get("level")
    if level not in LEVEL_SEVERITY:
        configuration = rule.get("defaultConfiguration")
        level = configuration.get("level") if isinstance(configuration, dict) else None
    return LEVEL_SEVERITY.get(level, LEVEL_SEVERITY["warning"])


def _score(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        score = float(value)
    except (TypeError, ValueError):
        return None
    return score if 0.0 <= score <= 10.0 else None


def _fingerprint(result, *, tool_name, rule_id, path, start_line, evidence) -> str:
    for kind in ("partialFingerprints", "fingerprints"):
        given = result.get(kind)
        if isinstance(given, dict) and given:
            items = sorted((str(k), str(v)) for k, v in given.items())
            basis = [kind, tool_name, rule_id, json.dumps(items, ensure_ascii=False)]
            break
    else:
        basis = [
            "location",
            tool_name,
            rule_id,
            path,
            "" if start_line is None else str(start_line),
            evidence,
        ]
    return hashlib.sha256(
        "\x00".join(basis).encode("utf-8", "surrogatepass")
    ).hexdigest()


def _object(value, where, *, required=False) -> dict:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        if value is None:
            raise SarifError(_("%(where)s is missing.") % {"where": where})
        raise SarifError(_("%(where)s must be a JSON object.") % {"where": where})
    return value


def _list(value, where) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SarifError(_("%(where)s must be a list.") % {"where": where})
    return value


def _clean(text: str) -> str:
    # NUL cannot be stored in PostgreSQL text; lone surrogates cannot be encoded.
    text = text.replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
