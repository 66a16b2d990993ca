"""The whole relocation analysis of one scenario and class set, and its output files.

:func:`analyse` builds the inputs and masks, solves the placement at the declared budgets,
sweeps every class's frontier and computes the metrics; :meth:`RelocationReport.write` writes

* ``masks.csv``       workload, area, dc, latency_ms, latency_ok, law_ok, capacity_ok, feasible
* ``friction.csv``    workload, area, home, dc, egress_usd_per_gb, egress_usd, migration_s,
                      migration_usd, friction_usd (nodes outside the home region)
* ``placement.csv``   workload, area, dc, hour, share (declared budgets; shares > 1e-9)
* ``frontier.csv``    the sweep (:func:`~greensched.scheduler.relocation.frontier.frontier`)
* ``metrics.csv``     one row per class
                      (:func:`~greensched.scheduler.relocation.metrics.metric_table`)
* ``layers.csv``      layer of every (workload, area)
* ``break_even.csv``  break-even of every allowed move
* ``summary.json``    totals, RID, layer shares of all demand, solver timings, settings
* ``frontier.png`` and ``layers.png`` (with ``plot=True``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from greensched.errors import InfeasibleError
from greensched.scenario import Scenario
from greensched.scheduler.relocation.config import RelocationConfig
from greensched.scheduler.relocation.frontier import frontier
from greensched.scheduler.relocation.masks import class_inputs, feasibility_masks
from greensched.scheduler.relocation.metrics import LAYERS, break_even, layers, metric_table, rid
from greensched.scheduler.relocation.placement import PlacementModel
from greensched.util import jsonable

__all__ = ["RelocationReport", "analyse"]


@dataclass
class RelocationReport:
    """Everything :func:`analyse` computed (tables as pandas frames)."""

    scenario_name: str
    masks: xr.Dataset
    placement: pd.DataFrame
    declared: pd.DataFrame
    frontier: pd.DataFrame
    metrics: pd.DataFrame
    layers: pd.DataFrame
    break_even: pd.DataFrame
    friction: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)

    def write(self, out: str | Path, *, plot: bool = True, fmt: str = "png") -> list[Path]:
        """Write the tables (and figures, as ``fmt``: png, svg or pdf) to directory ``out``;
        return the paths written."""
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        m = self.masks
        mask_df = (
            xr.Dataset(
                {k: m[k] for k in ("latency_ms", "latency_ok", "law_ok", "capacity_ok", "feasible")}
            )
            .to_dataframe()
            .reset_index()[
                [
                    "workload",
                    "area",
                    "dc",
                    "latency_ms",
                    "latency_ok",
                    "law_ok",
                    "capacity_ok",
                    "feasible",
                ]
            ]
        )
        tables = {
            "masks.csv": mask_df,
            "friction.csv": self.friction,
            "placement.csv": self.placement,
            "frontier.csv": self.frontier,
            "metrics.csv": self.metrics,
            "layers.csv": self.layers,
            "break_even.csv": self.break_even,
        }
        paths = []
        for name, df in tables.items():
            p = d / name
            df.to_csv(p, index=False, float_format="%.6g")
            paths.append(p)
        p = d / "summary.json"
        p.write_text(json.dumps(jsonable(self.summary), indent=2, sort_keys=True) + "\n")
        paths.append(p)
        if plot:
            from greensched.scheduler.relocation.plots import plot_frontier, plot_layers

            paths.append(plot_frontier(self.frontier, d / "frontier", self.metrics, fmt=fmt))
            paths.append(plot_layers(self.metrics, d / "layers", fmt=fmt))
        return paths


def analyse(
    scenario: Scenario,
    config: RelocationConfig,
    *,
    service_s: xr.DataArray | None = None,
    threads: int | None = 1,
    progress: Callable[[int, int], None] | None = None,
) -> RelocationReport:
    """Run the relocation analysis (module docstring).

    ``service_s`` (predicted service seconds) is passed to
    :func:`~greensched.scheduler.relocation.masks.class_inputs`; ``progress(done, total)`` is
    called after every frontier solve.

    Raises
    ------
    greensched.errors.InfeasibleError
        When the declared budgets leave some (class, area) without a feasible node, or the
        placement at the declared budgets is infeasible (capacity).
    """
    t0 = time.perf_counter()
    inputs = class_inputs(scenario, config, service_s=service_s)
    masks = feasibility_masks(scenario, config, inputs=inputs)
    empty = masks["feasible"].attrs["empty"]
    if empty:
        w, a = empty[0]
        lat = inputs["latency_ms"].sel(workload=w, area=a)
        ok = inputs["law_ok"].sel(workload=w, area=a) & inputs["capacity_ok"].sel(workload=w)
        best = float(lat.where(ok).min()) if bool(ok.any()) else float("nan")
        raise InfeasibleError(
            f"class {w!r}: area {a!r} has no feasible compute node at the declared budget "
            f"{float(inputs['budget_ms'].sel(workload=w)):g} ms (least latency of an allowed "
            f"node: {best:.1f} ms; {len(empty)} (class, area) pairs are empty)"
        )
    t_build = time.perf_counter()
    model = PlacementModel(scenario, config, inputs, threads=threads)
    build_s = time.perf_counter() - t_build
    res = model.solve(masks["feasible"])
    if not res.is_ok or res.x is None or res.y is None or res.by_class is None:
        raise InfeasibleError(
            f"the placement at the declared budgets is {res.status}: the classes' demand does "
            f"not fit the DCs' capacity within their masks (capacity_share "
            f"{config.capacity_share:g})"
        )
    x = res.x
    place = x.where(x > 1e-9).to_dataframe(name="share").dropna().reset_index()
    place = place[["workload", "area", "dc", "hour", "share"]]
    t_sweep = time.perf_counter()
    points = frontier(model, config, inputs, progress=progress)
    sweep_s = time.perf_counter() - t_sweep
    feas = masks["feasible"]
    table = metric_table(model, points, res.by_class, feas)
    lay = layers(model, feas)
    be = break_even(model, feas)
    fr = model.friction.to_dataframe().reset_index()
    fr["home"] = fr["area"].map(
        dict(zip(inputs["area"].values, inputs["home"].values, strict=True))
    )
    fr = fr[
        [
            "workload",
            "area",
            "home",
            "dc",
            "egress_usd_per_gb",
            "egress_usd",
            "migration_s",
            "migration_usd",
            "friction_usd",
        ]
    ]
    away = [
        config.region_of(str(d)) != config.region_of(str(h))
        for d, h in zip(fr["dc"], fr["home"], strict=True)
    ]
    fr = fr[away].reset_index(drop=True)
    r = rid(model, feas)
    e_all = lay["home_energy_kwh"].sum()
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "classes_file": config.file,
        "egress_source": config.egress_source,
        "classes": config.class_ids,
        "rid_all": float(r["all"]),
        "layer_share_all": {
            n: float(lay[lay["layer"] == n]["home_energy_kwh"].sum() / e_all) for n in LAYERS
        },
        "declared": {
            "objective_usd": float(res.by_class["objective_usd"].sum()),
            "energy_usd": float(res.by_class["energy_usd"].sum()),
            "carbon_kg": float(res.by_class["carbon_kg"].sum()),
            "friction_usd": float(res.by_class["friction_usd"].sum()),
            "moved_share": float(
                (res.by_class["moved_share"] * res.by_class["facility_kwh"]).sum()
                / res.by_class["facility_kwh"].sum()
            ),
        },
        "lp": {"columns": model.n, "rows": model.n_rows, "build_s": build_s},
        "sweep": {"solves": len(points), "seconds": sweep_s},
        "seconds": time.perf_counter() - t0,
        "settings": {
            "transfer_gbps": config.transfer_gbps,
            "migration_setup_s": config.migration_setup_s,
            "regional_rtt_ms": config.regional_rtt_ms,
            "capacity_share": config.capacity_share,
            "carbon_price_usd_per_kg": config.carbon_price_usd_per_kg,
            "zones": config.zones,
        },
    }
    return RelocationReport(
        scenario_name=scenario.name,
        masks=masks,
        placement=place,
        declared=res.by_class,
        frontier=points,
        metrics=table,
        layers=lay,
        break_even=be,
        friction=fr,
        summary=summary,
    )
