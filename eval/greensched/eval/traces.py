"""Job streams for a scenario from the Azure LLM inference traces (or the scenario's demand).

Source: Azure/AzurePublicDataset 2023 LLM inference traces (``AzureLLMInferenceTrace_code.csv``,
``..._conv.csv``; CC-BY 4.0; Patel et al., "Splitwise", ISCA 2024), read with
:func:`greensched.data.azure_trace.read_azure_trace`.

How a trace becomes jobs (:func:`jobs_from_traces`)
    * **Query type → trace**: a scenario query type whose name contains ``code`` draws from the
      code trace, every other type from the conversation trace (the letter's chat,
      summarization, math and image are conversational requests).  When only one trace is given
      every type uses it.
    * **Intensity**: the number of jobs of (hour, area, query_type) follows the scenario's demand
      ``queries`` × ``scale``: a Poisson draw with that mean (``counts="poisson"``, default) or
      that number rounded (``counts="round"``).
    * **Arrival pattern and local time**: the trace is a repeating pattern of period P (its span
      stretched to whole hours: the 2023 traces span 57–58 min and become a 1-hour pattern).  Its
      timestamps (UTC by the adapter's assumption) are read as *local clock time* of the users.
      Area i is at UTC offset o_i = longitude / 15 h (or the ``utc_offset_h`` / IANA ``tz``
      column of ``areas.csv`` when present); the UTC slot t of the scenario (hour 0 at the
      scenario's ``start``, else 00:00 UTC) is the local window [start + t + o_i, +1 h), which
      maps to the pattern phase (local time − first trace timestamp) mod P.  A job is a trace
      request drawn uniformly from that window (with replacement): its arrival keeps the
      request's offset in the window (plus a uniform jitter of one mean inter-arrival gap, so
      that repeats do not coincide) and its token counts are the request's own — bursts and the
      joint (input, output) distribution of the trace carry over, shifted per area.
    * **SLA**: the scenario's ``delay_limit_s`` of the job's (area, query_type) unless given.

Without trace files (:func:`jobs_from_demand`, and ``jobs_from_traces(traces=None)``) token counts
come from the traces' empirical quantiles shipped in :data:`TOKEN_QUANTILES` (28 levels, linear
interpolation, input and output drawn independently: their Spearman correlation is −0.02 (code)
and 0.07 (conv)) and arrivals are uniform within the hour (a Poisson process).

Output lengths are heavy-tailed: code mean 28 / median 13 / p99 252 / max 1899 tokens, conversation
mean 211 / median 129 / p99 601 / max 1000.  A lognormal fitted by maximum likelihood (μ, σ of log
tokens) misses the shape — Kolmogorov–Smirnov distance 0.133 (code: μ 2.79, σ 0.85) and 0.182
(conv: μ 5.02, σ 0.86; the conversation trace is bimodal around 100 and 400 tokens and capped at
1000) — so the twin samples the **empirical** distribution (:func:`length_fit_table` recomputes
both).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from greensched.data.azure_trace import read_azure_trace
from greensched.errors import DataFileError, GreenSchedError
from greensched.scenario import Scenario

__all__ = [
    "TOKEN_PROBS",
    "TOKEN_QUANTILES",
    "TRACE_KINDS",
    "TracePattern",
    "area_utc_offsets_h",
    "jobs_from_demand",
    "jobs_from_traces",
    "length_fit_table",
    "load_traces",
    "trace_kind",
]

TRACE_KINDS = ("code", "conv")

#: Probability levels of :data:`TOKEN_QUANTILES`.
TOKEN_PROBS = (0.0, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5,
               0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99, 0.995, 0.999, 1.0)
#: Empirical quantiles (tokens) of the 2023 Azure traces at :data:`TOKEN_PROBS` (numpy "linear"
#: quantiles of 8,819 code and 19,366 conversation requests).
TOKEN_QUANTILES: dict[str, dict[str, tuple[float, ...]]] = {
    "code": {
        "input_tokens": (3.0, 12.0, 17.0, 44.0, 75.0, 147.0, 232.0, 385.6, 578.0, 770.0, 938.6,
                         1075.0, 1261.1, 1469.0, 1690.0, 1909.0, 2163.7, 2433.0, 2744.5, 3192.4,
                         3920.2, 5187.6, 7303.3, 7435.0, 7436.0, 7436.0, 7437.0, 7437.0),
        "output_tokens": (6.0, 6.0, 6.0, 6.0, 6.0, 7.0, 7.0, 8.0, 9.0, 9.0, 10.0, 11.0, 12.0,
                          13.0, 14.0, 16.0, 18.0, 20.0, 24.0, 29.0, 39.0, 55.0, 90.0, 145.0,
                          251.5, 359.4, 825.3, 1899.0),
    },
    "conv": {
        "input_tokens": (2.0, 16.8, 29.0, 120.0, 181.0, 207.0, 372.0, 387.0, 396.0, 403.0, 414.0,
                         703.0, 984.0, 1020.0, 1045.0, 1071.0, 1097.0, 1130.0, 1189.0, 1315.0,
                         1876.2, 2734.5, 4083.0, 4092.0, 4142.0, 4831.0, 6179.1, 14050.0),
        "output_tokens": (7.0, 14.0, 16.0, 28.0, 41.0, 54.0, 67.0, 77.0, 85.0, 91.0, 96.0, 103.0,
                          113.0, 129.0, 151.0, 177.0, 217.0, 384.0, 395.0, 400.0, 411.0, 424.0,
                          451.0, 522.0, 601.0, 643.2, 954.0, 1000.0),
    },
}

_HOUR_S = 3600.0


def trace_kind(query_type: str) -> str:
    """Trace a scenario query type draws from: ``code`` if its name contains it, else ``conv``."""
    return "code" if "code" in str(query_type).lower() else "conv"


@dataclass
class TracePattern:
    """One trace as a repeating arrival pattern with token counts.

    Attributes
    ----------
    kind
        ``code`` or ``conv``.
    phase_s
        Arrival phases in [0, period_s), sorted.
    period_s
        Pattern period P (whole hours).
    input_tokens, output_tokens
        Token counts aligned with ``phase_s``.
    origin_s
        First timestamp of the trace (seconds since the Unix epoch, read as a local clock).
    jitter_s
        Width of the uniform jitter added to drawn arrivals (the mean inter-arrival gap).
    source
        File it was read from.
    """

    kind: str
    phase_s: np.ndarray
    period_s: float
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    origin_s: float
    jitter_s: float
    source: str = ""

    @classmethod
    def from_frame(cls, df: pd.DataFrame, kind: str, source: str = "") -> TracePattern:
        """Pattern of a :func:`read_azure_trace` table (``time_utc``, token columns)."""
        if len(df) < 2:
            raise DataFileError("a trace needs at least two requests", file=source or None)
        t = df["time_utc"].astype("int64").to_numpy() / 1e9
        t0 = float(t.min())
        rel = t - t0
        span = float(rel.max())
        gap = span / (len(rel) - 1) if span > 0 else _HOUR_S / len(rel)
        period = max(1.0, round((span + gap) / _HOUR_S)) * _HOUR_S
        phase = rel * (period / (span + gap))
        order = np.argsort(phase, kind="stable")
        return cls(
            kind=kind,
            phase_s=phase[order],
            period_s=float(period),
            input_tokens=df["input_tokens"].to_numpy(dtype=np.int64)[order],
            output_tokens=df["output_tokens"].to_numpy(dtype=np.int64)[order],
            origin_s=t0,
            jitter_s=float(period / len(phase)),
            source=source,
        )

    @property
    def n(self) -> int:
        return len(self.phase_s)


def load_traces(paths: str | Path | Iterable[str | Path]) -> dict[str, TracePattern]:
    """Read trace files (a file, a directory of ``AzureLLMInferenceTrace_*.csv`` or a list).

    Returns ``{kind: TracePattern}``; the kind comes from the file name (``code`` / ``conv``).
    A bad file raises :class:`~greensched.errors.DataFileError` naming file, line and column.
    """
    if isinstance(paths, str | Path):
        p = Path(paths)
        if p.is_dir():
            files = sorted(p.glob("AzureLLMInferenceTrace_*.csv"))
            if not files:
                raise DataFileError("no AzureLLMInferenceTrace_*.csv files in directory", file=p)
        elif p.is_file():
            files = [p]
        else:
            raise DataFileError("trace file not found", file=p)
    else:
        files = [Path(f) for f in paths]
    out: dict[str, TracePattern] = {}
    for f in files:
        if not f.is_file():
            raise DataFileError("trace file not found", file=f)
        df = read_azure_trace(f)
        kind = str(df.attrs["query_type"])
        if kind in out:
            raise DataFileError(f"a second {kind!r} trace (first: {out[kind].source})", file=f)
        out[kind] = TracePattern.from_frame(df, kind, str(f))
    return out


def length_fit_table(traces: Mapping[str, TracePattern]) -> pd.DataFrame:
    """Output- and input-length statistics and a lognormal fit per trace.

    Columns: ``kind, tokens, n, mean, median, p90, p99, max, lognormal_mu, lognormal_sigma,
    ks_lognormal`` (maximum-likelihood lognormal on tokens ≥ 1 and its Kolmogorov–Smirnov
    distance to the data).
    """
    from scipy import stats

    rows = []
    for kind, tr in sorted(traces.items()):
        for col, x in (("output_tokens", tr.output_tokens), ("input_tokens", tr.input_tokens)):
            xf = x.astype(np.float64)
            lx = np.log(xf[xf >= 1])
            mu, sigma = float(lx.mean()), float(lx.std(ddof=0))
            ks = float(stats.kstest(lx, "norm", args=(mu, sigma)).statistic)
            rows.append({
                "kind": kind, "tokens": col, "n": len(xf), "mean": float(xf.mean()),
                "median": float(np.median(xf)), "p90": float(np.quantile(xf, 0.9)),
                "p99": float(np.quantile(xf, 0.99)), "max": float(xf.max()),
                "lognormal_mu": mu, "lognormal_sigma": sigma, "ks_lognormal": ks,
            })
    return pd.DataFrame(rows)


def _areas_table(scenario: Scenario) -> pd.DataFrame | None:
    if scenario.source is None:
        return None
    path = Path(scenario.source) / "areas.csv"
    if not path.is_file():
        return None
    return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)


def area_utc_offsets_h(scenario: Scenario) -> np.ndarray:
    """UTC offset (h) of every area in every hour, shape (hours, areas).

    ``areas.csv`` column ``utc_offset_h`` (hours) or ``tz`` (IANA name, offset evaluated at each
    slot's UTC time so daylight-saving changes apply) when present, else longitude / 15.
    """
    H, A = scenario.hours, len(scenario.areas)
    lon = np.asarray(scenario.ds["area_longitude"].values, dtype=np.float64)
    out = np.broadcast_to(lon / 15.0, (H, A)).copy()
    table = _areas_table(scenario)
    if table is None:
        return out
    table.columns = [str(c).strip() for c in table.columns]
    pos = pd.Index(scenario.areas).get_indexer(table["area"].str.strip())
    path = Path(str(scenario.source)) / "areas.csv"
    if "utc_offset_h" in table.columns:
        vals = pd.to_numeric(table["utc_offset_h"].str.strip(), errors="coerce").to_numpy(float)
        bad = ~np.isfinite(vals) | (np.abs(vals) > 14)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataFileError("utc_offset_h must be a number of hours in -14..14", file=path,
                                line=row + 2, column="utc_offset_h",
                                value=table["utc_offset_h"].iloc[row])
        out[:, pos] = vals[None, :]
    elif "tz" in table.columns:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        start = pd.Timestamp(scenario.start) if scenario.start else pd.Timestamp(0, tz="UTC")
        if start.tzinfo is None:
            start = start.tz_localize("UTC")
        times = start + pd.to_timedelta(np.arange(H), unit="h")
        for row, (name, p) in enumerate(zip(table["tz"].str.strip(), pos, strict=True)):
            try:
                zone = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise DataFileError("unknown IANA time zone", file=path, line=row + 2,
                                    column="tz", value=name) from exc
            local = times.tz_convert(zone)
            out[:, p] = [ts.utcoffset().total_seconds() / _HOUR_S for ts in local]
    return out


def _start_epoch_s(scenario: Scenario) -> float:
    if not scenario.start:
        return 0.0
    ts = pd.Timestamp(scenario.start)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return float(ts.value) / 1e9


def _sample_quantiles(rng: np.random.Generator, kind: str, n: int) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    q = TOKEN_QUANTILES[kind]
    probs = np.asarray(TOKEN_PROBS)
    tin = np.interp(rng.random(n), probs, np.asarray(q["input_tokens"]))
    tout = np.interp(rng.random(n), probs, np.asarray(q["output_tokens"]))
    return (np.maximum(np.round(tin), 1).astype(np.int64),
            np.maximum(np.round(tout), 1).astype(np.int64))


def _sla(scenario: Scenario, area: np.ndarray, qtype: np.ndarray,
         sla_s: float | Mapping[str, float] | None) -> np.ndarray:
    if sla_s is None:
        lim = np.asarray(scenario.ds["delay_limit_s"].transpose("area", "query_type").values,
                         dtype=np.float64)
        return lim[area, qtype]
    if isinstance(sla_s, Mapping):
        unknown = set(sla_s) - set(scenario.query_types)
        if unknown:
            raise GreenSchedError(f"sla_s names unknown query type(s) {sorted(unknown)!r}")
        lim = np.asarray(scenario.ds["delay_limit_s"].transpose("area", "query_type").values,
                         dtype=np.float64)
        per = np.array([float(sla_s.get(k, np.nan)) for k in scenario.query_types])
        vals = np.where(np.isfinite(per[qtype]), per[qtype], lim[area, qtype])
    else:
        vals = np.full(len(area), float(sla_s))
    if not (np.isfinite(vals).all() and (vals > 0).all()):
        raise GreenSchedError("SLAs must be finite and > 0 s")
    return vals


def _hours(scenario: Scenario, hours: int | Sequence[int] | None) -> np.ndarray:
    if hours is None:
        return np.arange(scenario.hours)
    if isinstance(hours, int):
        if not (1 <= hours <= scenario.hours):
            raise GreenSchedError(f"hours must lie in 1..{scenario.hours}, got {hours!r}")
        return np.arange(hours)
    hrs = np.asarray(list(hours), dtype=np.int64)
    if hrs.size == 0 or hrs.min() < 0 or hrs.max() >= scenario.hours:
        raise GreenSchedError(f"hours must lie in 0..{scenario.hours - 1}")
    return np.unique(hrs)


def _build(
    scenario: Scenario,
    counts: np.ndarray,
    traces: Mapping[str, TracePattern] | None,
    rng: np.random.Generator,
    sla_s: float | Mapping[str, float] | None,
) -> pd.DataFrame:
    """Jobs for per-(hour, area, type) counts (shape (H, A, K)), arrival-sorted and validated."""
    H, A, K = counts.shape
    flat = counts.ravel().astype(np.int64)
    cell = np.repeat(np.arange(flat.size), flat)
    hh, aa, kk = np.unravel_index(cell, (H, A, K))
    n = len(cell)
    offset = np.empty(n)
    tin = np.empty(n, dtype=np.int64)
    tout = np.empty(n, dtype=np.int64)
    kinds = np.array([trace_kind(k) for k in scenario.query_types], dtype=object)
    if traces:
        kinds = np.array([k if k in traces else next(iter(traces)) for k in kinds], dtype=object)
        local = area_utc_offsets_h(scenario)
        start = _start_epoch_s(scenario)
    for kind in sorted(set(kinds)):
        sel = np.flatnonzero(np.isin(kk, np.flatnonzero(kinds == kind)))
        if sel.size == 0:
            continue
        if not traces:
            offset[sel] = rng.random(sel.size) * _HOUR_S
            tin[sel], tout[sel] = _sample_quantiles(rng, kind, sel.size)
            continue
        tr = traces[kind]
        # window start (pattern phase) of every job's (hour, area)
        local_start = start + (hh[sel] + local[hh[sel], aa[sel]]) * _HOUR_S
        phi0 = np.mod(local_start - tr.origin_s, tr.period_s)
        lo = np.searchsorted(tr.phase_s, phi0, side="left")
        end = phi0 + _HOUR_S
        hi = np.searchsorted(tr.phase_s, np.minimum(end, tr.period_s), side="left")
        wrap = np.searchsorted(tr.phase_s, np.maximum(end - tr.period_s, 0.0), side="left")
        count = (hi - lo) + np.where(end > tr.period_s, wrap, 0)
        count = np.minimum(count, tr.n)
        empty = count <= 0
        r = np.floor(rng.random(sel.size) * np.maximum(count, 1)).astype(np.int64)
        idx = np.mod(lo + r, tr.n)
        jitter = (rng.random(sel.size) - 0.5) * tr.jitter_s
        off = np.mod(tr.phase_s[idx] - phi0, tr.period_s) + jitter
        if empty.any():
            idx[empty] = rng.integers(0, tr.n, int(empty.sum()))
            off[empty] = rng.random(int(empty.sum())) * _HOUR_S
        offset[sel] = off
        tin[sel] = tr.input_tokens[idx]
        tout[sel] = np.maximum(tr.output_tokens[idx], 1)
    arrival = hh * _HOUR_S + np.clip(offset, 0.0, _HOUR_S - 1e-6)
    order = np.lexsort((np.arange(n), arrival))
    hh, aa, kk = hh[order], aa[order], kk[order]
    arrival, tin, tout = arrival[order], tin[order], tout[order]
    width = max(7, len(str(max(n - 1, 0))))
    ids = np.char.add("j", np.char.zfill(np.arange(n).astype(str), width)).astype(object)
    frame = pd.DataFrame({
        "job_id": ids,
        "arrival_s": arrival,
        "hour": hh.astype(np.int64),
        "area": np.asarray(scenario.areas, dtype=object)[aa],
        "query_type": np.asarray(scenario.query_types, dtype=object)[kk],
        "input_tokens": tin,
        "output_tokens": tout,
        "sla_s": _sla(scenario, aa, kk, sla_s),
    })
    bad = np.floor(frame["arrival_s"].to_numpy() / _HOUR_S).astype(np.int64) != frame["hour"]
    if bad.any():  # pragma: no cover - guarded by the clipping above
        raise GreenSchedError("internal: an arrival fell outside its hour")
    frame.attrs["greensched_validated"] = True
    return frame


def jobs_from_traces(
    scenario: Scenario,
    traces: Mapping[str, TracePattern] | str | Path | None = None,
    *,
    seed: int = 0,
    hours: int | Sequence[int] | None = None,
    scale: float = 1.0,
    counts: str = "poisson",
    sla_s: float | Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """A job stream per area following the scenario's demand, shaped by the traces.

    Parameters
    ----------
    scenario
        Scenario whose demand (hour, area, query_type) sets the intensity.
    traces
        ``{kind: TracePattern}`` (:func:`load_traces`), a path for :func:`load_traces`, or
        ``None`` for the shipped quantiles with uniform arrivals.
    seed
        Seed of every draw (counts, windows, jitter, tokens).
    hours
        Number of hours from hour 0, or the hours to generate; default all.
    scale
        Multiplier on the demand (e.g. 0.1 for a tenth of the traffic).
    counts
        ``"poisson"`` (mean = scaled demand) or ``"round"``.
    sla_s
        ``None``: the scenario's ``delay_limit_s`` per (area, type); a number for every job;
        or a mapping query type → seconds.

    Returns
    -------
    pandas.DataFrame
        A valid jobs table (:mod:`greensched.jobs`) sorted by arrival, ids ``j0000000`` ….
    """
    if not (math.isfinite(scale) and scale > 0):
        raise GreenSchedError(f"scale {scale!r} must be a finite number > 0")
    if counts not in ("poisson", "round"):
        raise GreenSchedError(f"counts {counts!r} must be 'poisson' or 'round'")
    if isinstance(traces, str | Path):
        traces = load_traces(traces)
    rng = np.random.default_rng(seed)
    lam = np.asarray(scenario.ds["queries"].transpose("hour", "area", "query_type").values,
                     dtype=np.float64) * scale
    keep = np.zeros(scenario.hours, dtype=bool)
    keep[_hours(scenario, hours)] = True
    lam = np.where(keep[:, None, None], lam, 0.0)
    n = rng.poisson(lam) if counts == "poisson" else np.round(lam).astype(np.int64)
    return _build(scenario, n, traces, rng, sla_s)


def jobs_from_demand(
    scenario: Scenario,
    n_jobs: int,
    *,
    seed: int = 0,
    traces: Mapping[str, TracePattern] | str | Path | None = None,
    hours: int | Sequence[int] | None = None,
    sla_s: float | Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """``n_jobs`` jobs drawn from the scenario's demand (the ``--jobs N`` generator).

    The (hour, area, query_type) of the jobs is a multinomial draw with probabilities
    proportional to ``queries``; arrivals and tokens as in :func:`jobs_from_traces` (shipped
    trace quantiles and uniform arrivals when ``traces`` is ``None``).
    """
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int | np.integer) or n_jobs < 1:
        raise GreenSchedError(f"the number of jobs must be an integer >= 1, got {n_jobs!r}")
    if isinstance(traces, str | Path):
        traces = load_traces(traces)
    rng = np.random.default_rng(seed)
    lam = np.asarray(scenario.ds["queries"].transpose("hour", "area", "query_type").values,
                     dtype=np.float64)
    keep = np.zeros(scenario.hours, dtype=bool)
    keep[_hours(scenario, hours)] = True
    lam = np.where(keep[:, None, None], lam, 0.0)
    total = lam.sum()
    if total <= 0:
        raise GreenSchedError("the scenario has no demand in the selected hours")
    counts = rng.multinomial(int(n_jobs), (lam / total).ravel()).reshape(lam.shape)
    return _build(scenario, counts, traces, rng, sla_s)
