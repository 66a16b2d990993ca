"""Experiments: statistics known answers, experiment-file errors, the --quick run and its report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from greensched.eval.experiment import (
    METRICS,
    SECTIONS,
    TIMING_METRICS,
    ExperimentError,
    ci95,
    compare,
    holm,
    load_experiment,
    run_experiment,
    write_report,
)
from tests.conftest import require_shared_data

REPO = Path(__file__).resolve().parents[2]
MAIN = REPO / "examples" / "experiments" / "main.toml"


def test_ci95_and_holm_known_answers() -> None:
    mean, half = ci95(np.array([1.0, 2.0, 3.0]))
    assert mean == 2.0
    assert half == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)  # t_{0.975,2} · 1 / √3
    assert holm(np.array([0.01, 0.04, 0.03])).tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(holm(np.array([np.nan, 0.2]))[0])


def test_paired_comparison_known_answers() -> None:
    rows = [{"variant": v, "seed": s, "metric": "carbon_kg", "value": x}
            for v, xs in (("gs", [1.0, 2.0, 3.0]), ("b", [2.0, 4.0, 7.0]))
            for s, x in enumerate(xs)]
    out = compare(pd.DataFrame(rows), "gs").iloc[0]
    assert out["reduction_pct"] == pytest.approx(100 * (1 - 2.0 / (13 / 3)))
    # differences −1, −2, −4: mean −7/3, sd √(7/3); t = mean / (sd/√3), two-sided, df 2
    d = np.array([-1.0, -2.0, -4.0])
    t = d.mean() / (d.std(ddof=1) / math.sqrt(3))
    from scipy import stats

    assert out["p_ttest"] == pytest.approx(2 * stats.t.sf(abs(t), 2))
    assert out["cohens_dz"] == pytest.approx(d.mean() / d.std(ddof=1))
    assert out["p_wilcoxon"] == pytest.approx(0.25)  # exact: all three signs negative
    assert out["rank_biserial"] == -1.0


def _write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "exp.toml"
    p.write_text(body, encoding="utf-8")
    return p


def test_experiment_file_errors_name_the_field(tmp_path: Path) -> None:
    base = 'name = "x"\nscenario = "synth:3,2,2,6,1"\n'
    with pytest.raises(ExperimentError, match="policy 'pcap' is not known.*pcaps"):
        load_experiment(_write(tmp_path, base + '[[variant]]\nlabel = "a"\npolicy = "pcap"\n'))
    with pytest.raises(ExperimentError, match="unknown key"):
        load_experiment(_write(tmp_path, base + "seed = 3\n"))
    two = '[[variant]]\nlabel = "a"\npolicy = "greedy"\n' * 2
    with pytest.raises(ExperimentError, match="unique"):
        load_experiment(_write(tmp_path, base + two))
    one = '[[variant]]\nlabel = "a"\npolicy = "greedy"\n'
    with pytest.raises(ExperimentError, match="greensched = 'greensched' names no variant"):
        load_experiment(_write(tmp_path, base + one))
    with pytest.raises(ExperimentError, match="batch_share"):
        load_experiment(_write(tmp_path, base + "[jobs]\nbatch_share = 1.5\n" + one))


TINY = """
name = "tiny"
scenario = "synth:3,2,2,6,1"
seeds = 2
greensched = "gs"
reference = "perf"
[jobs]
n_jobs = 120
train_jobs = 150
batch_share = 0.5
batch_deadline_h = [1.0, 3.0]
represent_demand = false
[[variant]]
label = "gs"
policy = "greensched"
[[variant]]
label = "perf"
policy = "performance-only"
[[variant]]
label = "oracle"
policy = "greensched"
predictor = "oracle"
[[variant]]
label = "xgb"
policy = "greensched"
predictor = "xgboost"
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    """The tiny synthetic experiment, run once in-process."""
    tmp = tmp_path_factory.mktemp("tiny")
    cfg = load_experiment(_write(tmp, TINY))
    run_experiment(cfg, tmp / "a")
    return cfg, tmp / "a"


def test_synthetic_experiment_runs(tiny_run: tuple[object, Path]) -> None:
    res = pd.read_parquet(tiny_run[1] / "results.parquet")
    assert len(res) == 2 * 4 * len(METRICS)
    val = res.set_index(["variant", "seed", "metric"])["value"]
    # light load: the oracle's per-job values (the twin's, with the run's noise) are exact
    assert val.loc[("oracle", 0, "pred_mape_energy")] == 0.0
    assert val.loc[("xgb", 0, "pred_mape_energy")] > 0.0  # a learned model is not exact
    assert val.loc[("perf", 0, "deferred_share")] == 0.0
    assert val.loc[("gs", 0, "deferred_share")] > 0.0


def test_pool_equals_in_process(tiny_run: tuple[object, Path], tmp_path: Path) -> None:
    cfg = tiny_run[0]
    res = pd.read_parquet(tiny_run[1] / "results.parquet")
    run_experiment(cfg.select(["gs", "perf", "oracle"]), tmp_path / "b",  # type: ignore[attr-defined]
                   workers=2)
    other = pd.read_parquet(tmp_path / "b" / "results.parquet")
    mine = res[res["variant"] != "xgb"]
    keep = ~mine["metric"].isin(TIMING_METRICS)
    keep_other = ~other["metric"].isin(TIMING_METRICS)
    pd.testing.assert_frame_equal(mine[keep].reset_index(drop=True),
                                  other[keep_other].reset_index(drop=True))


def test_variant_selection_errors(tiny_run: tuple[object, Path]) -> None:
    cfg = tiny_run[0]
    with pytest.raises(ExperimentError, match="'pcaps' names no variant"):
        cfg.select(["gs", "pcaps"])  # type: ignore[attr-defined]
    with pytest.raises(ExperimentError, match="reference = 'perf' names no variant"):
        cfg.select(["gs"])  # type: ignore[attr-defined]


#: the structural test's variants: the quick preset's cheap ones (no XGBoost training, no
#: CASPER MILPs; both run in the tiny experiment above and in tests/scheduler)
QUICK_TEST_VARIANTS = "greensched,greensched-carbon,performance-only,pcaps,carbonscaler"


def test_quick_main_experiment_report(tmp_path: Path) -> None:
    require_shared_data()
    from typer.testing import CliRunner

    from greensched.cli.main import app

    out = tmp_path / "quick"
    md = tmp_path / "report.md"
    r = CliRunner().invoke(app, ["experiment", "run", str(MAIN), "--out", str(out), "--quick",
                                 "--seeds", "2", "--variants", QUICK_TEST_VARIANTS,
                                 "--report", str(md), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # --json: the summary alone on stdout, progress on stderr
    assert doc["kind"] == "experiment" and doc["report"] == str(md)
    assert doc["meta"]["seeds"] == 2
    text = md.read_text(encoding="utf-8")
    pos = [text.index(s) for s in SECTIONS]
    assert pos == sorted(pos)
    cfg = load_experiment(MAIN).quick_preset()
    assert {"casper", "pure-ml-xgboost", "oracle"} <= {v.label for v in cfg.variants}
    res = pd.read_parquet(out / "results.parquet")
    assert sorted(res["seed"].unique()) == [0, 1]
    assert set(res["variant"]) == set(QUICK_TEST_VARIANTS.split(","))
    assert res.groupby("variant").size().nunique() == 1  # every variant has every metric
    # the carbon reduction vs performance-only printed in the report is the paired means'
    carbon = res[res["metric"] == "carbon_kg"].groupby("variant")["value"].mean()
    red = 100 * (1 - carbon["greensched"] / carbon["performance-only"])
    section = text.split(SECTIONS[2])[1].split(SECTIONS[3])[0]
    line = next(ln for ln in section.splitlines() if ln.startswith("| performance-only | "))
    assert f"{red:.1f} ±" in line
    # outcomes without their variant in the run are 'not measured', never 'met'
    outcomes = text.split(SECTIONS[4])[1].split(SECTIONS[5])[0]
    assert "no 'pure-ml-xgboost' variant | **not measured**" in outcomes
    for fig in ("bars_carbon_kg.png", "carbon_vs_sla.png", "hourly_profiles.png",
                "carbon_per_region.png"):
        assert (tmp_path / "report_figures" / fig).is_file()
    assert (tmp_path / "report_figures" / "bars_carbon_kg.png").stat().st_size > 1000
    # the report is a function of the run directory alone
    again = write_report(out, tmp_path / "report-again.md", figures=False)
    assert again.read_text(encoding="utf-8").replace("report-again_figures", "report_figures") \
        == text
