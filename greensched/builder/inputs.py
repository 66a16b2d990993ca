"""The configuration's [scenario] section, measured energy data, traces and query types."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from greensched.builder.config import (
    _HOUR,
    _MISSING,
    _OBJECTIVES,
    DEFAULT_DATA_DIR,
    _entries,
    _Node,
    _unique,
)
from greensched.builder.parts import _QT, _BuilderState, _Measured, _Meta
from greensched.builder.sources import _cached_energy, _cached_trace, _read_data, _stamp
from greensched.builder.timeseries import _parse_start
from greensched.errors import GreenSchedError, ScenarioError


class _InputsMixin(_BuilderState):
    """Reading the configuration's sections and the measured data (a part of :class:`_Builder`)."""

    def parse_meta(self) -> _Meta:
        node = self.root.table("scenario")
        node.check_keys(("name", "description", "start", "days", "weights", "water_budget_l",
                         "water_budget_factor", "data_dir", "carbon_basis", "date_mapping",
                         "resources"))
        name = node.text("name")
        if not name.strip():
            raise node.error("name", "expected a non-empty name", name)
        description = node.text("description", "")
        if self.override_start is not None:
            start = _parse_start(_Node({"--start": self.override_start}, "", self.file),
                                 self.override_start, "--start")
        else:
            start = _parse_start(node, node.raw("start"), "start")
        if self.override_days is not None:
            days_node = _Node({"--days": self.override_days}, "", self.file)
            days = int(days_node.number("--days", lo=1, hi=366, integer=True))
        else:
            days = int(node.number("days", 1, lo=1, hi=366, integer=True))
        weights = {k: 1 / 3 for k in _OBJECTIVES}
        if node.has("weights"):
            wnode = node.table("weights")
            wnode.check_keys(_OBJECTIVES)
            raw = {k: wnode.number(k, 0.0, lo=0.0) for k in _OBJECTIVES}
            total = sum(raw.values())
            if total <= 0:
                raise node.error("weights", "the weights must not all be zero", node.raw("weights"))
            weights = {k: v / total for k, v in raw.items()}
        if node.has("water_budget_l") and node.has("water_budget_factor"):
            raise node.error("water_budget_factor", "give water_budget_l or water_budget_factor, "
                             "not both")
        budget = node.number("water_budget_l", None, lo=0.0)
        factor = node.number("water_budget_factor", None, lo=0.0, lo_open=True)
        if self.override_data_dir is not None:
            data_dir = Path(self.override_data_dir)
        else:
            data_dir = Path(node.text("data_dir", DEFAULT_DATA_DIR))
            if not data_dir.is_absolute():
                data_dir = (self.file.parent / data_dir).resolve()
        if not data_dir.is_dir():
            raise ScenarioError(
                f"data directory not found ({data_dir}); set [scenario] data_dir (relative to "
                "the configuration file)",
                file=self.file, column="scenario.data_dir", value=str(data_dir),
            )
        basis = node.text("carbon_basis", "direct", ("direct", "lifecycle"))
        mapping = node.text("date_mapping", "same_weekday", ("same_weekday", "same_date"))
        resources = node.raw("resources", ["gpu"])
        if (not isinstance(resources, list) or not resources
                or not all(isinstance(r, str) and r.strip() == r and r for r in resources)
                or len(set(resources)) != len(resources)):
            raise node.error("resources", "expected a list of distinct resource names", resources)
        self.data_dir = data_dir
        return _Meta(name, description, start, days, weights, budget, factor, data_dir, basis,
                     mapping, list(resources))

    # -- [energy] ----------------------------------------------------------------------------------
    def measured(self, data_dir: Path) -> _Measured:
        node = self.root.table("energy", {})
        node.check_keys(("data", "model", "system"))
        target = node.text("data", "energy_inference")
        path = Path(target) if Path(target).is_absolute() else data_dir / target
        if not path.exists():
            raise node.error("data", f"not found ({path})", target)
        files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
        stamps = tuple(_stamp(f) for f in files)
        df = _read_data(node, "data", lambda: _cached_energy(stamps, str(path)))
        model = node.text("model", "Llama-2 (7B)")
        system = node.text("system", "Palmetto Intel+A100")
        sel = df[(df["model"] == model) & (df["system"] == system)]
        if sel.empty:
            combos = sorted({f"{m} on {s}" for m, s in zip(df["model"], df["system"], strict=True)})
            raise node.error("model", f"no measurements of this model on system {system!r} "
                             f"(available: {'; '.join(combos)})", model)
        warm = sel[sel["iteration"] >= 1]
        sel = warm if not warm.empty else sel
        # the input sweep holds the output length with the most distinct input lengths, and
        # conversely for the output sweep
        o_ref = float(sel.groupby("output_tokens")["input_tokens"].nunique().idxmax())
        i_ref = float(sel.groupby("input_tokens")["output_tokens"].nunique().idxmax())
        ins = sel[sel["output_tokens"] == o_ref].groupby("input_tokens")[["energy_j", "runtime_s"]]
        outs = sel[sel["input_tokens"] == i_ref].groupby("output_tokens")[
            ["energy_j", "runtime_s"]]
        ins_m, outs_m = ins.median(), outs.median()
        if len(ins_m) < 2 or len(outs_m) < 2:
            raise node.error("model", "the measurements hold no input- and output-token sweeps "
                             "(need >= 2 token counts each)", model)
        out_x = np.concatenate([[0.0], outs_m.index.to_numpy(dtype=np.float64)])
        out_e = np.concatenate([[0.0], outs_m["energy_j"].to_numpy()])
        out_r = np.concatenate([[0.0], outs_m["runtime_s"].to_numpy()])
        if out_x[1] == 0.0:
            out_x, out_e, out_r = out_x[1:], out_e[1:], out_r[1:]
        gpus = float(sel["num_gpus"].median())
        label = (f"Wilkins et al. (arXiv 2407.04014) measurements of {model} on {system} "
                 f"({len(sel)} runs; input sweep at {o_ref:g} output tokens, output sweep at "
                 f"{i_ref:g} input tokens)")
        return _Measured(label, i_ref, ins_m.index.to_numpy(dtype=np.float64),
                         ins_m["energy_j"].to_numpy(), ins_m["runtime_s"].to_numpy(),
                         out_x, out_e, out_r, gpus)

    # -- [demand] traces -----------------------------------------------------------------------
    def read_traces(self, demand: _Node, data_dir: Path) -> pd.DataFrame | None:
        if not demand.has("trace_files"):
            return None
        files = demand.raw("trace_files")
        if isinstance(files, str):
            files = [files]
        if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
            raise demand.error("trace_files", "expected a list of trace file paths", files)
        tz = demand.text("trace_tz", "UTC")
        frames = []
        for n, rel in enumerate(files):
            path = Path(rel) if Path(rel).is_absolute() else data_dir / rel
            if not path.is_file():
                raise ScenarioError(f"file not found ({path})", file=self.file,
                                    column=f"{demand.field('trace_files')}[{n}]", value=rel)
            try:
                frames.append(_cached_trace(_stamp(path), tz))
            except (GreenSchedError, OSError, ValueError) as exc:
                raise ScenarioError(f"cannot read the trace: {exc}", file=self.file,
                                    column=f"{demand.field('trace_files')}[{n}]", value=rel
                                    ) from exc
        df = pd.concat(
            [pd.DataFrame({"time_utc": f["time_utc"], "input_tokens": f["input_tokens"],
                           "output_tokens": f["output_tokens"],
                           "label": f["query_type"].astype(str)}) for f in frames],
            ignore_index=True,
        )
        return df

    # -- [[query_type]] ----------------------------------------------------------------------------
    def parse_query_types(self, meta: _Meta, demand: _Node, source: str) -> tuple[list[_QT], float,
                                                                                 str]:
        nodes = _entries(self.root, "query_type", "query_type_defaults")
        if not nodes:
            raise ScenarioError("no [[query_type]] entries", file=self.file, column="query_type")
        known = ("id", "trace", "input_tokens", "output_tokens", "input_tokens_min",
                 "input_tokens_max", "output_tokens_min", "output_tokens_max",
                 "energy_in_kwh_per_token", "energy_out_kwh_per_token",
                 "delay_penalty_usd_per_s", "resource_use_per_token", "latency_limit_s",
                 "delay_limit_s", "share")
        for node in nodes:
            node.check_keys(known)
        ids = [node.ident("id") for node in nodes]
        _unique(nodes, ids, "query_type")
        trace = self.read_traces(demand, meta.data_dir) if source == "trace" else None
        get_measured = functools.partial(self.get_measured, meta.data_dir)
        out: list[_QT] = []
        owner = np.full(0 if trace is None else len(trace), -1)  # query type of each request
        for n, (node, ident) in enumerate(zip(nodes, ids, strict=True)):
            h_arr: np.ndarray | None = None
            f_arr: np.ndarray | None = None
            count = 0
            label = node.text("trace", None)
            if label is not None and trace is None:
                raise node.error("trace", 'a trace label needs [demand] source = "trace" with '
                                 "trace_files", label)
            if trace is not None:
                if label is None:
                    raise node.error("trace", "missing field: the trace label of this query type "
                                     "(with [demand] source = \"trace\")")
                labels = sorted(trace["label"].unique())
                if label not in labels:
                    raise node.error("trace", f"no such label in the traces (labels: "
                                     f"{', '.join(labels)})", label)
                mask = (trace["label"] == label).to_numpy().copy()
                for col in ("input_tokens", "output_tokens"):
                    for suffix, op in (("_min", np.greater_equal), ("_max", np.less_equal)):
                        key = col + suffix
                        if node.has(key):
                            mask &= op(trace[col].to_numpy(), node.number(key, lo=0.0))
                count = int(mask.sum())
                if count == 0:
                    raise node.error("trace", "no trace request matches this query type's label "
                                     "and token filters", label)
                clash = mask & (owner >= 0)
                if clash.any():
                    other = int(owner[np.argmax(clash)])
                    raise node.error("trace", f"its requests overlap those of query_type[{other}] "
                                     "(token filters must not overlap)", label)
                owner[mask] = n
                h_arr = trace["input_tokens"].to_numpy(dtype=np.float64)[mask]
                f_arr = trace["output_tokens"].to_numpy(dtype=np.float64)[mask]
            tokens = {}
            from_trace = True
            for key, arr in (("input_tokens", h_arr), ("output_tokens", f_arr)):
                value = node.raw(key, "trace" if arr is not None else _MISSING)
                if value == "trace":
                    if arr is None:
                        raise node.error(key, '"trace" needs a trace label', value)
                    tokens[key] = float(np.rint(arr.mean()))
                else:
                    tokens[key] = node.check_number(key, value, lo=0.0)
                    from_trace = False
            h, f = tokens["input_tokens"], tokens["output_tokens"]
            if h + f <= 0:
                raise node.error("output_tokens", "a query needs at least one token", f)
            if h_arr is None or f_arr is None or not from_trace:
                # configured token counts: derive the measured values at that point
                h_arr, f_arr = np.array([h]), np.array([f])
            qt = _QT(ident, node, h, f, 0.0, 0.0, None, None, 0.0, 0.0, count)
            # energy per token
            e_mode = [node.raw(k, "measured") for k in ("energy_in_kwh_per_token",
                                                        "energy_out_kwh_per_token")]
            if "measured" in e_mode:
                m = get_measured()
                e_in, e_out, _ = m.parts(h_arr, f_arr)
                qt.tau_in = max(0.0, float(e_in.mean())) / 3.6e6 / h if h > 0 else 0.0
                qt.tau_out = float(e_out.mean()) / 3.6e6 / f if f > 0 else 0.0
            for key, attr in (("energy_in_kwh_per_token", "tau_in"),
                              ("energy_out_kwh_per_token", "tau_out")):
                value = node.raw(key, "measured")
                if value != "measured":
                    setattr(qt, attr, node.check_number(key, value, lo=0.0))
            qt.h_arr, qt.f_arr = h_arr, f_arr  # for the measured processing time, if needed
            qt.rho = node.number("delay_penalty_usd_per_s", lo=0.0)
            if source == "synthetic":
                qt.mix = node.number("share", 1.0, lo=0.0)
            elif node.has("share"):
                raise node.error("share", "with trace demand the mix comes from the traces")
            else:
                qt.mix = float(count)
            out.append(qt)
        total_mix = sum(q.mix for q in out)
        if total_mix <= 0:
            raise ScenarioError("the query-type shares must not all be zero", file=self.file,
                                column="query_type[0].share")
        for q in out:
            q.mix /= total_mix
        rate_note = ""
        rate = float("nan")
        if trace is not None:
            modelled = trace[owner >= 0]
            span_h = (modelled["time_utc"].max() - modelled["time_utc"].min()) / _HOUR
            if span_h <= 0:
                raise demand.error("trace_files", "the traces span no time")
            rate = len(modelled) / span_h
            rate_note = (f"{len(modelled)} requests over {span_h:.2f} h "
                         f"(rate {rate:,.0f} per hour)")
            hours = modelled["time_utc"].dt.tz_convert(demand.text("trace_tz", "UTC")).dt.hour
            for n, q in enumerate(out):
                sel = hours[owner[owner >= 0] == n].to_numpy()
                q.hour_counts = np.bincount(sel, minlength=24).astype(np.float64)
            self.trace_span_h = float(span_h)
        return out, rate, rate_note

    def get_measured(self, data_dir: Path) -> _Measured:
        """The measured energy/runtime curves (read on first use)."""
        if self._measured is None:
            self._measured = self.measured(data_dir)
            self.notes.append(f"energy and processing time per token: {self._measured.label}")
        return self._measured

    def measured_time(self, q: _QT) -> tuple[float, float]:
        """(processing s/token, GPU-s/token) of a query type from the measured runtimes."""
        if q.v is None or q.gpu_s_per_token is None:
            assert q.h_arr is not None and q.f_arr is not None
            m = self.get_measured(self.data_dir)
            _, _, runtime = m.parts(q.h_arr, q.f_arr)
            q.v = float(runtime.mean()) / (q.input_tokens + q.output_tokens)
            q.gpu_s_per_token = q.v * m.num_gpus
        return q.v, q.gpu_s_per_token

    # -- demand ------------------------------------------------------------------------------------
