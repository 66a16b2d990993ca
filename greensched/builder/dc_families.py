"""Per-DC hourly families: carbon, price, renewables, delay per token, resources, capacity."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from greensched.builder.config import _Node
from greensched.builder.inputs import _InputsMixin
from greensched.builder.parts import _QT, _Meta
from greensched.builder.sources import (
    _cached_electricity_maps,
    _cached_lets_wait_awhile,
    _cached_lmp,
    _data_path,
    _read_data,
    _stamp,
)
from greensched.builder.timeseries import _align, _describe, _profile24, _solar


class _DCFamiliesMixin(_InputsMixin):
    """Per-DC variable families: carbon, price, renewables, delay, resources, capacity, delay
    limits (a part of :class:`_Builder`)."""

    def carbon_series(self, d: _Node, meta: _Meta, times: pd.DatetimeIndex
                      ) -> tuple[np.ndarray, str]:
        if d.has("carbon_file") == d.has("carbon_kg_per_kwh"):
            raise d.error("carbon_file", "give exactly one of carbon_file or carbon_kg_per_kwh")
        if d.has("carbon_kg_per_kwh"):
            value = d.number("carbon_kg_per_kwh", lo=0.0)
            return np.full(len(times), value), f"constant {value:g} kg/kWh (configured)"
        path = _data_path(d, "carbon_file", meta.data_dir)
        fmt = d.text("carbon_format", "auto", ("auto", "electricity_maps", "lets_wait_awhile"))
        if fmt == "auto":
            with path.open("r", encoding="utf-8", errors="replace") as fh:
                header = fh.readline()
            if "Datetime (UTC)" in header:
                fmt = "electricity_maps"
            elif re.match(r"^\s*Time\s*,", header) and "Carbon Intensity" in header:
                fmt = "lets_wait_awhile"
            else:
                raise d.error("carbon_file", "cannot tell the file's format from its header; set "
                              "carbon_format", d.raw("carbon_file"))
        if fmt == "electricity_maps":
            series = _read_data(d, "carbon_file",
                                lambda: _cached_electricity_maps(_stamp(path), meta.carbon_basis))
            what = f"Electricity Maps {series.attrs.get('zone', '')}"
        else:
            tz = d.text("carbon_tz", "UTC")
            series = _read_data(d, "carbon_file",
                                lambda: _cached_lets_wait_awhile(_stamp(path), tz))
            what = f"Let's-Wait-Awhile {series.attrs.get('zone', '')} (timestamps read as {tz})"
        try:
            values, info = _align(series, times, meta.date_mapping)
        except ValueError as exc:
            raise d.error("carbon_file", str(exc), d.raw("carbon_file")) from exc
        return values, what + " " + _describe(info)

    def price_series(self, d: _Node, meta: _Meta, times: pd.DatetimeIndex,
                     local: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, str]:
        adder = d.number("price_adder_usd_per_kwh", 0.0)
        if d.has("price_file") == d.has("price_usd_per_kwh"):
            raise d.error("price_file", "give exactly one of price_file or price_usd_per_kwh")
        suffix = f" + adder {adder:g} $/kWh" if adder else ""
        if d.has("price_usd_per_kwh"):
            value = d.raw("price_usd_per_kwh")
            if isinstance(value, list):
                prices = _profile24(d, "price_usd_per_kwh", local)
                return prices + adder, "configured 24-hour local tariff" + suffix
            flat = d.check_number("price_usd_per_kwh", value)
            return np.full(len(times), flat + adder), f"flat {flat:g} $/kWh (configured)" + suffix
        path = _data_path(d, "price_file", meta.data_dir)
        df = _read_data(d, "price_file", lambda: _cached_lmp(_stamp(path)))
        nodes = sorted(df["location"].unique())
        node_name = d.text("price_node", None)
        if node_name is None:
            if len(nodes) != 1:
                raise d.error("price_node", f"the price file has several nodes ({', '.join(nodes)})"
                              "; name one")
            node_name = nodes[0]
        elif node_name not in nodes:
            raise d.error("price_node", f"not in the price file (nodes: {', '.join(nodes)})",
                          node_name)
        series = df.loc[df["location"] == node_name, "lmp_usd_per_kwh"]
        try:
            values, info = _align(series, times, meta.date_mapping)
        except ValueError as exc:
            raise d.error("price_file", str(exc), d.raw("price_file")) from exc
        note = f"real-time LMP {path.stem} node {node_name} (hourly mean) " + _describe(info)
        return values + adder, note + suffix

    def renewable_series(self, d: _Node, times: pd.DatetimeIndex,
                         local: tuple[np.ndarray, np.ndarray] | None, even_kw: float
                         ) -> np.ndarray:
        if d.has("renewable_kw") and d.has("renewable_share"):
            raise d.error("renewable_share", "give renewable_kw or renewable_share, not both")
        if d.has("renewable_share"):
            peak = d.number("renewable_share", lo=0.0) * even_kw
        else:
            peak = d.number("renewable_kw", 0.0, lo=0.0)
        prof = d.raw("renewable_profile", "solar")
        if isinstance(prof, list):
            shape = _profile24(d, "renewable_profile", local)
        elif prof == "solar":
            shape = _solar(times, d.number("latitude", lo=-90, hi=90),
                           d.number("longitude", lo=-180, hi=180))
        elif prof == "flat":
            shape = np.ones(len(times))
        else:
            raise d.error("renewable_profile", 'expected "solar", "flat" or a list of 24 numbers',
                          prof)
        return peak * shape

    def delay_per_token(self, d: _Node, qts: list[_QT]) -> np.ndarray:
        if not d.has("delay_s_per_token"):
            return np.array([self.measured_time(q)[0] for q in qts])
        value = d.raw("delay_s_per_token")
        fallback: np.ndarray | None = None
        if "delay_s_per_token" in d.data and "delay_s_per_token" in d.defaults:
            # types the DC's own table leaves out take the [datacenter_defaults] value
            fallback = self.delay_per_token(_Node(d.defaults, d.defaults_path or "", d.file), qts)
        if isinstance(value, dict):
            sub = d.table("delay_s_per_token")
            ids = [q.id for q in qts]
            sub.check_keys([*ids, "default"])
            out = np.empty(len(qts))
            for k, q in enumerate(qts):
                if sub.has(q.id):
                    out[k] = sub.number(q.id, lo=0.0)
                elif sub.has("default"):
                    out[k] = sub.number("default", lo=0.0)
                elif fallback is not None:
                    out[k] = fallback[k]
                else:
                    out[k] = self.measured_time(q)[0]
            return out
        return np.full(len(qts), d.check_number("delay_s_per_token", value, lo=0.0))

    def resource_use(self, q: _QT, resources: list[str]) -> np.ndarray:
        out = np.empty(len(resources))
        node = q.node
        table = node.table("resource_use_per_token") if node.has("resource_use_per_token") else None
        if table is not None:
            table.check_keys(resources)
        for r, name in enumerate(resources):
            if table is not None and table.has(name):
                out[r] = table.number(name, lo=0.0)
            elif name == "gpu":
                out[r] = self.measured_time(q)[1]
            else:
                raise node.error("resource_use_per_token", f"missing use of resource {name!r} "
                                 "(only 'gpu' has a measured default, in GPU-seconds)")
        return out

    def capacity(self, d: _Node, resources: list[str], peak_use: np.ndarray, headroom: float,
                 J: int) -> np.ndarray:
        value = d.raw("capacity", "auto")
        if value == "auto":
            return np.ceil(headroom * peak_use / J)
        if not isinstance(value, dict):
            raise d.error("capacity", 'expected "auto" or a table {resource = units}', value)
        table = d.table("capacity")
        table.check_keys(resources)
        out = np.empty(len(resources))
        for r, name in enumerate(resources):
            raw = table.raw(name, "auto")
            out[r] = (math.ceil(headroom * peak_use[r] / J) if raw == "auto"
                      else table.check_number(name, raw, lo=0.0))
        return out

    def delay_limit(self, q: _QT, area_ids: list[str], lam: np.ndarray) -> np.ndarray:
        node = q.node
        if node.has("latency_limit_s") == node.has("delay_limit_s"):
            raise node.error("latency_limit_s", "give exactly one of latency_limit_s (per query) "
                             "or delay_limit_s (the same, per area)")
        if node.has("latency_limit_s"):
            per_query = node.number("latency_limit_s", lo=0.0, lo_open=True)
            return np.full(len(area_ids), per_query)
        value = node.raw("delay_limit_s")
        if isinstance(value, dict):
            table = node.table("delay_limit_s")
            table.check_keys(area_ids)
            return np.array([table.number(a, lo=0.0) for a in area_ids])
        return np.full(len(area_ids), node.check_number("delay_limit_s", value, lo=0.0))
