"""The scenario builder: one configuration file in, one validated Scenario out."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd

from greensched.builder.config import _entries, _Node, _unique
from greensched.builder.dc_families import _DCFamiliesMixin
from greensched.builder.demand_network import _DemandNetworkMixin
from greensched.builder.parts import _Measured
from greensched.builder.timeseries import _local_time, _sig
from greensched.errors import ScenarioError
from greensched.scenario import Scenario, dataset_from_arrays, load_scenario

# ================================================================================================
# The builder
# ================================================================================================


class _Builder(_DemandNetworkMixin, _DCFamiliesMixin):
    """Builds one scenario from a configuration file; each mixin owns a family of inputs."""

    def __init__(self, config_path: Path, days: int | None, start: str | None,
                 data_dir: str | Path | None) -> None:
        self.file = config_path
        try:
            with config_path.open("rb") as fh:
                doc = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ScenarioError("configuration file not found", file=config_path) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ScenarioError(f"invalid TOML ({exc})", file=config_path) from exc
        self.root = _Node(doc, "", config_path)
        self.root.check_keys(
            ("scenario", "sizing", "energy", "datacenter", "datacenter_defaults", "area",
             "area_defaults", "query_type", "query_type_defaults", "demand", "network")
        )
        self.override_days = days
        self.override_start = start
        self.override_data_dir = data_dir
        self.notes: list[str] = []
        self.trace_span_h = 0.0
        self.data_dir = Path(".")
        self._measured: _Measured | None = None

    # -- [scenario] --------------------------------------------------------------------------------
    def build(self) -> Scenario:
        meta = self.parse_meta()
        T = 24 * meta.days
        times = pd.date_range(meta.start, periods=T, freq="h")
        sizing = self.root.table("sizing", {})
        sizing.check_keys(("capacity_headroom", "grid_headroom"))
        demand = self.root.table("demand")
        demand.check_keys(("source", "trace_files", "trace_tz", "queries_per_hour", "profile",
                           "diurnal_amplitude", "peak_local_hour", "hourly_profile",
                           "weekend_factor"))
        source = demand.text("source", None, ("trace", "synthetic"))
        if source is None:
            raise demand.error("source", 'missing field: "trace" or "synthetic"')

        areas = _entries(self.root, "area", "area_defaults")
        dcs = _entries(self.root, "datacenter", "datacenter_defaults")
        if not areas:
            raise ScenarioError("no [[area]] entries", file=self.file, column="area")
        if not dcs:
            raise ScenarioError("no [[datacenter]] entries", file=self.file, column="datacenter")
        for a in areas:
            a.check_keys(("id", "name", "city", "latitude", "longitude", "population", "tz",
                          "utc_offset"))
        for d in dcs:
            d.check_keys(("id", "name", "city", "latitude", "longitude", "tz", "utc_offset",
                          "carbon_file", "carbon_format", "carbon_tz", "carbon_kg_per_kwh",
                          "price_file", "price_node", "price_usd_per_kwh",
                          "price_adder_usd_per_kwh", "pue", "wue_l_per_kwh", "ewif_l_per_kwh",
                          "carbon_price_usd_per_kg", "grid_cap_kw", "renewable_kw",
                          "renewable_share", "renewable_profile", "capacity",
                          "delay_s_per_token"))
        area_ids = [a.ident("id") for a in areas]
        _unique(areas, area_ids, "area")
        dc_ids = [d.ident("id") for d in dcs]
        _unique(dcs, dc_ids, "datacenter")

        qts, rate, rate_note = self.parse_query_types(meta, demand, source)
        queries = self.demand(meta, times, areas, qts, demand, source, rate, rate_note)
        NA, J, K, R = len(areas), len(dcs), len(qts), len(meta.resources)
        h = np.array([q.input_tokens for q in qts])
        f = np.array([q.output_tokens for q in qts])
        tau_in = _sig(np.array([q.tau_in for q in qts]))
        tau_out = _sig(np.array([q.tau_out for q in qts]))
        e_query = tau_in * h + tau_out * f  # kWh per query
        it_kw = queries.sum(axis=1) @ e_query  # (T,)
        peak_it = float(it_kw.max())

        # -- per-DC static values
        pue = np.array([d.number("pue", lo=1.0) for d in dcs])
        wue = np.array([d.number("wue_l_per_kwh", lo=0.0) for d in dcs])
        ewif = np.array([d.number("ewif_l_per_kwh", lo=0.0) for d in dcs])
        delta = np.array([d.number("carbon_price_usd_per_kg", lo=0.0) for d in dcs])

        # -- hourly series
        carbon = np.empty((T, J))
        price = np.empty((T, J))
        renewable = np.empty((T, J))
        grid_cap = np.empty((T, J))
        carbon_notes, price_notes = [], []
        grid_headroom = sizing.number("grid_headroom", 2.0, lo=0.0, lo_open=True)
        for j, d in enumerate(dcs):
            local = _local_time(d, times, required=False)
            carbon[:, j], note = self.carbon_series(d, meta, times)
            carbon_notes.append(f"{dc_ids[j]}: {note}")
            price[:, j], note = self.price_series(d, meta, times, local)
            price_notes.append(f"{dc_ids[j]}: {note}")
            even_kw = pue[j] * peak_it / J
            renewable[:, j] = self.renewable_series(d, times, local, even_kw)
            cap = d.raw("grid_cap_kw")
            if cap == "auto":
                grid_cap[:, j] = math.ceil(grid_headroom * even_kw)
            else:
                grid_cap[:, j] = d.check_number("grid_cap_kw", cap, lo=0.0)
        carbon = np.round(carbon, 9)
        price = np.round(price, 8)
        renewable = np.round(renewable, 3)
        self.notes.append(f"carbon ({meta.carbon_basis} basis for Electricity Maps, "
                          f"date mapping {meta.date_mapping}): " + "; ".join(carbon_notes))
        self.notes.append("electricity price: " + "; ".join(price_notes))

        # -- processing delay, resources, capacity
        v = np.empty((J, K))
        for j, d in enumerate(dcs):
            v[j] = self.delay_per_token(d, qts)
        v = _sig(v)
        alpha = np.empty((K, R))
        for k, q in enumerate(qts):
            alpha[k] = self.resource_use(q, meta.resources)
        alpha = _sig(alpha)
        use_t = np.einsum("tk,kr->tr", queries.sum(axis=1) * (h + f)[None, :], alpha)
        peak_use = use_t.max(axis=0)
        cap_headroom = sizing.number("capacity_headroom", 2.0, lo=0.0, lo_open=True)
        capacity = np.empty((J, R))
        for j, d in enumerate(dcs):
            capacity[j] = self.capacity(d, meta.resources, peak_use, cap_headroom, J)

        # -- network and delays
        rtt, bandwidth, token_bits = self.network(meta, areas, dcs)
        token_size = np.full((T, NA, K), token_bits)
        # per-query latency of serving (i,k,t) at j (delay_model "per_query"): (T, NA, J, K)
        per_q_tran = token_bits * (h + f)[None, None, :] / bandwidth[:, :, None]  # (NA,J,K)
        s_jk = v * (h + f)[None, :]  # (J,K)
        latency = per_q_tran[None] + s_jk[None, None] + rtt[None, :, :, None]
        best = np.broadcast_to(latency.min(axis=2), (T, NA, K))  # (T, NA, K)
        delay_limit = np.empty((NA, K))
        for k, q in enumerate(qts):
            delay_limit[:, k] = self.delay_limit(q, area_ids, queries[:, :, k])
        delay_limit = np.ceil(delay_limit * 1000.0) / 1000.0
        bad = best > delay_limit[None] * (1 + 1e-12)
        if bad.any():
            t, i, k = (int(x[0]) for x in np.nonzero(bad))
            key = "latency_limit_s" if qts[k].node.has("latency_limit_s") else "delay_limit_s"
            raise qts[k].node.error(
                key,
                f"no data center meets the delay limit of area {area_ids[i]!r} at hour {t}: "
                f"limit {delay_limit[i, k]:.6g} s per query, best {best[t, i, k]:.6g} s; raise "
                "the limit",
                qts[k].node.raw(key),
            )

        # -- necessary feasibility checks
        short = np.flatnonzero(capacity.sum(axis=0) < peak_use * (1 - 1e-9))
        if short.size:
            r = int(short[0])
            raise ScenarioError(
                f"the data centers' total {meta.resources[r]!r} capacity "
                f"{capacity[:, r].sum():.6g} is below the peak-hour use {peak_use[r]:.6g}; raise "
                "the capacities (or capacity_headroom)",
                file=self.file, column=f"datacenter[*].capacity.{meta.resources[r]}",
            )
        supply = ((grid_cap + renewable) / pue[None, :]).sum(axis=1)
        short_t = np.flatnonzero(supply < it_kw * (1 - 1e-9))
        if short_t.size:
            t = int(short_t[0])
            raise ScenarioError(
                f"at hour {t} the grid caps plus renewables ({supply[t]:.6g} kW of IT load) "
                f"cannot carry the demand's IT load {it_kw[t]:.6g} kW; raise grid_cap_kw "
                "(or grid_headroom)",
                file=self.file, column="datacenter[*].grid_cap_kw",
            )

        # -- water budget
        water_per_it = wue[None, :] + ewif[None, :] * pue[None, :]  # l per IT kWh, (T,J)
        water_per_it = np.broadcast_to(water_per_it, (T, J))
        budget = meta.water_budget_l
        if meta.water_budget_factor is not None:
            even = float((it_kw[:, None] / J * water_per_it).sum())
            budget = float(np.round(meta.water_budget_factor * even, 3))
            self.notes.append(f"water budget: {meta.water_budget_factor:g} × the water of an "
                              f"even split ({even:,.1f} l)")
        if budget is not None:
            least = float((it_kw * water_per_it.min(axis=1)).sum())
            if budget < least * (1 - 1e-9):
                raise ScenarioError(
                    f"water budget {budget:.6g} l is below the least water any allocation needs "
                    f"({least:.6g} l)",
                    file=self.file,
                    column="scenario.water_budget_factor" if meta.water_budget_factor is not None
                    else "scenario.water_budget_l",
                )

        ds = dataset_from_arrays(
            {
                "dc_name": np.array([d.text("name", d.raw("id")) for d in dcs], dtype=object),
                "dc_latitude": np.array([d.number("latitude") for d in dcs]),
                "dc_longitude": np.array([d.number("longitude") for d in dcs]),
                "pue": pue,
                "carbon_price_usd_per_kg": delta,
                "area_name": np.array(
                    [a.text("name", a.raw("id")) for a in areas], dtype=object
                ),
                "area_latitude": np.array([a.number("latitude") for a in areas]),
                "area_longitude": np.array([a.number("longitude") for a in areas]),
                "population": np.array([a.number("population") for a in areas]),
                "input_tokens": h,
                "output_tokens": f,
                "energy_in_kwh_per_token": tau_in,
                "energy_out_kwh_per_token": tau_out,
                "delay_penalty_usd_per_s": np.array([q.rho for q in qts]),
                "capacity": capacity,
                "units_per_token": alpha,
                "delay_s_per_token": v,
                "rtt_s": rtt,
                "bandwidth": bandwidth,
                "delay_limit_s": delay_limit,
                "price_usd_per_kwh": price,
                "carbon_kg_per_kwh": carbon,
                "renewable_kw": renewable,
                "grid_cap_kw": grid_cap,
                "wue_l_per_kwh": wue,
                "ewif_l_per_kwh": ewif,
                "queries": queries,
                "token_size": token_size,
            },
            areas=area_ids,
            dcs=dc_ids,
            query_types=[q.id for q in qts],
            resources=meta.resources,
            hours=T,
        )
        start_text = meta.start.strftime("%Y-%m-%dT%H:%M:%SZ")
        provenance = (
            f"Built by greensched.builder from {self.file.name}: {T} h from {start_text}. "
            + ". ".join(self.notes) + "."
        )
        description = (meta.description.strip() + " " if meta.description.strip() else "") + \
            provenance
        return Scenario(
            name=meta.name,
            description=description,
            hours=T,
            start=start_text,
            water_budget_l=budget,
            weights=meta.weights,
            ds=ds,
            extra_meta={"build_config": self.file.name},
            delay_model="per_query",
        )

    # -- per-DC pieces ---------------------------------------------------------------------------


def build_scenario(
    config_path: str | Path,
    *,
    days: int | None = None,
    start: str | None = None,
    data_dir: str | Path | None = None,
) -> Scenario:
    """Build a scenario from a TOML build configuration (see ``docs/scenario-build.md``).

    Parameters
    ----------
    config_path
        The configuration file.
    days
        Override ``[scenario] days`` (1–366).
    start
        Override ``[scenario] start`` (``YYYY-MM-DD`` or an ISO-8601 UTC time).
    data_dir
        Override ``[scenario] data_dir`` (the folder of the shared data sets).

    Returns
    -------
    Scenario
        A validated scenario (``hours = 24 × days``; ``start`` = the UTC time of hour 0).

    Raises
    ------
    ScenarioError
        With ``file`` = the configuration and ``column`` = the field path at fault
        (``datacenter[2].pue``), for every bad, missing or unknown field, unreadable data file,
        or a configuration that cannot be feasible (no DC meets a delay limit, too little
        capacity, grid power or water).
    """
    path = Path(config_path)
    return _Builder(path, days, start, data_dir).build()


def build_from_config(
    config_path: str | Path,
    out_dir: str | Path,
    days: int | None = None,
    start: str | None = None,
    *,
    data_dir: str | Path | None = None,
) -> Path:
    """Build a scenario, save it in ``out_dir``, reload it and check the reload is identical.

    ``days`` and ``start`` override the configuration (as in ``greensched scenario build``).
    Returns the output directory.
    """
    scen = build_scenario(config_path, days=days, start=start, data_dir=data_dir)
    out = scen.save(out_dir)
    back = load_scenario(out)
    same = (
        back.ds.identical(scen.ds)
        and back.name == scen.name
        and back.description == scen.description
        and back.hours == scen.hours
        and back.start == scen.start
        and back.water_budget_l == scen.water_budget_l
        and back.weights == scen.weights
    )
    if not same:
        raise ScenarioError("the saved scenario does not reload identically", file=out)
    return Path(out)
