"""Hourly demand per area and query type; the area–DC network delays."""

from __future__ import annotations

import numpy as np
import pandas as pd

from greensched.builder.config import _MISSING, _Node
from greensched.builder.parts import _QT, _BuilderState, _Meta
from greensched.builder.sources import _cached_rtt, _data_path, _read_data, _stamp
from greensched.builder.timeseries import _haversine_km, _local_time
from greensched.errors import ScenarioError


class _DemandNetworkMixin(_BuilderState):
    """Hourly demand per area and query type; the area–DC network (a part of :class:`_Builder`)."""

    def demand(self, meta: _Meta, times: pd.DatetimeIndex, areas: list[_Node],
               qts: list[_QT], demand: _Node, source: str, rate: float, rate_note: str
               ) -> np.ndarray:
        q_raw = demand.raw("queries_per_hour", "trace" if source == "trace" else _MISSING)
        if q_raw == "trace":
            if source != "trace":
                raise demand.error("queries_per_hour", '"trace" needs source = "trace"', q_raw)
            total = rate
            self.notes.append(f"demand scale: the traces' arrival rate, {rate_note}")
        else:
            total = demand.check_number("queries_per_hour", q_raw, lo=0.0, lo_open=True)
            self.notes.append(f"demand scale: {total:,.0f} queries per hour (configured)")
        default_profile = "diurnal"
        if source == "trace" and self.trace_span_h >= 24.0:
            default_profile = "trace"
        profile = demand.text("profile", default_profile, ("diurnal", "trace", "hourly"))
        weekend = demand.number("weekend_factor", 1.0, lo=0.0)
        K = len(qts)
        if profile == "trace":
            if source != "trace" or self.trace_span_h < 24.0:
                raise demand.error("profile", "a trace profile needs traces covering >= 24 h "
                                   "(the Azure 2023 traces cover about 1 h)", profile)
            prof_k = np.stack([q.hour_counts for q in qts if q.hour_counts is not None])
            prof_k = prof_k / np.maximum(prof_k.mean(axis=1, keepdims=True), 1e-300)
            self.notes.append("hour-of-day profile: the traces' hourly counts")
        elif profile == "hourly":
            base = demand.numbers("hourly_profile", 24, lo=0.0)
            if base.sum() <= 0:
                raise demand.error("hourly_profile", "the profile must not be all zero")
            prof_k = np.tile(base / base.mean(), (K, 1))
            self.notes.append("hour-of-day profile: configured 24 local-hour weights")
        else:
            amp = demand.number("diurnal_amplitude", 0.5, lo=0.0, hi=1.0)
            peak = demand.number("peak_local_hour", 14.0, lo=0.0, hi=24.0)
            hrs = np.arange(24, dtype=np.float64)
            base = 1.0 + amp * np.cos(2.0 * np.pi * (hrs - peak) / 24.0)
            prof_k = np.tile(base, (K, 1))
            self.notes.append(
                f"hour-of-day profile: assumed diurnal shape 1 + {amp:g} cos(2π(h − {peak:g})/24) "
                "in each area's local time"
            )
        pops = np.array([a.number("population", lo=0.0) for a in areas])
        if pops.sum() <= 0:
            raise ScenarioError("the area populations must not all be zero", file=self.file,
                                column="area[0].population")
        share = pops / pops.sum()
        mix = np.array([q.mix for q in qts])
        T, NA = len(times), len(areas)
        queries = np.empty((T, NA, K))
        for i, node in enumerate(areas):
            local = _local_time(node, times, required=True)
            assert local is not None
            hour, wday = local
            w = np.where(wday >= 5, weekend, 1.0)
            queries[:, i, :] = (total * share[i] * w)[:, None] * mix[None, :] * prof_k[:, hour].T
        return np.rint(queries)

    # -- network -------------------------------------------------------------------------------
    def network(self, meta: _Meta, areas: list[_Node], dcs: list[_Node]
                ) -> tuple[np.ndarray, np.ndarray, float]:
        node = self.root.table("network", {})
        node.check_keys(("ping_dir", "rtt_stat", "same_city_rtt_s", "fallback", "rtt_overhead_s",
                         "route_factor", "fiber_speed_km_per_s", "bandwidth_bps",
                         "tcp_window_bytes", "token_size_bits"))
        same_city = node.number("same_city_rtt_s", 0.002, lo=0.0)
        fallback = node.text("fallback", "fit", ("fit", "model"))
        overhead = node.number("rtt_overhead_s", 0.002, lo=0.0)
        route = node.number("route_factor", 1.5, lo=1.0)
        fiber = node.number("fiber_speed_km_per_s", 200_000.0, lo=0.0, lo_open=True)
        bandwidth = node.number("bandwidth_bps", 1e9, lo=0.0, lo_open=True)
        window = node.number("tcp_window_bytes", None, lo=0.0, lo_open=True)
        token_bits = node.number("token_size_bits", 32.0, lo=0.0, lo_open=True)
        matrix: pd.DataFrame | None = None
        if node.has("ping_dir"):
            directory = _data_path(node, "ping_dir", meta.data_dir, directory=True)
            stat = node.text("rtt_stat", "mean", ("mean", "median", "p95", "min", "max"))
            stamps = tuple(_stamp(p) for p in sorted(directory.glob("*_delay.csv")))
            matrix = _read_data(node, "ping_dir",
                                lambda: _cached_rtt(str(directory), stamps, stat))
        a_city = [a.text("city", None) for a in areas]
        d_city = [d.text("city", None) for d in dcs]
        a_lat = np.array([a.number("latitude", lo=-90, hi=90) for a in areas])
        a_lon = np.array([a.number("longitude", lo=-180, hi=180) for a in areas])
        d_lat = np.array([d.number("latitude", lo=-90, hi=90) for d in dcs])
        d_lon = np.array([d.number("longitude", lo=-180, hi=180) for d in dcs])
        NA, J = len(areas), len(dcs)
        rtt = np.full((NA, J), np.nan)
        known = set(matrix.index) if matrix is not None else set()
        n_meas = n_same = 0
        for i in range(NA):
            for j in range(J):
                if a_city[i] is not None and a_city[i] == d_city[j]:
                    rtt[i, j] = same_city
                    n_same += 1
                elif (matrix is not None and a_city[i] in known and d_city[j] in known
                      and np.isfinite(matrix.loc[a_city[i], d_city[j]])):
                    rtt[i, j] = float(matrix.loc[a_city[i], d_city[j]])
                    n_meas += 1
        missing = np.isnan(rtt)
        dist = _haversine_km(a_lat[:, None], a_lon[:, None], d_lat[None, :], d_lon[None, :])
        a, b = overhead, 2.0 * route / fiber
        how = f"model {overhead * 1000:g} ms + 2 × {route:g} × km / {fiber:,.0f} km/s"
        if missing.any() and fallback == "fit":
            coords: dict[str, tuple[float, float]] = {}
            for cities, lat, lon in ((d_city, d_lat, d_lon), (a_city, a_lat, a_lon)):
                for c, la, lo in zip(cities, lat, lon, strict=True):
                    if c is not None:
                        coords[c] = (float(la), float(lo))
            xs, ys = [], []
            if matrix is not None:
                names = [c for c in matrix.index if c in coords]
                for p, c1 in enumerate(names):
                    for c2 in names[p + 1:]:
                        val = float(matrix.loc[c1, c2])
                        if np.isfinite(val):
                            xs.append(float(_haversine_km(np.array(coords[c1][0]),
                                                          np.array(coords[c1][1]),
                                                          np.array(coords[c2][0]),
                                                          np.array(coords[c2][1]))))
                            ys.append(val)
            if len(xs) < 3:
                raise node.error("fallback", 'the "fit" fallback needs >= 3 measured city pairs '
                                 "whose cities have coordinates in the config (set ping_dir and "
                                 'city fields, or use fallback = "model")', fallback)
            slope, intercept = np.polyfit(np.array(xs), np.array(ys), 1)
            a, b = max(0.0, float(intercept)), max(0.0, float(slope))
            how = (f"least-squares fit over {len(xs)} measured pairs: {a * 1000:.2f} ms + "
                   f"{b * 1e6:.2f} µs/km × great-circle km")
        rtt[missing] = a + b * dist[missing]
        rtt = np.round(rtt, 6)
        n_fall = int(missing.sum())
        self.notes.append(
            f"RTT: measured ping ({node.raw('rtt_stat', 'mean')}) for {n_meas} of {NA * J} "
            f"area-DC pairs, {n_same} same-city pairs at {same_city * 1000:g} ms, {n_fall} from "
            "the fallback" + (f" ({how})" if n_fall else "")
        )
        bw = np.full((NA, J), bandwidth)
        if window is not None:
            bw = np.minimum(bw, 8.0 * window / np.maximum(rtt, 1e-6))
            self.notes.append(f"bandwidth: min({bandwidth:g} bit/s, 8 × {window:g} B / RTT) "
                              "(TCP window limit); token size "
                              f"{token_bits:g} bit")
        else:
            self.notes.append(f"bandwidth: {bandwidth:g} bit/s; token size {token_bits:g} bit")
        return rtt, np.round(bw), token_bits

    # -- the whole build -------------------------------------------------------------------------
