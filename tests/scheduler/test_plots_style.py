"""Plan, sweep, relocation and equity figures: every format, the house palette, words in titles.

The SVGs are written with text kept as text (``svg.fonttype = none``), so the tests can read
titles, axis labels and colours back from the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from greensched.plotstyle import OKABE_ITO, FigureFormat
from greensched.scenario import Scenario
from greensched.scheduler import PlanConfig, plan
from greensched.scheduler.planner import PlanResult
from greensched.synth import synthesize

FORMATS = [f.value for f in FigureFormat]
MAGIC = {"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}


@pytest.fixture(autouse=True)
def _svg_text(monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.setattr("greensched.plotstyle.PNG_DPI", 60)  # the test checks files, not pixels
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        yield


@pytest.fixture(scope="module")
def nine() -> tuple[Scenario, PlanResult]:
    """Nine DCs with names and a start time, solved (3 hours, 2 areas, 2 query types)."""
    scen = synthesize(9, 2, 2, 3, 0)
    scen.start = "2024-06-01T00:00:00Z"
    scen.ds["dc_name"] = ("dc", np.array([f"Site {c}" for c in "ABCDEFGHI"], dtype=object))
    res = plan(scen, PlanConfig())
    assert res.is_ok
    return scen, res


def colours(svg: Path) -> set[str]:
    return {c.upper() for c in re.findall(r"#[0-9a-fA-F]{6}", svg.read_text("utf-8"))}


def check_formats(make: object, tmp_path: Path) -> dict[str, Path]:
    """``make(dir, fmt) -> Path | list[Path]`` writes a non-empty file of each format."""
    out: dict[str, Path] = {}
    for fmt in FORMATS:
        d = tmp_path / fmt
        got = make(d, fmt)  # type: ignore[operator]
        paths = got if isinstance(got, list) else [got]
        assert paths
        for p in paths:
            assert p.suffix == f".{fmt}" and p.read_bytes()[:5].startswith(MAGIC[fmt]), p
        out[fmt] = paths[0] if not isinstance(got, list) else d
    return out


def test_plan_figures(nine: tuple[Scenario, PlanResult], tmp_path: Path) -> None:
    from greensched.scheduler.plots import PLAN_FIGURES, plot_plan

    scen, res = nine
    check_formats(lambda d, f: plot_plan(res, scen, d, fmt=f, figures=("grid_by_dc",)),
                  tmp_path)
    rest = tuple(n for n in PLAN_FIGURES if n != "grid_by_dc")
    svgs = plot_plan(res, scen, tmp_path / "svg", fmt="svg", figures=rest)
    assert [p.name for p in svgs] == [f"{n}.svg" for n in rest]
    grid = tmp_path / "svg" / "grid_by_dc.svg"
    text = grid.read_text("utf-8")
    assert set(OKABE_ITO) <= colours(grid), "the nine DCs get the nine palette colours"
    assert "UTC" in text and "2024-06-01" in text, "real time axis with its zone"
    assert "Site A" in text and "Site I" in text and "dc000" not in text, "DC names, not ids"
    heat = (tmp_path / "svg" / "allocation_heatmap.svg").read_text("utf-8")
    assert "Where each area" in heat and "energy/carbon/delay weights" in heat
    # without a start time the axis counts hours
    scen2 = scen.copy()
    scen2.start = None
    p = plot_plan(res, scen2, tmp_path / "nostart", fmt="svg", figures=("hourly_costs",))[0]
    assert "hour of the horizon" in p.read_text("utf-8")


def test_sweep_figure(tmp_path: Path) -> None:
    from greensched.scheduler.sweep import plot_sweep

    rows = [{"scale": s, "model": m, "status": "optimal", "energy_usd": s, "carbon_usd": 2 * s,
             "delay_usd": 1.0, "carbon_kg": 3 * s} for s in (0.5, 1.0) for m in ("m0", "m1")]
    frame = pd.DataFrame(rows)
    paths = check_formats(lambda d, f: (d.mkdir(parents=True, exist_ok=True),
                                        plot_sweep(frame, "theta", d, f))[1], tmp_path)
    text = paths["svg"].read_text("utf-8")
    assert {OKABE_ITO[0], OKABE_ITO[1]} <= colours(paths["svg"])
    assert "carbon intensity" in text and "M1: energy only" in text


def test_relocation_figures(tmp_path: Path) -> None:
    from greensched.scheduler.relocation.plots import plot_frontier, plot_layers

    points = pd.DataFrame([{"workload": w, "status": "optimal", "relax_ms": r,
                            "budget_ms": 10 + r, "carbon_kg": 5 - r / 10, "energy_usd": 2.0}
                           for w in ("chat", "batch") for r in (0.0, 5.0, 10.0)])
    metrics = pd.DataFrame({"workload": ["chat", "batch"], "budget_ms": [15.0, 20.0],
                            "demand_share": [0.4, 0.6], "share_local": [0.5, 0.0],
                            "share_regional": [0.5, 0.2], "share_energy-oriented": [0.0, 0.8]})
    fr = check_formats(lambda d, f: (d.mkdir(parents=True, exist_ok=True),
                                     plot_frontier(points, d / "frontier", metrics, f))[1],
                       tmp_path / "fr")
    la = check_formats(lambda d, f: (d.mkdir(parents=True, exist_ok=True),
                                     plot_layers(metrics, d / "layers", f))[1], tmp_path / "la")
    assert {OKABE_ITO[0], OKABE_ITO[1]} <= colours(fr["svg"])
    assert {OKABE_ITO[4], OKABE_ITO[0], OKABE_ITO[2]} <= colours(la["svg"])
    assert "workload class" in fr["svg"].read_text("utf-8")


def test_equity_figures(tmp_path: Path) -> None:
    from greensched.scheduler.equity.algorithms import run_algorithms
    from greensched.scheduler.equity.plan_equity import problem_from_scenario
    from greensched.scheduler.equity.plots import plot_frontier, plot_per_region

    prob = problem_from_scenario(synthesize(2, 2, 2, 3, 0))
    res = run_algorithms(prob, ("cost-glb", "e-glb"), q="1")
    pr = check_formats(lambda d, f: plot_per_region(prob, res, d / "per_region", f), tmp_path)
    assert {OKABE_ITO[0], OKABE_ITO[1]} <= colours(pr["svg"])
    assert "Cost-GLB" in pr["svg"].read_text("utf-8")
    cols = ("Energy cost avg (USD)", "Carbon max/avg", "Water max/avg", "Perf. cost max/avg")
    frontier = pd.DataFrame([{"q": q, "mu_scale": m, **{c: 1.0 + m for c in cols}}
                             for q in ("2", "inf") for m in (0.5, 1.0)])
    fr = check_formats(lambda d, f: plot_frontier(frontier, d / "frontier", f),
                       tmp_path / "fr")
    assert "q = ∞" in fr["svg"].read_text("utf-8")
    assert {OKABE_ITO[0], OKABE_ITO[1]} <= colours(fr["svg"])
