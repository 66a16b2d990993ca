"""Reading outcome files (CSV, JSON lines, Parquet) with the file line of every record."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pandas as pd

from greensched.errors import GreenSchedError, LocatedError

__all__ = ["read_csv", "read_jsonl", "read_parquet"]


def read_csv(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """Read a CSV as strings, with the 1-based starting line of each record."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            try:
                header = next(reader)
            except StopIteration:
                raise LocatedError("empty file; expected a header line naming the outcome "
                                   "columns", file=path, line=1) from None
            except csv.Error as exc:
                raise LocatedError(f"cannot parse as CSV ({exc})", file=path, line=1) from exc
            rows: list[list[str]] = []
            lines: list[int] = []
            while True:
                start = reader.line_num + 1
                try:
                    rec = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    raise LocatedError(f"cannot parse as CSV ({exc})", file=path,
                                       line=start) from exc
                if not rec:  # blank line
                    continue
                if len(rec) != len(header):
                    raise LocatedError(f"expected {len(header)} fields as in the header, found "
                                       f"{len(rec)}", file=path, line=start)
                rows.append(rec)
                lines.append(start)
    except UnicodeDecodeError as exc:
        raise LocatedError(f"not UTF-8 text ({exc.reason})", file=path) from exc
    df = pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(
        {h: pd.Series([], dtype=object) for h in header})
    return df, lines


def read_jsonl(path: Path) -> tuple[pd.DataFrame, list[int]]:
    recs: list[dict[str, Any]] = []
    lines: list[int] = []
    try:
        with path.open(encoding="utf-8") as fh:
            for no, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    obj = json.loads(text)
                except ValueError as exc:
                    raise LocatedError(f"not a JSON object ({exc})", file=path, line=no) from exc
                if not isinstance(obj, dict):
                    raise LocatedError("expected one JSON object per line", file=path, line=no)
                recs.append(obj)
                lines.append(no)
    except UnicodeDecodeError as exc:
        raise LocatedError(f"not UTF-8 text ({exc.reason})", file=path) from exc
    return pd.DataFrame.from_records(recs) if recs else pd.DataFrame(), lines


def read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except ImportError as exc:
        raise GreenSchedError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow), "
                              "or give the outcomes as CSV") from exc
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise LocatedError(f"cannot read as Parquet ({exc})", file=path) from exc
