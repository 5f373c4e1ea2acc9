"""Small builders for SARIF documents used across the projects tests."""

import json


def sarif_result(
    rule_id="B602",
    *,
    uri="app.py",
    line=10,
    message="subprocess call with shell=True identified",
    level="error",
    snippet=None,
    partial_fingerprints=None,
    properties=None,
    **extra,
):
    region = {"startLine": line} if line is not None else {}
    if snippet is not None:
        region["snippet"] = {"text": snippet}
    result = {
        "ruleId": rule_id,
        "level": level,
        "message": {"text": message},
        "locations": [
            {"physicalLocation": {"artifactLocation": {"uri": uri}, "region": region}}
        ],
    }
    if partial_fingerprints is not None:
        result["partialFingerprints"] = partial_fingerprints
    if properties is not None:
        result["properties"] = properties
    result.update(extra)
    return result


def sarif_doc(results, *, tool="Bandit", version="1.9.4", rules=None):
    driver = {"name": tool, "version": version}
    if rules is not None:
        driver["rules"] = rules
    return {
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{"tool": {"driver": driver}, "results": results}],
    }


def sarif_bytes(results, **kwargs) -> bytes:
    return json.dumps(sarif_doc(results, **kwargs)).encode()


def many_results(count, *, tool_rule="R1"):
    return [
        sarif_result(
            f"{tool_rule}{i % 7}",
            uri=f"src/module_{i % 97}.py",
            line=i + 1,
            message=f"Issue {i}",
            level=("error", "warning", "note", "none")[i % 4],
        )
        for i in range(count)
    ]


def sarif_run(
    results,
    *,
    tool="Bandit",
    version="1.9.4",
    automation_id=None,
    successful=None,
    notifications=(),
):
    """One run; `results=None` writes `"results": null`. `successful` and
    `notifications` (error-level texts) make an invocation."""
    run = {"tool": {"driver": {"name": tool, "version": version}}, "results": results}
    if automation_id is not None:
        run["automationDetails"] = {"id": automation_id}
    if successful is not None or notifications:
        invocation = {
            "executionSuccessful": True if successful is None else successful,
            "toolExecutionNotifications": [
                {"level": "error", "message": {"text": text}} for text in notifications
            ],
        }
        run["invocations"] = [invocation]
    return run


def sarif_runs_bytes(*runs) -> bytes:
    """A document of several runs (see sarif_run)."""
    return json.dumps({"version": "2.1.0", "runs": list(runs)}).encode()
