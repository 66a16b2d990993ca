"""Features, NNLS fits and scale factors of the energy/runtime model."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from greensched.errors import GreenSchedError

CITATION = (
    "Energy/runtime coefficients fitted to measurements of Wilkins, Keshav & Mortier, "
    "'Offline energy-optimal LLM serving: workload-based energy models for LLM inference on "
    "heterogeneous systems', arXiv 2407.04014 (data: github.com/grantwilkins/energy-inference, "
    "HEAD 5c2cfa4). Scale factors: ML.ENERGY Leaderboard v3 data (github.com/ml-energy/"
    "leaderboard, updated 2026-02-16; Chung et al., The ML.ENERGY Benchmark, NeurIPS 2025 D&B) "
    "and NVIDIA datasheets (TDP, HBM bandwidth). Derived figures; not measurements."
)

SCHEMA = "greensched.energy_model/1"
J_PER_KWH = 3.6e6

#: Feature names of each functional form.
FORMS: dict[str, tuple[str, ...]] = {
    "wilkins": ("tin", "tout", "tin*tout"),
    "quadratic": ("tin", "tout", "tin*tout", "tout^2"),
    "context": ("1", "tout", "sum_L", "sum_L2"),
}

#: Board power (W) and memory bandwidth (GB/s) from NVIDIA datasheets; used only as the prior
#: ratio (TDP/bandwidth for energy per token, 1/bandwidth for time per token) for GPUs the
#: measurements do not cover.
GPU_DATASHEET: dict[str, dict[str, Any]] = {
    "A100": {"tdp_w": 400.0, "mem_bw_gbs": 1555.0, "source": "NVIDIA A100 datasheet, 40GB SXM4"},
    "V100": {"tdp_w": 300.0, "mem_bw_gbs": 900.0, "source": "NVIDIA V100 datasheet, SXM2"},
    "H100": {"tdp_w": 700.0, "mem_bw_gbs": 3350.0, "source": "NVIDIA H100 datasheet, SXM5"},
    "B200": {"tdp_w": 1000.0, "mem_bw_gbs": 8000.0, "source": "NVIDIA HGX B200 datasheet"},
}

#: Output of :func:`mlenergy_scale_factors` on ``mlenergy_llm_configs_extract.csv`` (565 rows,
#: ML.ENERGY v3, 2026-02-16), rounded to 4 significant digits.  Used when ``fit`` gets no
#: ML.ENERGY table; ``tests/eval/test_energy_model.py`` checks it against a recomputation.
DEFAULT_MLENERGY_FACTORS: dict[str, Any] = {
    "b200_over_h100_energy": 0.9791,
    "b200_over_h100_itl": 0.8496,
    "n_matched_b200_h100": 108,
    "size_energy_exponent": 0.9659,
    "size_itl_exponent": 0.427,
    "n_size_points": 31,
    "batch_sizes": [
        1.0,
        8.0,
        16.0,
        32.0,
        64.0,
        96.0,
        128.0,
        192.0,
        256.0,
        384.0,
        512.0,
        768.0,
        1024.0,
        2048.0,
    ],
    "batch_energy_factor": [
        1.0,
        0.242,
        0.1508,
        0.09821,
        0.06627,
        0.05449,
        0.04635,
        0.04075,
        0.0356,
        0.03029,
        0.02706,
        0.02657,
        0.02193,
        0.01892,
    ],
    "batch_itl_factor": [
        1.0,
        1.522,
        1.75,
        2.11,
        2.578,
        2.991,
        3.362,
        4.09,
        4.655,
        6.127,
        6.876,
        10.29,
        12.38,
        18.63,
    ],
}


_UNFITTED: Any = None  # placeholder of learned attributes before ``fit``


class EnergyModelNotFittedError(RuntimeError):
    """Raised when an :class:`EnergyModel` is used before ``fit`` / ``from_json``."""


# ----------------------------------------------------------------------------------------------
# features


def _as_float(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _context_sums(tin: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closed forms of ``sum L`` and ``sum L**2`` over ``L = tin + i``, ``i = 0..n-1``."""
    i1 = n * (n - 1.0) * 0.5
    i2 = (n - 1.0) * n * (2.0 * n - 1.0) / 6.0
    s1 = n * tin + i1
    s2 = n * tin * tin + 2.0 * tin * i1 + i2
    return s1, s2


def design_matrix(input_tokens: Any, output_tokens: Any, form: str = "context") -> np.ndarray:
    """Feature matrix (rows x len(FORMS[form])) of a functional form."""
    if form not in FORMS:
        raise GreenSchedError(f"unknown form {form!r}; expected one of {sorted(FORMS)}")
    tin, n = np.broadcast_arrays(_as_float(input_tokens), _as_float(output_tokens))
    tin = tin.ravel()
    n = n.ravel()
    if form == "wilkins":
        return np.column_stack([tin, n, tin * n])
    if form == "quadratic":
        return np.column_stack([tin, n, tin * n, n * n])
    s1, s2 = _context_sums(tin, n)
    return np.column_stack([np.ones_like(tin), n, s1, s2])


def _fit_nnls(x: np.ndarray, y: np.ndarray, weighting: str) -> np.ndarray:
    w = 1.0 / y if weighting == "relative" else np.ones_like(y)
    scale = np.abs(x).max(axis=0)
    scale[scale == 0] = 1.0
    a = (x / scale) * w[:, None]
    coef, _ = nnls(a, y * w, maxiter=50 * x.shape[1] + 1000)
    return coef / scale


# ----------------------------------------------------------------------------------------------
# ML.ENERGY scale factors


def _two_way_effects(
    series: np.ndarray, level: np.ndarray, logy: np.ndarray, levels: np.ndarray, ref: float
) -> np.ndarray:
    """Least-squares ``logy = a_series + g_level`` with ``g_ref = 0``; returns g per level."""
    s_codes, _ = pd.factorize(series)
    l_index = {v: k for k, v in enumerate(levels)}
    l_codes = np.array([l_index[v] for v in level])
    n_s = int(s_codes.max()) + 1
    others = [k for k, v in enumerate(levels) if v != ref]
    x = np.zeros((len(logy), n_s + len(others)))
    x[np.arange(len(logy)), s_codes] = 1.0
    for j, k in enumerate(others):
        x[l_codes == k, n_s + j] = 1.0
    sol, *_ = np.linalg.lstsq(x, logy, rcond=None)
    g = np.zeros(len(levels))
    for j, k in enumerate(others):
        g[k] = sol[n_s + j]
    return g


def mlenergy_scale_factors(configs: pd.DataFrame, *, min_series: int = 10) -> dict[str, Any]:
    """Derive GPU, model-size and batch-size ratios from ML.ENERGY v3 configurations.

    ``configs`` is the output of :func:`greensched.data.mlenergy.read_mlenergy_configs` (or
    ``read_mlenergy_json``).  Returns

    * ``b200_over_h100_energy`` / ``b200_over_h100_itl``: geometric mean of B200/H100 energy per
      token (median ITL) over configurations matched on model, task, number of GPUs and
      ``max_num_seqs``;
    * ``size_energy_exponent`` / ``size_itl_exponent``: slope of log(J/token) (log ITL) on
      log(active parameters) for dense bf16 models at batch 8 (min-energy configuration per
      model, task and GPU), with task x GPU fixed effects;
    * ``batch_sizes`` with ``batch_energy_factor`` / ``batch_itl_factor``: per-token energy and
      median ITL relative to batch 1 from a two-way (series, batch) fixed-effect fit on log values
      over batch levels with at least ``min_series`` series, made monotone (energy
      non-increasing, ITL non-decreasing), and extrapolated from 8 down to 1 with the 8 -> 16
      slope.
    """
    need = {
        "model",
        "task",
        "gpu_model",
        "num_gpus",
        "batch_size",
        "energy_per_token_j",
        "median_itl_ms",
        "active_params_b",
        "total_params_b",
        "weight_precision",
    }
    missing = need - set(configs.columns)
    if missing:
        raise GreenSchedError(f"ML.ENERGY table lacks columns {sorted(missing)}")
    d = configs.loc[(configs["energy_per_token_j"] > 0) & (configs["median_itl_ms"] > 0)]

    key = ["model", "task", "num_gpus", "batch_size"]
    h = d.loc[d["gpu_model"] == "H100"].groupby(key)[["energy_per_token_j", "median_itl_ms"]]
    b = d.loc[d["gpu_model"] == "B200"].groupby(key)[["energy_per_token_j", "median_itl_ms"]]
    j = h.mean().add_suffix("_h").join(b.mean().add_suffix("_b"), how="inner")
    if j.empty:
        raise GreenSchedError("no B200/H100 configurations match on model, task, GPUs, batch")
    r_e = float(np.exp(np.log(j["energy_per_token_j_b"] / j["energy_per_token_j_h"]).mean()))
    r_t = float(np.exp(np.log(j["median_itl_ms_b"] / j["median_itl_ms_h"]).mean()))

    dense = d.loc[
        (d["total_params_b"] == d["active_params_b"])
        & (d["weight_precision"] == "bfloat16")
        & (d["batch_size"] == 8)
    ]
    best = dense.loc[dense.groupby(["model", "task", "gpu_model"])["energy_per_token_j"].idxmin()]
    fe = (best["task"] + "|" + best["gpu_model"]).to_numpy()
    fe_codes, fe_uniq = pd.factorize(fe)
    xs = np.zeros((len(best), len(fe_uniq) + 1))
    xs[np.arange(len(best)), fe_codes] = 1.0
    xs[:, -1] = np.log(best["active_params_b"].to_numpy(dtype=np.float64))
    size_e = float(
        np.linalg.lstsq(xs, np.log(best["energy_per_token_j"].to_numpy()), rcond=None)[0][-1]
    )
    size_t = float(np.linalg.lstsq(xs, np.log(best["median_itl_ms"].to_numpy()), rcond=None)[0][-1])

    series = (
        d["model"] + "|" + d["task"] + "|" + d["gpu_model"] + "|" + d["num_gpus"].astype(str)
    ).to_numpy()
    bs = d["batch_size"].to_numpy(dtype=np.float64)
    counts = pd.Series(series).groupby(bs).nunique()
    levels = np.array(sorted(float(v) for v, c in counts.items() if c >= min_series))
    if 8.0 not in levels or 16.0 not in levels:
        raise GreenSchedError("ML.ENERGY table lacks batch sizes 8 and 16")
    keep = np.isin(bs, levels)
    g_e = _two_way_effects(
        series[keep], bs[keep], np.log(d["energy_per_token_j"].to_numpy()[keep]), levels, 8.0
    )
    g_t = _two_way_effects(
        series[keep], bs[keep], np.log(d["median_itl_ms"].to_numpy()[keep]), levels, 8.0
    )
    g_e = np.minimum.accumulate(g_e)
    g_t = np.maximum.accumulate(g_t)
    i8 = int(np.flatnonzero(levels == 8.0)[0])
    i16 = int(np.flatnonzero(levels == 16.0)[0])
    slope_e = (g_e[i16] - g_e[i8]) / math.log(2.0)
    slope_t = (g_t[i16] - g_t[i8]) / math.log(2.0)
    g1_e = g_e[i8] + slope_e * (math.log(1.0) - math.log(8.0))
    g1_t = g_t[i8] + slope_t * (math.log(1.0) - math.log(8.0))
    sel = levels >= 8.0
    return {
        "b200_over_h100_energy": r_e,
        "b200_over_h100_itl": r_t,
        "n_matched_b200_h100": len(j),
        "size_energy_exponent": size_e,
        "size_itl_exponent": size_t,
        "n_size_points": len(best),
        "batch_sizes": [1.0, *(float(v) for v in levels[sel])],
        "batch_energy_factor": [1.0, *(float(np.exp(v - g1_e)) for v in g_e[sel])],
        "batch_itl_factor": [1.0, *(float(np.exp(v - g1_t)) for v in g_t[sel])],
    }


def _datasheet_factors(gpu: str, ref: str = "A100") -> tuple[float, float]:
    a, r = GPU_DATASHEET[gpu], GPU_DATASHEET[ref]
    energy = (a["tdp_w"] / a["mem_bw_gbs"]) / (r["tdp_w"] / r["mem_bw_gbs"])
    runtime = r["mem_bw_gbs"] / a["mem_bw_gbs"]
    return energy, runtime


# ----------------------------------------------------------------------------------------------
# the model


def prepare_fit_rows(df: pd.DataFrame, *, drop_warmup: bool = True) -> pd.DataFrame:
    """Rows used for fitting: inference runs with positive runtime / energy.

    Drops start-up rows, rows with a negative CPU energy reading (11 rows of the input sweep on
    Palmetto V100 / M1-Pro) and, with ``drop_warmup``, the first repeat (iteration 0) of every
    setting, which carries one-off warm-up costs (up to 4x at 8 output tokens).
    """
    need = ["model", "system", "input_tokens", "output_tokens", "runtime_s", "energy_j"]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise GreenSchedError(f"fit table lacks columns {missing}; use read_energy_inference()")
    ok = (df["runtime_s"] > 0) & (df["energy_j"] > 0) & (df["output_tokens"] > 0)
    if "kind" in df.columns:
        ok &= df["kind"] == "inference"
    if "cpu_energy_j" in df.columns:
        ok &= df["cpu_energy_j"] >= 0
    if drop_warmup and "iteration" in df.columns:
        ok &= df["iteration"] > 0
    return df.loc[ok.to_numpy()]
