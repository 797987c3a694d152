"""The structured outcome every check returns: passed, what was compared, each difference, timings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Difference:
    """One precise finding, e.g. location="metric epoch_loss step 3", message="missing in azureml"."""

    location: str
    message: str
    expected: Any = None
    actual: Any = None

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass
class CheckResult:
    name: str
    subject: str = ""  # what was checked, e.g. "run 1a2b… (databricks) vs its azureml mirror"
    compared: dict[str, Any] = field(default_factory=dict)  # counts of what was compared
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # explanations that do not fail the check
    timings: dict[str, float] = field(default_factory=dict)  # seconds
    details: dict[str, Any] = field(default_factory=dict)  # check-specific measurements
    error: str | None = None  # the check itself could not run to the end

    @property
    def passed(self) -> bool:
        return self.error is None and not self.differences

    def differ(self, location: str, message: str, expected: Any = None, actual: Any = None) -> None:
        self.differences.append(Difference(location, message, expected, actual))

    def summary(self, limit: int = 20) -> str:
        """Readable multi-line text: the verdict, then each difference (used in assertion messages)."""
        head = f"{self.name}: {'PASSED' if self.passed else 'FAILED'}"
        if self.subject:
            head += f" — {self.subject}"
        lines = [head]
        if self.error:
            lines.append(f"  error: {self.error}")
        for diff in self.differences[:limit]:
            lines.append(f"  - {diff}")
        if len(self.differences) > limit:
            lines.append(f"  ... and {len(self.differences) - limit} more differences")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["passed"] = self.passed
        data["differences"] = [{**asdict(d), "text": str(d)} for d in self.differences]
        return data

    def __str__(self) -> str:
        return self.summary()


def first_line_error(exc: Exception) -> str:
    """An exception as a check's error: its type and first line."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
