"""Parsed pieces of a configuration: scenario metadata, measured curves, query types."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from greensched.builder.config import _Node
from greensched.builder.timeseries import _lin

# ================================================================================================
# Parsed configuration
# ================================================================================================


@dataclass
class _Meta:
    name: str
    description: str
    start: pd.Timestamp
    days: int
    weights: dict[str, float]
    water_budget_l: float | None
    water_budget_factor: float | None
    data_dir: Path
    carbon_basis: str
    date_mapping: str
    resources: list[str]


@dataclass
class _Measured:
    """Median energy / runtime curves of one model on one system (see the module docstring)."""

    label: str
    i_ref: float
    in_x: np.ndarray
    in_e: np.ndarray
    in_r: np.ndarray
    out_x: np.ndarray
    out_e: np.ndarray
    out_r: np.ndarray
    num_gpus: float

    def parts(self, h: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, ...]:
        """(input energy J, output energy J, runtime s) per request."""
        e_in = _lin(h, self.in_x, self.in_e) - float(_lin(np.array([self.i_ref]), self.in_x,
                                                           self.in_e)[0])
        r_in = _lin(h, self.in_x, self.in_r) - float(_lin(np.array([self.i_ref]), self.in_x,
                                                           self.in_r)[0])
        e_out = _lin(f, self.out_x, self.out_e)
        r_out = _lin(f, self.out_x, self.out_r)
        return e_in, e_out, np.clip(r_in + r_out, 0.0, None)


@dataclass
class _QT:
    id: str
    node: _Node
    input_tokens: float
    output_tokens: float
    tau_in: float
    tau_out: float
    v: float | None  # measured processing s/token (computed on first use)
    gpu_s_per_token: float | None
    rho: float
    mix: float
    count: int = 0
    hour_counts: np.ndarray | None = None
    h_arr: np.ndarray | None = None
    f_arr: np.ndarray | None = None


class _BuilderState:
    """The state every part of the builder shares (set in :class:`_Builder`'s ``__init__``)."""

    file: Path
    root: _Node
    override_days: int | None
    override_start: str | None
    override_data_dir: str | Path | None
    notes: list[str]
    trace_span_h: float
    data_dir: Path
    _measured: _Measured | None
