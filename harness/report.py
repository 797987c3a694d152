"""Reports of a harness run: a readable table, JSON and JUnit XML (for CI)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterable

from harness.checks.result import CheckResult


def _compared_text(result: CheckResult) -> str:
    parts = []
    for key, value in result.compared.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{value} {key}")
    return ", ".join(parts)


def table(results: Iterable[CheckResult], limit: int = 15) -> str:
    """A fixed-width table, one line per check, then each failing check's differences."""
    results = list(results)
    rows = [("check", "result", "compared", "differences", "time")]
    for r in results:
        verdict = "PASS" if r.passed else ("ERROR" if r.error else "FAIL")
        rows.append((r.name, verdict, _compared_text(r), str(len(r.differences)),
                     f"{r.timings.get('total', sum(r.timings.values())):.1f}s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    for r in results:
        if r.passed and not r.notes:
            continue
        lines.append("")
        lines.append(r.summary(limit))
    passed = sum(r.passed for r in results)
    lines.append("")
    lines.append(f"{passed}/{len(results)} checks passed")
    return "\n".join(lines)


def to_json(results: Iterable[CheckResult], extra: dict | None = None) -> dict:
    results = list(results)
    return {
        "passed": all(r.passed for r in results),
        "checks": [r.to_dict() for r in results],
        **(extra or {}),
    }


def write_json(path: str | Path, results: Iterable[CheckResult], extra: dict | None = None) -> None:
    Path(path).write_text(json.dumps(to_json(results, extra), indent=2, default=str) + "\n")


def junit_xml(results: Iterable[CheckResult], suite: str = "mlflow-harness") -> str:
    """One <testcase> per check; a failure's message is its first difference, its text all of them."""
    results = list(results)
    root = ET.Element("testsuites")
    total = sum(r.timings.get("total", 0.0) for r in results)
    ts = ET.SubElement(
        root, "testsuite", name=suite, tests=str(len(results)),
        failures=str(sum(1 for r in results if r.differences and not r.error)),
        errors=str(sum(1 for r in results if r.error)), time=f"{total:.3f}",
    )
    for r in results:
        case = ET.SubElement(ts, "testcase", classname=suite, name=r.name,
                             time=f"{r.timings.get('total', 0.0):.3f}")
        if r.error:
            el = ET.SubElement(case, "error", message=r.error[:500], type="CheckError")
            el.text = r.summary(limit=1000)
        elif r.differences:
            el = ET.SubElement(case, "failure", message=str(r.differences[0])[:500],
                               type=f"{len(r.differences)} differences")
            el.text = r.summary(limit=1000)
        out = ET.SubElement(case, "system-out")
        out.text = json.dumps({"subject": r.subject, "compared": r.compared, "timings": r.timings,
                               "details": r.details, "notes": r.notes}, default=str, indent=1)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit_xml(path: str | Path, results: Iterable[CheckResult], suite: str = "mlflow-harness") -> None:
    Path(path).write_text(junit_xml(results, suite))
