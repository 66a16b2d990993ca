"""Relocation metrics: RID, layers, break-even, and the per-class metric table.

Demand is weighed by energy: the facility kWh the class's demand of an area would draw at its
home DC over the horizon, e_home[w, a] = Σ_t λ[w, a, t] · PUE_home · E[w, home, t].

* RID (relocatable inference demand) = Σ_{(w,a): F[w,a,·] has a node outside the home region}
  e_home / Σ e_home.
* Layer of (w, a) from its mask: *local* when every feasible node is in the home region;
  *regional* when every feasible node is in the home zone (with ``[zones]``), or within
  ``regional_rtt_ms`` of the client (without); *energy-oriented* otherwise.
* Break-even of moving (w, a) from home h to node d (a full move; the LP may move part):
  saving_d = Σ_t max(0, g[h, t] − g[d, t]) with g the per-share cost of the placement
  objective (energy + carbon cost + latency penalty; the LP moves the state once and then
  uses it only in the hours where d is cheaper), friction_d(S) = egress(h→d)·S + m·t_mig(S)/3600.
  Relocating to d pays when saving_d > friction_d(S); the break-even state size is
  S*_d = (saving_d − m·setup/3600) / (egress(h→d) + 8 m / (3600 Gbps)) GB, and the
  break-even budget is the least ℓ[w, a, d] over the nodes d where the move pays with the
  declared state (below it, no move pays). Capacity is ignored here (the LP respects it).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from greensched.scheduler.relocation.config import RelocationConfig
from greensched.scheduler.relocation.placement import PlacementModel

__all__ = ["LAYERS", "break_even", "home_energy_kwh", "layers", "metric_table", "rid"]

LAYERS = ("local", "regional", "energy-oriented")


def home_energy_kwh(model: PlacementModel) -> xr.DataArray:
    """Facility kWh of each (workload, area) served entirely at home, over the horizon."""
    fac = model.costs["facility_kwh"].sum("hour")
    home = model.inputs["home"]
    return fac.sel(dc=home).drop_vars("dc")


def _away(config: RelocationConfig, inputs: xr.Dataset) -> xr.DataArray:
    dcs = [str(d) for d in inputs["dc"].values]
    homes = [str(h) for h in inputs["home"].values]
    arr = np.array([[config.region_of(d) != config.region_of(h) for d in dcs] for h in homes])
    return xr.DataArray(arr, coords={"area": inputs["area"].values, "dc": dcs})


def rid(model: PlacementModel, feasible: xr.DataArray) -> pd.Series:
    """RID per class and ``"all"`` (share of energy whose mask leaves the home region)."""
    e = home_energy_kwh(model)
    relocatable = (feasible & _away(model.config, model.inputs)).any("dc")
    per = (e * relocatable).sum("area") / e.sum("area")
    out = pd.Series(per.values, index=[str(w) for w in per["workload"].values], name="rid")
    out["all"] = float((e * relocatable).sum() / e.sum())
    return out


def layers(model: PlacementModel, feasible: xr.DataArray) -> pd.DataFrame:
    """Layer of every (workload, area) with its energy and the home DC and feasible nodes."""
    cfg, inp = model.config, model.inputs
    e = home_energy_kwh(model)
    rows = []
    dcs = [str(d) for d in inp["dc"].values]
    for w in cfg.class_ids:
        for a in [str(x) for x in inp["area"].values]:
            home = str(inp["home"].sel(area=a).item())
            nodes = [
                d for d, ok in zip(dcs, feasible.sel(workload=w, area=a).values, strict=True) if ok
            ]
            if all(cfg.region_of(d) == cfg.region_of(home) for d in nodes):
                layer = "local"
            elif cfg.zones:
                layer = (
                    "regional"
                    if all(cfg.zone_of(d) == cfg.zone_of(home) for d in nodes)
                    else "energy-oriented"
                )
            else:
                rtt = inp["rtt_ms"].sel(workload=w, area=a)
                far = max(float(rtt.sel(dc=d)) for d in nodes)
                layer = "regional" if far <= cfg.regional_rtt_ms else "energy-oriented"
            rows.append(
                {
                    "workload": w,
                    "area": a,
                    "home": home,
                    "layer": layer if nodes else "none",
                    "feasible_nodes": len(nodes),
                    "nodes": " ".join(nodes),
                    "home_energy_kwh": float(e.sel(workload=w, area=a)),
                }
            )
    return pd.DataFrame(rows)


def break_even(model: PlacementModel, feasible: xr.DataArray) -> pd.DataFrame:
    """Break-even of every (workload, area, node outside the home region) allowed by law and
    capacity (module docstring), with ``in_mask`` = feasible at the declared budget."""
    cfg, inp = model.config, model.inputs
    g = model.costs["total_usd"]
    fr = model.friction
    ok = inp["law_ok"] & inp["capacity_ok"]
    rows = []
    dcs = [str(d) for d in inp["dc"].values]
    for wi, c in enumerate(cfg.classes):
        w = c.id
        rate = c.migration_usd_per_h
        setup_usd = rate * cfg.migration_setup_s / 3600.0
        for a in [str(x) for x in inp["area"].values]:
            home = str(inp["home"].sel(area=a).item())
            if not bool(ok.sel(workload=w, area=a, dc=home)):
                continue
            g_home = g.sel(workload=w, area=a, dc=home).values
            for d in dcs:
                if cfg.region_of(d) == cfg.region_of(home) or not bool(
                    ok.sel(workload=w, area=a, dc=d)
                ):
                    continue
                saving = float(
                    np.maximum(0.0, g_home - g.sel(workload=w, area=a, dc=d).values).sum()
                )
                price = float(fr["egress_usd_per_gb"].sel(area=a, dc=d))
                per_gb = price + 8.0 * rate / (3600.0 * cfg.transfer_gbps)
                friction_usd = float(fr["friction_usd"].sel(workload=w, area=a, dc=d))
                if per_gb > 0:
                    s_star = max(0.0, (saving - setup_usd) / per_gb)
                else:
                    s_star = np.inf if saving > setup_usd else 0.0
                rows.append(
                    {
                        "workload": w,
                        "area": a,
                        "home": home,
                        "dc": d,
                        "latency_ms": float(inp["latency_ms"].sel(workload=w, area=a, dc=d)),
                        "in_mask": bool(feasible.sel(workload=w, area=a, dc=d)),
                        "saving_usd": saving,
                        "friction_usd": friction_usd,
                        "pays": saving > friction_usd + 1e-12,
                        "egress_usd_per_gb": price,
                        "state_gb": c.state_gb,
                        "break_even_state_gb": s_star,
                    }
                )
        del wi
    cols = [
        "workload",
        "area",
        "home",
        "dc",
        "latency_ms",
        "in_mask",
        "saving_usd",
        "friction_usd",
        "pays",
        "egress_usd_per_gb",
        "state_gb",
        "break_even_state_gb",
    ]
    return pd.DataFrame(rows, columns=cols)


def _first_budget_reaching(points: pd.DataFrame, target: float, base: float) -> float:
    """Least budget whose carbon saving over ``base`` is at least ``target`` kg (NaN: none)."""
    ok = points[points["status"] == "optimal"]
    if target <= 0 or ok.empty:
        return float("nan")
    saved = base - ok["carbon_kg"].to_numpy()
    hit = np.flatnonzero(saved >= target - 1e-9)
    return float(ok["budget_ms"].to_numpy()[hit[0]]) if len(hit) else float("nan")


def metric_table(
    model: PlacementModel,
    frontier_points: pd.DataFrame,
    declared: pd.DataFrame,
    feasible: xr.DataArray,
) -> pd.DataFrame:
    """One row per class: demand share, layer shares, RID, savings, EROL/CROL, break-even.

    Parameters
    ----------
    model
        The placement model.
    frontier_points
        Output of :func:`~greensched.scheduler.relocation.frontier.frontier`.
    declared
        ``by_class`` of the placement at the declared budgets.
    feasible
        The mask at the declared budgets.
    """
    cfg = model.config
    e = home_energy_kwh(model)
    total_e = float(e.sum())
    r = rid(model, feasible)
    lay = layers(model, feasible)
    be = break_even(model, feasible)
    rows = []
    for c in cfg.classes:
        w = c.id
        pts = frontier_points[frontier_points["workload"] == w]
        ok = pts[pts["status"] == "optimal"]
        row: dict[str, object] = {"workload": w, "query_type": c.query_type}
        ew = float(e.sel(workload=w).sum())
        row["demand_share"] = ew / total_e if total_e > 0 else np.nan
        lw = lay[lay["workload"] == w]
        for name in LAYERS:
            sel = lw[lw["layer"] == name]["home_energy_kwh"].sum()
            row[f"share_{name}"] = float(sel / ew) if ew > 0 else np.nan
        shares = [row[f"share_{n}"] for n in LAYERS]
        row["layer"] = LAYERS[int(np.nanargmax(np.asarray(shares, dtype=float)))]
        row["rid"] = float(r[w])
        row["budget_ms"] = c.latency_budget_ms
        row["tightest_feasible_ms"] = float(ok["budget_ms"].min()) if len(ok) else np.nan
        row["full_relax_ms"] = float(ok["budget_ms"].max()) if len(ok) else np.nan
        d = declared.loc[w]
        for k in ("energy_usd", "carbon_kg", "friction_usd", "objective_usd", "moved_share"):
            row[k] = float(d[k])
        if len(ok):
            base_e = float(ok["energy_usd"].iloc[0])
            base_c = float(ok["carbon_kg"].iloc[0])
            at = ok[ok["budget_ms"] <= c.latency_budget_ms + 1e-9]
            cur = at.iloc[-1] if len(at) else ok.iloc[0]
            relax = float(cur["budget_ms"]) - float(ok["budget_ms"].iloc[0])
            saving_usd = base_e - float(cur["energy_usd"])
            saving_kg = base_c - float(cur["carbon_kg"])
            row["saving_usd"] = saving_usd
            row["saving_kg"] = saving_kg
            row["erol_usd_per_ms"] = saving_usd / relax if relax > 0 else np.nan
            row["crol_kg_per_ms"] = saving_kg / relax if relax > 0 else np.nan
            nxt = ok[ok["budget_ms"] > float(cur["budget_ms"]) + 1e-9]
            if len(nxt):
                n1 = nxt.iloc[0]
                dl = float(n1["budget_ms"]) - float(cur["budget_ms"])
                row["erol_marginal_usd_per_ms"] = (float(cur["energy_usd"]) - n1["energy_usd"]) / dl
                row["crol_marginal_kg_per_ms"] = (float(cur["carbon_kg"]) - n1["carbon_kg"]) / dl
            else:
                row["erol_marginal_usd_per_ms"] = 0.0
                row["crol_marginal_kg_per_ms"] = 0.0
            full = base_c - float(ok["carbon_kg"].iloc[-1])
            row["full_saving_kg"] = full
            row["full_saving_usd"] = base_e - float(ok["energy_usd"].iloc[-1])
            b50 = _first_budget_reaching(ok, 0.5 * full, base_c)
            b80 = _first_budget_reaching(ok, 0.8 * full, base_c)
            t0 = float(ok["budget_ms"].iloc[0])
            row["budget_50pct_carbon_ms"] = b50
            row["budget_80pct_carbon_ms"] = b80
            row["relax_50pct_carbon_ms"] = b50 - t0
            row["relax_80pct_carbon_ms"] = b80 - t0
        bw = be[be["workload"] == w]
        inm = bw[bw["in_mask"]]
        row["break_even_state_gb"] = (
            float(inm["break_even_state_gb"].max()) if len(inm) else float("nan")
        )
        pays = bw[bw["pays"]]
        row["break_even_budget_ms"] = float(pays["latency_ms"].min()) if len(pays) else np.nan
        paying_areas = set(inm[inm["pays"]]["area"])
        row["share_move_pays"] = (
            float(e.sel(workload=w, area=sorted(paying_areas)).sum() / ew)
            if paying_areas and ew > 0
            else 0.0
        )
        rows.append(row)
    return pd.DataFrame(rows)
