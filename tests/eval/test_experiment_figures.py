"""Experiment report figures in the house style: roles and colours of the variants, the
scenario's DC names and start time, the report's file names.

The SVGs keep their text as text (``svg.fonttype = none``), so names can be read back.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.colors import to_hex

from greensched.eval.experiment import write_report
from greensched.eval.experiment.figures import (
    Role,
    bars_figure,
    experiment_figures,
    region_figure,
    scatter_figure,
    scenario_facts,
    variant_roles,
)
from greensched.eval.experiment.report import _FIGURE_CAPTIONS
from greensched.eval.experiment.stats import summarize
from greensched.plotstyle import OKABE_ITO

GREEN, BLUE, GREY = OKABE_ITO[2], OKABE_ITO[4], OKABE_ITO[8]
VARIANTS = (
    "greensched",
    "greensched-carbon",
    "performance-only",
    "pcaps",
    "carbonscaler",
    "ablation-no-carbon",
)
#: carbon kg per variant (seed s of variant i adds 0.1 s + 0.01 s² (i + 1))
CARBON = dict(zip(VARIANTS, (10.0, 9.0, 20.0, 15.0, 16.0, 18.0), strict=True))


@pytest.fixture(autouse=True)
def _fast_text_svg(monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setattr("greensched.plotstyle.PNG_DPI", 50)  # files and objects, not pixels
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        yield


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, hours = [], []
    for i, v in enumerate(VARIANTS):
        for seed in range(3):
            carbon = CARBON[v] + 0.1 * seed + 0.01 * seed**2 * (i + 1)
            vals = {
                "carbon_kg": carbon,
                "cost_usd": carbon / 4,
                "sla_violation_rate": 0.001 * (1 + VARIANTS.index(v)) + 0.0001 * seed,
            }
            for metric, value in vals.items():
                rows.append(
                    {
                        "experiment": "t",
                        "variant": v,
                        "policy": v,
                        "predictor": "expected",
                        "ablation": v.startswith("ablation-"),
                        "seed": seed,
                        "metric": metric,
                        "value": value,
                    }
                )
            for hour in range(4):
                for k, dc in enumerate(("dc-a", "dc-b")):
                    hours.append(
                        {
                            "variant": v,
                            "seed": seed,
                            "hour": hour,
                            "dc": dc,
                            "carbon_kg": CARBON[v] / 8 * (1 + k) / 1.5,
                            "cost_usd": 0.1 * (hour + 1),
                            "it_kwh": 1.0,
                        }
                    )
    return pd.DataFrame(rows), pd.DataFrame(hours)


def _scenario_dir(tmp_path: Path) -> Path:
    d = tmp_path / "scen"
    d.mkdir()
    (d / "scenario.toml").write_text(
        'name = "t"\nhours = 4\nstart = "2024-06-01T00:00:00Z"\n', encoding="utf-8"
    )
    (d / "datacenters.csv").write_text(
        "dc,name\ndc-a,Alpha City\ndc-b,Beta Town\n", encoding="utf-8"
    )
    return d


def test_roles_and_bar_colours() -> None:
    results, _ = _frames()
    roles = variant_roles(results, "greensched", ["greensched-carbon"])
    assert list(roles) == list(VARIANTS)
    assert roles["greensched"] is Role.GREENSCHED
    assert roles["greensched-carbon"] is Role.ALTERNATIVE
    assert roles["ablation-no-carbon"] is Role.ABLATION
    assert {roles[v] for v in ("performance-only", "pcaps", "carbonscaler")} == {Role.BASELINE}
    fig = bars_figure(summarize(results), roles, "carbon_kg", "carbon (kg)", 1.0, 3)
    ax = fig.axes[0]
    bars = {p.get_gid()[4:]: p for p in ax.patches if (p.get_gid() or "").startswith("bar-")}
    assert set(bars) == set(VARIANTS)
    face = {v: to_hex(p.get_facecolor()).upper() for v, p in bars.items()}
    assert face["greensched"] == GREEN and face["greensched-carbon"] == BLUE
    assert {face[v] for v in ("performance-only", "pcaps", "carbonscaler")} == {GREY}
    assert (
        face["ablation-no-carbon"] not in (GREEN, GREY) and bars["ablation-no-carbon"].get_hatch()
    )
    # horizontal bars, as long as the mean over the seeds (10 + 0.1 + 0.01 x 5/3 x (i + 1))
    assert bars["greensched"].get_width() == pytest.approx(10.1 + 0.05 / 3)
    assert bars["pcaps"].get_width() == pytest.approx(15.1 + 0.2 / 3)
    plt.close(fig)


def test_scatter_labels_every_variant_in_percent() -> None:
    results, _ = _frames()
    roles = variant_roles(results, "greensched", ["greensched-carbon"])
    fig = scatter_figure(summarize(results), roles, 3)
    ax = fig.axes[0]
    texts = {t.get_text(): t for t in ax.texts}
    assert set(texts) == set(VARIANTS)
    assert "%" in ax.get_xlabel() and "kg" in ax.get_ylabel()
    assert texts["greensched"].get_fontweight() == "bold"
    # each label points at its variant's means (SLA violation in %)
    assert texts["pcaps"].xy == pytest.approx((100 * 0.0041, 15.1 + 0.2 / 3))
    plt.close(fig)


def test_scenario_facts_and_region_names(tmp_path: Path) -> None:
    d = _scenario_dir(tmp_path)
    start, names = scenario_facts(str(d))
    assert start == "2024-06-01T00:00:00Z"
    assert names == {"dc-a": "Alpha City", "dc-b": "Beta Town"}
    assert scenario_facts("synth:4,3,3,24,0") == (None, {})
    assert scenario_facts(str(tmp_path / "missing")) == (None, {})
    _, hourly = _frames()
    roles = variant_roles(_frames()[0], "greensched", [])
    fig = region_figure(hourly, roles, names, 3)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["Alpha City\ndc-a", "Beta Town\ndc-b"]
    gs = [p for p in fig.axes[0].patches if to_hex(p.get_facecolor()).upper() == GREEN]
    # GreenSched's carbon per DC: mean over seeds of the 4-hour total (10/8 x (1+k)/1.5 x 4)
    assert [p.get_height() for p in gs] == pytest.approx([10 / 3, 20 / 3])
    plt.close(fig)


def test_svg_files_colours_names_and_time_axis(tmp_path: Path) -> None:
    results, hourly = _frames()
    made = experiment_figures(
        results,
        hourly,
        tmp_path / "figs",
        greensched="greensched",
        alternatives=["greensched-carbon"],
        scenario=str(_scenario_dir(tmp_path)),
        fmt="svg",
    )
    assert [(c, p.stem) for c, p in made] == [(c, p.stem) for c, p in _FIGURE_CAPTIONS]
    bars = made[0][1].read_text(encoding="utf-8")
    colours = {c.upper() for c in re.findall(r"#[0-9a-fA-F]{6}", bars)}
    assert {GREEN, BLUE, GREY} <= colours
    assert "Alpha City" in made[5][1].read_text(encoding="utf-8")
    assert "2024-06-01" in made[4][1].read_text(encoding="utf-8")  # UTC axis with the date


def test_write_report_passes_alternatives_and_scenario(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report hands experiment.json's alternatives and scenario to the figures (which
    the test above draws) and links their files."""
    results, hourly = _frames()
    run = tmp_path / "run"
    run.mkdir()
    results.to_parquet(run / "results.parquet")
    hourly.to_parquet(run / "hourly.parquet")
    meta = {
        "experiment": "t",
        "scenario": "synth:2,2,2,4,0",
        "seeds": 3,
        "jobs": {"n_jobs": 10, "traces": "-", "batch_share": 0.5, "batch_deadline_h": [2.0, 12.0]},
        "noise": True,
        "forecast_error": 0.1,
        "capacity_scale": 1.0,
        "engine": "in-process",
        "workers": 1,
        "wall_s": 1.0,
        "greensched": "greensched",
        "alternatives": ["greensched-carbon"],
    }
    (run / "experiment.json").write_text(json.dumps(meta), encoding="utf-8")
    calls: list[dict[str, object]] = []

    def spy(
        results: pd.DataFrame, hourly: pd.DataFrame, fig_dir: Path, **kw: object
    ) -> list[tuple[str, Path]]:
        calls.append(kw)
        return [(c, fig_dir / p) for c, p in _FIGURE_CAPTIONS]

    monkeypatch.setattr("greensched.eval.experiment.figures.experiment_figures", spy)
    text = write_report(run, tmp_path / "report.md").read_text(encoding="utf-8")
    assert calls == [
        {
            "greensched": "greensched",
            "alternatives": ("greensched-carbon",),
            "scenario": "synth:2,2,2,4,0",
        }
    ]
    for caption, p in _FIGURE_CAPTIONS:
        assert f"![{caption}](report_figures/{p.name})" in text
