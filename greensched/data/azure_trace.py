"""Azure LLM inference traces (2023).

Source: Azure/AzurePublicDataset, ``AzureLLMInferenceTrace_code.csv`` and
``AzureLLMInferenceTrace_conv.csv``; data licence CC-BY 4.0. Cite: P. Patel et al.,
"Splitwise: Efficient Generative LLM Inference Using Phase Splitting", ISCA 2024.

Each row is one request: ``TIMESTAMP`` (arrival time, ``YYYY-MM-DD HH:MM:SS.fffffff`` with a
7-digit fraction, i.e. 100 ns resolution), ``ContextTokens`` (prompt length) and
``GeneratedTokens`` (output length).

Time zone: the timestamps are naive and the dataset does not state their zone. This module
treats them as **UTC** by default (an assumption — pass ``tz=`` to state otherwise). They are
parsed exactly, to the nanosecond (no rounding of the 7-digit fraction).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from greensched.data._common import AmbiguousPolicy, NonexistentPolicy, read_raw
from greensched.errors import DataFileError

__all__ = ["read_azure_trace", "read_azure_traces"]

_SOURCE = (
    "Azure LLM inference trace 2023 (Azure/AzurePublicDataset, CC-BY 4.0); "
    "Patel et al., 'Splitwise', ISCA 2024"
)
_TYPE_RE = re.compile(r"(?:^|[_\-.])(code|conv)(?:[_\-.]|$)", re.IGNORECASE)
_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def _query_type(path: Path, query_type: str | None) -> str:
    if query_type is not None:
        return query_type
    m = _TYPE_RE.search(path.stem)
    if m is None:
        raise DataFileError(
            "cannot tell the query type from the file name (expected '..._code' or '..._conv');"
            " pass query_type=",
            file=path,
        )
    return m.group(1).lower()


def read_azure_trace(
    path: str | Path,
    *,
    query_type: str | None = None,
    tz: str = "UTC",
    ambiguous: AmbiguousPolicy = "raise",
    nonexistent: NonexistentPolicy = "raise",
) -> pd.DataFrame:
    """Read one Azure LLM inference trace.

    Parameters
    ----------
    path
        CSV with ``TIMESTAMP, ContextTokens, GeneratedTokens``.
    query_type
        Label of the requests. Default: taken from the file name (``code`` or ``conv``).
    tz
        Time zone of the naive ``TIMESTAMP`` cells. The dataset does not state it; the default
        ``"UTC"`` is an assumption.
    ambiguous, nonexistent
        DST policies when ``tz`` has daylight-saving time (see
        :meth:`greensched.data._common.RawTable.times`); default: error.

    Returns
    -------
    pandas.DataFrame
        One row per request, sorted by arrival (stable), columns ``time_utc``
        (``datetime64[ns, UTC]``, exact to 100 ns), ``input_tokens`` and ``output_tokens``
        (int64, tokens) and ``query_type`` (categorical). ``df.attrs``: ``gaps`` (always empty:
        an event trace has no regular grid and is neither resampled nor filled), ``tz_assumed``
        and ``source``.

    Raises
    ------
    greensched.errors.DataFileError
        Missing column, unparsable or missing time, missing, non-integer or negative token
        count, or a query type that cannot be inferred from the file name.
    """
    p = Path(path)
    qtype = _query_type(p, query_type)
    raw = read_raw(p, required=_COLUMNS)
    times, keep = raw.times(
        "TIMESTAMP",
        fmt="%Y-%m-%d %H:%M:%S.%f",
        tz=tz,
        ambiguous=ambiguous,
        nonexistent=nonexistent,
    )
    if not keep.all():
        raw = raw.subset(keep)
    inp = raw.numeric("ContextTokens", allow_missing=False, integer=True, min_value=0)
    out = raw.numeric("GeneratedTokens", allow_missing=False, integer=True, min_value=0)
    df = pd.DataFrame(
        {
            "time_utc": times,
            "input_tokens": inp,
            "output_tokens": out,
            "query_type": pd.Categorical(np.full(len(inp), qtype)),
        }
    )
    if not times.is_monotonic_increasing:
        df = df.sort_values("time_utc", kind="stable", ignore_index=True)
    df.attrs.update(gaps=[], tz_assumed=tz, query_type=qtype, source=_SOURCE)
    return df


def read_azure_traces(
    paths: str | Path | Iterable[str | Path],
    *,
    pattern: str = "AzureLLMInferenceTrace_*.csv",
    tz: str = "UTC",
) -> pd.DataFrame:
    """Read several traces (a directory or a list of files) into one table sorted by arrival.

    Parameters
    ----------
    paths
        A directory (files selected by ``pattern``) or an iterable of files.
    pattern
        Glob used when ``paths`` is a directory.
    tz
        Time zone of the naive timestamps (default ``"UTC"``, an assumption).

    Returns
    -------
    pandas.DataFrame
        Same columns as :func:`read_azure_trace`; ``query_type`` is categorical over all labels.
    """
    if isinstance(paths, (str, Path)) and Path(paths).is_dir():
        files = sorted(Path(paths).glob(pattern))
        if not files:
            raise FileNotFoundError(f"no files matching {pattern!r} in {paths}")
    elif isinstance(paths, (str, Path)):
        files = [Path(paths)]
    else:
        files = [Path(p) for p in paths]
    frames = [read_azure_trace(f, tz=tz) for f in files]
    labels = sorted({str(f.attrs["query_type"]) for f in frames})
    for f in frames:
        f["query_type"] = f["query_type"].cat.set_categories(labels)
    df = pd.concat(frames, ignore_index=True)
    df = df.sort_values("time_utc", kind="stable", ignore_index=True)
    df.attrs = {"gaps": [], "tz_assumed": tz, "source": _SOURCE}
    return df
