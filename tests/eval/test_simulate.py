"""Simulation, policies, datasets and the simulate command (greensched.eval.simulate[_cli])."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from greensched.cli.simulate import simulate_command
from greensched.errors import DataFileError, GreenSchedError, ScenarioError
from greensched.eval.simulate import (
    OUTCOME_COLUMNS,
    POLICIES,
    build_dataset,
    run_simulation,
    simulate,
    write_dataset,
)
from greensched.eval.traces import jobs_from_demand
from greensched.eval.twin import Twin
from greensched.scheduler import PlanConfig, plan
from greensched.synth import synthesize

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "dataset-format.md"


@pytest.fixture(scope="module")
def scen():  # type: ignore[no-untyped-def]
    return synthesize(dcs=4, areas=3, types=3, hours=6, seed=1)


@pytest.fixture(scope="module")
def scen_dir(scen, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return scen.save(tmp_path_factory.mktemp("scen") / "synth")


@pytest.fixture(scope="module")
def jobs(scen) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    return jobs_from_demand(scen, 3000, seed=5)


@pytest.fixture(scope="module")
def solved(scen):  # type: ignore[no-untyped-def]
    result = plan(scen, PlanConfig())
    assert result.is_ok
    return result


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


@pytest.mark.parametrize("policy", POLICIES)
def test_outcomes_and_totals_are_consistent(scen, jobs, solved, policy) -> None:  # type: ignore[no-untyped-def]
    out, tot = simulate(scen, jobs, policy, seed=3, noise=True, plan=solved)
    assert tuple(out.columns) == OUTCOME_COLUMNS
    assert len(out) == len(jobs) and (out["job_id"].to_numpy() == jobs["job_id"].to_numpy()).all()
    assert set(out["dc"].astype(str)) <= set(scen.dcs)
    assert tot["it_kwh"] == pytest.approx(out["energy_kwh"].sum(), rel=1e-12)
    assert tot["carbon_kg"] == pytest.approx(out["carbon_kg"].sum(), rel=1e-9)
    assert tot["water_l"] == pytest.approx(out["water_l"].sum(), rel=1e-9)
    assert tot["energy_usd"] + tot["carbon_usd"] == pytest.approx(out["cost_usd"].sum(), rel=1e-9)
    assert tot["sla_met_fraction"] == pytest.approx(out["sla_met"].mean())
    assert (out["energy_kwh"] > 0).all() and (out["service_s"] > 0).all()
    assert tot["policy"] == policy and tot["jobs"] == len(jobs)


def test_policies_behave_as_named(scen, jobs, solved) -> None:  # type: ignore[no-untyped-def]
    near, _ = simulate(scen, jobs, "nearest", seed=0, noise=False)
    rtt = scen.ds["rtt_s"].transpose("area", "dc").to_pandas()
    best = rtt.idxmin(axis=1)
    want = best.loc[near["area"].astype(str)].to_numpy()
    assert (near["dc"].astype(str).to_numpy() == want).all()
    rnd, _ = simulate(scen, jobs, "random", seed=0, noise=False)
    counts = rnd["dc"].value_counts()
    assert counts.min() > 0.8 * len(jobs) / len(scen.dcs)
    # plan: the chosen DCs follow the plan's shares
    pl, _ = simulate(scen, jobs, "plan", seed=0, noise=False, plan=solved)
    alloc = solved.allocation
    weights = (alloc * scen.ds["queries"]).sum(["area", "query_type", "hour"])
    expected = (weights / weights.sum()).to_pandas()
    got = pl["dc"].astype(str).value_counts(normalize=True).reindex(expected.index, fill_value=0)
    assert np.abs(got - expected).max() < 0.05, (got, expected)
    # greedy lowers the stated objective against random placement
    _, g = simulate(scen, jobs, "greedy", seed=0, noise=False)
    _, r = simulate(scen, jobs, "random", seed=0, noise=False)
    w = scen.weights
    assert (w["energy"] * g["energy_usd"] + w["carbon"] * g["carbon_usd"]
            + w["delay"] * g["delay_usd"]) <= (w["energy"] * r["energy_usd"]
                                               + w["carbon"] * r["carbon_usd"]
                                               + w["delay"] * r["delay_usd"])


def test_seeds_are_byte_identical_and_differ(scen_dir: Path, tmp_path: Path) -> None:
    def run(seed: int, name: str) -> bytes:
        simulate_command(scen_dir, 2000, None, "plan", tmp_path / name, None, seed, True, None,
                         console=_quiet())
        return (tmp_path / name / "outcomes.csv").read_bytes()

    a, b, c = run(11, "a"), run(11, "b"), run(12, "c")
    assert a == b
    assert a != c
    assert (tmp_path / "a" / "totals.json").read_bytes() == (tmp_path / "b" / "totals.json"
                                                            ).read_bytes()


def test_noise_switch(scen, jobs) -> None:  # type: ignore[no-untyped-def]
    quiet1, _ = simulate(scen, jobs, "nearest", seed=1, noise=False)
    quiet2, _ = simulate(scen, jobs, "nearest", seed=2, noise=False)
    pd.testing.assert_frame_equal(quiet1, quiet2)
    loud, _ = simulate(scen, jobs, "nearest", seed=1, noise=True)
    ratio = loud["energy_kwh"] / quiet1["energy_kwh"]
    assert 0.9 < ratio.mean() < 1.1 and 0.01 < np.log(ratio).std() < 0.05


def test_coefficients_mode_uses_the_scenarios_per_query_values(scen, jobs) -> None:  # type: ignore[no-untyped-def]
    out, tot = simulate(scen, jobs, "random", seed=0, noise=False, mode="coefficients")
    e = scen.energy_kwh_per_query().transpose("hour", "dc", "query_type")
    want = e.to_numpy()[out["hour"].to_numpy(),
                        pd.Index(scen.dcs).get_indexer(out["dc"].astype(str)),
                        pd.Index(scen.query_types).get_indexer(out["query_type"].astype(str))]
    np.testing.assert_allclose(out["energy_kwh"].to_numpy(), want, rtol=1e-12)
    assert tot["mode"] == "coefficients" and tot["wait_s_mean"] == 0.0


def _doc_columns(dcs: list[str]) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    names = re.findall(r"^\| `([^`]+)` \|", text, flags=re.MULTILINE)
    job = [n for n in names if "__" not in n and n != "best_dc"]
    per_dc = [n.split("__")[0] for n in names if n.endswith("__<dc>")]
    return job + [f"{f}__{d}" for f in per_dc for d in dcs] + ["best_dc"]


def test_dataset_columns_metadata_and_best_dc(scen, jobs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    twin = Twin(scen)
    df = build_dataset(scen, jobs, seed=4, noise=True, twin=twin)
    assert list(df.columns) == _doc_columns(scen.dcs)
    assert len(df) == len(jobs)
    path = write_dataset(df, tmp_path / "ds.parquet")
    import pyarrow.parquet as pq

    meta = json.loads(pq.read_schema(path).metadata[b"greensched"])
    assert set(meta) == {"format", "dcs", "scenario", "seed", "noise", "objective"}
    assert meta["format"] == 1 and meta["dcs"] == scen.dcs and meta["seed"] == 4
    assert meta["noise"] is True and meta["scenario"] == scen.name
    assert set(meta["objective"]) == {"energy", "carbon", "delay", "definition"}
    back = pd.read_parquet(path)
    assert list(back.columns) == list(df.columns)
    # best_dc is the argmin of the stated objective, recomputed from the columns
    w = meta["objective"]
    ds = scen.ds
    delta = ds["carbon_price_usd_per_kg"].to_pandas()
    rho = ds["delay_penalty_usd_per_s"].to_pandas()
    cost = np.column_stack([
        (w["energy"] * df[f"price_usd_per_kwh__{d}"]
         + w["carbon"] * delta[d] * df[f"carbon_kg_per_kwh__{d}"]) * df[f"pue__{d}"]
        * df[f"energy_kwh__{d}"]
        + w["delay"] * rho.loc[df["query_type"].astype(str)].to_numpy()
        * np.maximum(df[f"service_s__{d}"] - df["sla_s"], 0.0)
        for d in scen.dcs
    ])
    assert (df["best_dc"].astype(str).to_numpy()
            == np.asarray(scen.dcs)[cost.argmin(axis=1)]).all()
    # the chosen DC's ground truth equals the simulation's outcome (same noise draws)
    sim = run_simulation(scen, jobs, "random", seed=4, noise=True, twin=twin)
    chosen = sim.outcomes["dc"].astype(str).to_numpy()
    e = np.array([df.at[i, f"energy_kwh__{d}"] for i, d in enumerate(chosen)])
    s = np.array([df.at[i, f"service_s__{d}"] for i, d in enumerate(chosen)])
    np.testing.assert_allclose(e, sim.outcomes["energy_kwh"], rtol=1e-12)
    np.testing.assert_allclose(s, sim.outcomes["service_s"], rtol=1e-12)
    assert df[[c for c in df.columns if c.startswith("utilization__")]].max().max() <= 1.0


def test_simulate_command_writes_files_and_dataset(scen_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    totals = simulate_command(scen_dir, 500, None, "greedy", out, tmp_path / "d.parquet", 0,
                              False, None, console=_quiet())
    assert (out / "outcomes.csv").is_file() and (out / "fleet.csv").is_file()
    written = json.loads((out / "totals.json").read_text(encoding="utf-8"))
    assert written["jobs"] == 500 == totals["jobs"] and written["noise"] is False
    head = (out / "outcomes.csv").read_text(encoding="utf-8").splitlines()[0]
    assert head == ",".join(OUTCOME_COLUMNS)
    assert (tmp_path / "d.parquet").is_file()


def test_simulate_command_errors(scen_dir: Path, tmp_path: Path) -> None:
    q = _quiet()
    with pytest.raises(GreenSchedError, match="exactly one"):
        simulate_command(scen_dir, None, None, "plan", None, None, 0, True, None, console=q)
    with pytest.raises(GreenSchedError, match="policy"):
        simulate_command(scen_dir, 10, None, "cheapest", None, None, 0, True, None, console=q)
    bad_fleet = tmp_path / "fleet.csv"
    bad_fleet.write_text("dc,query_type,model,gpu,gpus_per_replica,replicas,batch_size\n"
                         "dc000,type0,7B,A100,1,2,16\n*,*,7B,A100,two,2,16\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as info:
        simulate_command(scen_dir, 10, None, "random", None, None, 0, True, bad_fleet, console=q)
    assert (info.value.line, info.value.column, info.value.value) == (3, "gpus_per_replica",
                                                                      "two")
    bad_trace = tmp_path / "AzureLLMInferenceTrace_conv.csv"
    bad_trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                         "2023-11-16 18:15:46.6805900,374,44\n"
                         "2023-11-16 18:15:50.4107600,x,109\n", encoding="utf-8")
    with pytest.raises(DataFileError) as tinfo:
        simulate_command(scen_dir, None, bad_trace, "random", None, None, 0, True, None,
                         console=q)
    assert tinfo.value.line == 3 and tinfo.value.column == "ContextTokens"
    assert str(bad_trace) in str(tinfo.value)


def test_plan_policy_on_paper_in_coefficients_mode(paper) -> None:  # type: ignore[no-untyped-def]
    """With all the demand as jobs, sampled plan placement reproduces the plan's IT energy."""
    result = plan(paper, PlanConfig())
    jobs = jobs_from_demand(paper, 120_000, seed=0)
    _, tot = simulate(paper, jobs, "plan", seed=0, noise=False, plan=result, mode="coefficients")
    per_query = result.it_kwh / float(paper.ds["queries"].sum())
    assert tot["it_kwh"] / len(jobs) == pytest.approx(per_query, rel=0.02)
