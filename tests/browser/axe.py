"""The accessibility scan of the browser tests: axe-core (Deque's rules, bundled in the
axe-playwright-python wheel, so nothing is downloaded) run in the page as it is now.

`assert_no_serious_violations(page)` fails on any violation of impact "serious" or
"critical", listing each rule, the elements it found and the page that explains it.
Moderate and minor findings are not failures (they are often a matter of judgement,
such as a heading level skipped on purpose)."""

from axe_playwright_python.sync_playwright import Axe

FAILING_IMPACTS = frozenset({"serious", "critical"})

# The WCAG 2.x A and AA rules and axe's best practices, as the axe browser extensions
# run them by default.
OPTIONS = {
    "resultTypes": ["violations"],
    "runOnly": {
        "type": "tag",
        "values": [
            "wcag2a",
            "wcag2aa",
            "wcag21a",
            "wcag21aa",
            "wcag22aa",
            "best-practice",
        ],
    },
}

_axe = Axe()


def serious_violations(page) -> list[dict]:
    """The serious and critical violations axe finds in `page` as it is now."""
    results = _axe.run(page, options=OPTIONS)
    return [
        violation
        for violation in results.response["violations"]
        if violation.get("impact") in FAILING_IMPACTS
    ]


def violations_report(violations: list[dict], where: str = "") -> str:
    """The violations as lines a person can act on: rule, impact, help, targets."""
    lines = [f"{len(violations)} serious or critical accessibility violation(s)"]
    if where:
        lines[0] += f" on {where}"
    for violation in violations:
        lines.append(
            f"- {violation['id']} ({violation['impact']}): {violation['help']}"
            f" <{violation['helpUrl']}>"
        )
        for node in violation["nodes"]:
            target = " ".join(str(part) for part in node["target"])
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            lines.append(f"    {target}: {summary}")
    return "\n".join(lines)


def assert_no_serious_violations(page, where: str = "") -> None:
    """Fail when axe finds a serious or critical violation in `page`."""
    violations = serious_violations(page)
    assert not violations, violations_report(violations, where or page.url)
