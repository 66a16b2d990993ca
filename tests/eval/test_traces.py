"""Job streams from the Azure traces and from demand (greensched.eval.traces)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greensched.errors import DataFileError, GreenSchedError
from greensched.eval.traces import (
    TOKEN_PROBS,
    TOKEN_QUANTILES,
    area_utc_offsets_h,
    jobs_from_demand,
    jobs_from_traces,
    length_fit_table,
    load_traces,
    trace_kind,
)
from greensched.jobs import validate_jobs
from greensched.scenario import load_scenario
from greensched.synth import synthesize

AZURE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "azure_llm_inference"


def _scenario():  # type: ignore[no-untyped-def]
    scen = synthesize(dcs=2, areas=2, types=2, hours=3, seed=2)
    scen.start = "2024-01-01T00:00:00Z"
    scen.ds["area_longitude"][:] = [0.0, -22.5]  # UTC offsets 0 h and -1.5 h
    scen.ds["queries"][:] = 400.0
    return scen


def _write_trace(path: Path, rows: list[tuple[str, int, int]]) -> Path:
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    lines += [f"{t},{i},{o}" for t, i, o in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _bursty_trace(tmp_path: Path) -> Path:
    """600 requests in the first 10 minutes of 18:00, one at 18:59:59 (a 1-hour pattern)."""
    base = pd.Timestamp("2023-11-16 18:00:00")
    rows = [((base + pd.Timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S.%f") + "0",
             100 + i, 1 + i % 50) for i in range(600)]
    rows.append(("2023-11-16 18:59:59.0000000", 9999, 777))
    return _write_trace(tmp_path / "AzureLLMInferenceTrace_conv.csv", rows)


def test_trace_kind_mapping() -> None:
    assert trace_kind("code") == "code" and trace_kind("Code-Completion") == "code"
    assert trace_kind("chat") == trace_kind("summarization") == trace_kind("image") == "conv"


def test_arrivals_follow_the_trace_in_each_areas_local_time(tmp_path: Path) -> None:
    scen = _scenario()
    traces = load_traces(_bursty_trace(tmp_path))
    assert traces["conv"].period_s == 3600.0
    jobs = jobs_from_traces(scen, traces, seed=3, counts="round")
    validate_jobs(jobs, scen)
    # counts equal the demand exactly with counts="round"
    per_cell = jobs.groupby(["hour", "area", "query_type"]).size()
    assert (per_cell == 400).all() and len(per_cell) == 3 * 2 * 2
    offset = jobs["arrival_s"] - 3600.0 * jobs["hour"]
    a0 = offset[jobs["area"] == scen.areas[0]]
    a1 = offset[jobs["area"] == scen.areas[1]]
    # area 0 (UTC+0): the burst sits in the first ten minutes of every UTC hour
    assert (a0 < 610).mean() > 0.99
    # area 1 (UTC-1.5 h): its local window starts half-way through the pattern hour
    assert ((a1 > 1790) & (a1 < 2410)).mean() > 0.99
    # tokens are the trace's own requests (joint input/output pairs)
    pairs = set(zip(jobs["input_tokens"], jobs["output_tokens"], strict=True))
    allowed = {(100 + i, 1 + i % 50) for i in range(600)} | {(9999, 777)}
    assert pairs <= allowed
    # SLA defaults to the scenario's delay limit of (area, type)
    lim = scen.ds["delay_limit_s"].to_pandas()
    want = [lim.loc[a, k] for a, k in zip(jobs["area"], jobs["query_type"], strict=True)]
    np.testing.assert_allclose(jobs["sla_s"], want)


def test_trace_streams_are_seeded(tmp_path: Path) -> None:
    scen = _scenario()
    traces = load_traces(_bursty_trace(tmp_path))
    a = jobs_from_traces(scen, traces, seed=1)
    b = jobs_from_traces(scen, traces, seed=1)
    c = jobs_from_traces(scen, traces, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) != len(c) or not a["arrival_s"].equals(c["arrival_s"])
    lam = float(scen.ds["queries"].sum())
    assert abs(len(a) - lam) < 5 * np.sqrt(lam)  # Poisson counts around the demand
    half = jobs_from_traces(scen, traces, seed=1, scale=0.5, counts="round", hours=2,
                            sla_s={scen.query_types[0]: 9.0})
    assert len(half) == 2 * 2 * 2 * 200 and set(half["hour"]) == {0, 1}
    assert (half.loc[half["query_type"] == scen.query_types[0], "sla_s"] == 9.0).all()


@pytest.mark.parametrize(
    ("rows", "line", "column"),
    [
        ([("2023-11-16 18:00:00.0000000", 10, 5), ("2023-11-16 18:00:01.0000000", -4, 5)], 3,
         "ContextTokens"),
        ([("2023-11-16 18:00:00.0000000", 10, 5), ("2023-11-16 18:00:01.0000000", 10, 2.5)], 3,
         "GeneratedTokens"),
        ([("2023-11-16 18:00:00.0000000", 10, 5), ("yesterday", 10, 5)], 3, "TIMESTAMP"),
    ],
)
def test_bad_trace_file_names_file_line_column(tmp_path: Path, rows, line, column) -> None:  # type: ignore[no-untyped-def]
    path = _write_trace(tmp_path / "AzureLLMInferenceTrace_code.csv", rows)
    with pytest.raises(DataFileError) as info:
        load_traces(path)
    assert info.value.line == line and info.value.column == column
    assert str(path) in str(info.value)


def test_trace_file_problems(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match="not found"):
        load_traces(tmp_path / "AzureLLMInferenceTrace_code.csv")
    bad = tmp_path / "AzureLLMInferenceTrace_conv.csv"
    bad.write_text("TIMESTAMP,Context,GeneratedTokens\n2023-11-16 18:00:00.0000000,1,2\n",
                   encoding="utf-8")
    with pytest.raises(DataFileError) as info:
        load_traces(bad)
    assert info.value.column == "ContextTokens"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFileError, match="no AzureLLMInferenceTrace"):
        load_traces(empty)


def test_jobs_from_demand(tmp_path: Path) -> None:
    scen = synthesize(dcs=3, areas=3, types=3, hours=4, seed=4)
    jobs = jobs_from_demand(scen, 5000, seed=9)
    assert len(jobs) == 5000 and jobs["job_id"].is_unique
    checked = validate_jobs(jobs, scen)
    assert (checked["hour"] == jobs["hour"]).all()
    assert jobs["arrival_s"].is_monotonic_increasing
    pd.testing.assert_frame_equal(jobs, jobs_from_demand(scen, 5000, seed=9))
    assert not jobs.equals(jobs_from_demand(scen, 5000, seed=10))
    lam = scen.ds["queries"].sum(["area", "query_type"]).to_pandas()
    got = jobs["hour"].value_counts(normalize=True).sort_index()
    np.testing.assert_allclose(got.to_numpy(), (lam / lam.sum()).to_numpy(), atol=0.03)
    # shipped quantiles: heavy-tailed output lengths, within the traces' range
    conv = jobs["output_tokens"]
    assert conv.min() >= 7 and conv.max() <= 1000 and conv.mean() > conv.median()
    with pytest.raises(GreenSchedError):
        jobs_from_demand(scen, 0)


def test_utc_offsets_from_the_areas_table(tmp_path: Path) -> None:
    scen = synthesize(dcs=2, areas=2, types=1, hours=3, seed=0)
    scen.start = "2024-03-10T06:00:00Z"  # US daylight-saving starts at 08:00 UTC that day
    d = scen.save(tmp_path / "s")
    areas = pd.read_csv(d / "areas.csv", dtype=str)
    default = area_utc_offsets_h(load_scenario(d))
    np.testing.assert_allclose(default[0], scen.ds["area_longitude"].to_numpy() / 15.0)
    areas["tz"] = ["America/Chicago", "UTC"]
    areas.to_csv(d / "areas.csv", index=False)
    offs = area_utc_offsets_h(load_scenario(d))
    assert list(offs[:, 0]) == [-6.0, -6.0, -5.0] and (offs[:, 1] == 0).all()
    areas = areas.drop(columns="tz").assign(utc_offset_h=["5.5", "-3"])
    areas.to_csv(d / "areas.csv", index=False)
    np.testing.assert_allclose(area_utc_offsets_h(load_scenario(d))[1], [5.5, -3.0])
    areas["utc_offset_h"] = ["x", "1"]
    areas.to_csv(d / "areas.csv", index=False)
    with pytest.raises(DataFileError) as info:
        area_utc_offsets_h(load_scenario(d))
    assert info.value.line == 2 and info.value.column == "utc_offset_h"


def test_shipped_quantiles_and_fits_match_the_azure_traces() -> None:
    if not AZURE.is_dir():
        pytest.skip(f"reference data {AZURE} not found: needs ../shared/data beside the repo")
    traces = load_traces(AZURE)
    assert set(traces) == {"code", "conv"}
    for kind, tr in traces.items():
        assert tr.period_s == 3600.0
        for col, arr in (("input_tokens", tr.input_tokens), ("output_tokens", tr.output_tokens)):
            q = np.quantile(arr, TOKEN_PROBS)
            np.testing.assert_allclose(q, TOKEN_QUANTILES[kind][col], atol=0.051)
    fit = length_fit_table(traces).set_index(["kind", "tokens"])
    out = fit.xs("output_tokens", level="tokens")
    assert out.loc["code", "ks_lognormal"] == pytest.approx(0.133, abs=0.001)
    assert out.loc["conv", "ks_lognormal"] == pytest.approx(0.182, abs=0.001)
    assert out.loc["code", "lognormal_mu"] == pytest.approx(2.79, abs=0.01)
    assert out.loc["conv", "lognormal_sigma"] == pytest.approx(0.86, abs=0.01)
    assert out.loc["conv", "mean"] == pytest.approx(211.1, abs=0.1)


def test_paper_trace_stream(paper) -> None:  # type: ignore[no-untyped-def]
    if not AZURE.is_dir():
        pytest.skip(f"reference data {AZURE} not found")
    jobs = jobs_from_traces(paper, AZURE, seed=0, scale=0.05)
    lam = float(paper.ds["queries"].sum()) * 0.05
    assert abs(len(jobs) - lam) < 5 * np.sqrt(lam)
    code = jobs[jobs["query_type"] == "code"]
    chat = jobs[jobs["query_type"] == "chat"]
    assert code["output_tokens"].median() < 30 < chat["output_tokens"].median()
