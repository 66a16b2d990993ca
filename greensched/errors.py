"""Error types shared by every GreenSched module.

All user-facing input errors subclass :class:`ValueError` and carry *where* the problem is
(file, line, column, index labels), *what* the bad value was and *what was expected*, so that
the CLI can print them as one line without a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class GreenSchedError(ValueError):
    """Base class of all input errors raised by GreenSched."""


class LocatedError(GreenSchedError):
    """An input error located in a file.

    Parameters
    ----------
    message
        What is wrong and what was expected.
    file
        The file at fault (or ``None``).
    line
        1-based line number in the file (the header is line 1), or ``None``.
    column
        Column name at fault, or ``None``.
    value
        The offending value (shown with ``repr``), or the sentinel ``_MISSING`` when not relevant.
    """

    _MISSING: Any = object()

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        column: str | None = None,
        value: Any = _MISSING,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.line = line
        self.column = column
        self.value = value
        self.reason = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        prefix = ", ".join(where)
        val = "" if self.value is LocatedError._MISSING else f" (got {self.value!r})"
        return f"{prefix}: {self.reason}{val}" if prefix else f"{self.reason}{val}"


class ScenarioError(LocatedError):
    """A scenario directory does not follow the exchange format (scenario-format.md)."""


class DataFileError(LocatedError):
    """A raw data file (grid, price, ping, trace, measurement) cannot be read as expected."""


class InfeasibleError(GreenSchedError):
    """No allocation satisfies the scenario; ``diagnosis`` lists the violated families."""

    def __init__(self, message: str, diagnosis: list[dict[str, Any]] | None = None) -> None:
        self.diagnosis = diagnosis or []
        super().__init__(message)


class SolverUnavailableError(GreenSchedError):
    """The requested solver backend is not installed or not licensed for this model size."""
