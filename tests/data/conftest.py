"""Fixtures of the data-adapter tests.

The real files live in ``../shared/data`` beside the repository root; tests that need them skip
(with the path in the message) only when that directory is absent.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared reference-data directory (skip when absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data not found: {SHARED_DATA}")
    return SHARED_DATA


EditCsv = Callable[..., Path]


@pytest.fixture
def edit_csv(tmp_path: Path) -> EditCsv:
    """Return ``edit(src, name=None, n_lines=None, header=None, cells=None, drop=None)``.

    Writes a modified copy of CSV ``src`` into ``tmp_path`` and returns its path:

    * ``n_lines``: keep only the first ``n_lines`` lines (header included);
    * ``header``: ``{old: new}`` renames of header cells;
    * ``cells``: ``{(line, column): text}`` replacements (1-based line, header = 1);
    * ``drop``: 1-based line numbers to delete.
    """

    def edit(
        src: Path,
        name: str | None = None,
        *,
        n_lines: int | None = None,
        header: dict[str, str] | None = None,
        cells: dict[tuple[int, str], str] | None = None,
        drop: set[int] | None = None,
    ) -> Path:
        text = Path(src).read_text(encoding="utf-8")
        rows = list(csv.reader(io.StringIO(text)))
        if n_lines is not None:
            rows = rows[:n_lines]
        head = rows[0]
        for (line, column), value in (cells or {}).items():
            rows[line - 1][head.index(column)] = value
        if header:
            rows[0] = [header.get(c, c) for c in head]
        if drop:
            rows = [r for i, r in enumerate(rows, start=1) if i not in drop]
        out = tmp_path / (name or Path(src).name)
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        out.write_text(buf.getvalue(), encoding="utf-8")
        return out

    return edit


def _assert_located(exc: BaseException, path: Path, line: int | None, column: str | None) -> None:
    msg = str(exc)
    assert str(path) in msg, msg
    assert exc.file == str(path)  # type: ignore[attr-defined]
    if line is not None:
        assert f"line {line}" in msg, msg
        assert exc.line == line  # type: ignore[attr-defined]
    if column is not None:
        assert repr(column) in msg, msg
        assert exc.column == column  # type: ignore[attr-defined]


@pytest.fixture
def located() -> Callable[[BaseException, Path, int | None, str | None], None]:
    """Return a checker: ``located(exc, path, line, column)`` asserts that the DataFileError
    message and attributes name the file, the 1-based line and the column."""
    return _assert_located
