"""Fitted per-job energy and runtime of LLM inference (the digital twin's ground truth).

Measurements
    Wilkins, Keshav & Mortier, "Offline energy-optimal LLM serving: workload-based energy models
    for LLM inference on heterogeneous systems", arXiv 2407.04014; data from
    github.com/grantwilkins/energy-inference (read with
    :func:`greensched.data.energy_inference.read_energy_inference`).  Llama-2 7B, Mistral 7B and
    Falcon 7B on Palmetto Intel+A100, Swing AMD+A100, Palmetto Intel+V100 and an Apple M1-Pro,
    Hugging Face ``transformers`` pipeline, one sequence per run, ``use_cache=False``.

Functional form
    Wilkins et al. model the energy of a query as ``e = a*tin + b*tout + c*tin*tout`` per
    (model, system).  On the shared data this misses by ~40 % MAPE: at fixed ``tin`` the energy
    grows roughly with ``tout**2`` and faster above ~2k tokens (see ``reports/twin_energy_fit.md``).
    The measured runs generate without a KV cache, so every decoding step re-processes the whole
    context ``L = tin + i``.  The chosen ("context") form therefore sums a per-step cost that is
    quadratic in the context length::

        e(tin, tout) = c0 + sum_{i=0}^{tout-1} (d0 + d1*L_i + d2*L_i**2),   L_i = tin + i
                     = c0 + d0*tout + d1*S1 + d2*S2

    with ``S1 = sum L_i`` and ``S2 = sum L_i**2`` in closed form.  All coefficients are
    non-negative (scipy ``nnls``), so predictions are non-decreasing in both token counts; the fit
    minimises squared *relative* error.  Runtime uses the same form with its own coefficients.

Scaling beyond the measured grid (see :data:`GPU_DATASHEET` and :func:`mlenergy_scale_factors`)
    * GPU: factors relative to A100.  V100 and M1-Pro come from the fitted curves themselves;
      H100 from NVIDIA datasheet TDP / memory bandwidth (an assumption: no shared data measures A100
      and H100 together); B200 = H100 x the ML.ENERGY v3 B200/H100 ratio on matched
      configurations.
    * Model size: energy and inter-token latency per token scale as ``(P / 7B) ** beta``, with
      ``beta`` fitted on ML.ENERGY v3 dense models at the smallest batch (8).
    * Batch size: per-token energy / latency relative to batch 1 from ML.ENERGY v3 batch sweeps;
      below batch 8 extrapolated with the 8 -> 16 log-log slope.  The measured runs are batch 1
      (one sequence per run although the files record ``Batch Size`` 32).

Scale factors of the shipped fit (``energy_coefficients.json``; ``EnergyModel.scale_table()``):

    ======  ======  =======  ==================================================================
    GPU     energy  runtime  provenance
    ======  ======  =======  ==================================================================
    A100    1       1        reference (Palmetto Intel+A100, Swing AMD+A100 measurements)
    V100    9.49    13.5     fitted V100/A100 curves, 3 models, tin, tout in {32, 128, 512}
    M1-Pro  1.90    28.0     fitted M1-Pro/A100 curves, 2 models
    H100    0.812   0.464    datasheet: (700 W / 3350 GB/s) / (400 W / 1555 GB/s); 1555 / 3350
    B200    0.795   0.394    H100 x ML.ENERGY v3 B200/H100 (0.979 J/token, 0.850 ITL; 108 pairs)
    ======  ======  =======  ==================================================================

    Model size: energy x (P/7)**0.966, runtime x (P/7)**0.427 (ML.ENERGY v3, dense bf16, batch
    8, 31 points).  Batch: :data:`DEFAULT_MLENERGY_FACTORS` (energy per token at batch 8 is 0.242
    of batch 1, at 64 0.066, at 512 0.027; latency x1.52, x2.58, x6.88).
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from greensched.data.energy_inference import gpu_of_system, params_of_model
from greensched.errors import GreenSchedError

__all__ = [
    "EnergyModel",
    "EnergyModelNotFittedError",
    "FORMS",
    "GPU_DATASHEET",
    "DEFAULT_MLENERGY_FACTORS",
    "design_matrix",
    "mlenergy_scale_factors",
    "prepare_fit_rows",
    "holdout_predictions",
    "summarize_errors",
    "CITATION",
]

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


@dataclass
class EnergyModel:
    """Per-job energy (kWh) and runtime (s) of LLM inference, fitted per (model, system).

    Parameters
    ----------
    form
        ``"context"`` (default; per-step cost quadratic in context length, see module docstring),
        ``"wilkins"`` (``a*tin + b*tout + c*tin*tout``, Wilkins et al.) or ``"quadratic"``
        (Wilkins plus ``d*tout**2``).
    drop_warmup
        Ignore iteration-0 (warm-up) repeats when fitting.
    weighting
        ``"relative"`` (minimise squared relative error) or ``"absolute"``.
    reference_gpu
        GPU the scale factors are relative to.

    Learned attributes (end in ``_``) are set by :meth:`fit` or :meth:`from_json`.
    """

    form: str = "context"
    drop_warmup: bool = True
    weighting: str = "relative"
    reference_gpu: str = "A100"

    curves_: list[dict[str, Any]] = field(default=_UNFITTED, init=False, repr=False)
    feature_names_: list[str] = field(default=_UNFITTED, init=False, repr=False)
    gpu_energy_factor_: dict[str, float] = field(default=_UNFITTED, init=False, repr=False)
    gpu_runtime_factor_: dict[str, float] = field(default=_UNFITTED, init=False, repr=False)
    gpu_factor_source_: dict[str, str] = field(default=_UNFITTED, init=False, repr=False)
    size_energy_exponent_: float = field(default=_UNFITTED, init=False, repr=False)
    size_runtime_exponent_: float = field(default=_UNFITTED, init=False, repr=False)
    reference_params_b_: float = field(default=_UNFITTED, init=False, repr=False)
    batch_sizes_: list[float] = field(default=_UNFITTED, init=False, repr=False)
    batch_energy_factor_: list[float] = field(default=_UNFITTED, init=False, repr=False)
    batch_runtime_factor_: list[float] = field(default=_UNFITTED, init=False, repr=False)
    mlenergy_factors_: dict[str, Any] = field(default=_UNFITTED, init=False, repr=False)
    n_rows_: int = field(default=_UNFITTED, init=False, repr=False)

    _cache: dict[Any, tuple[np.ndarray, np.ndarray]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _log_batch: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    # ------------------------------------------------------------------ fitting

    def fit(self, df: pd.DataFrame, mlenergy: pd.DataFrame | None = None) -> EnergyModel:
        """Fit per-(model, system) curves to a :func:`read_energy_inference` table.

        ``mlenergy`` (a :func:`~greensched.data.mlenergy.read_mlenergy_configs` table) recomputes
        the ML.ENERGY scale factors; without it :data:`DEFAULT_MLENERGY_FACTORS` is used.
        """
        if self.form not in FORMS:
            raise GreenSchedError(f"unknown form {self.form!r}; expected one of {sorted(FORMS)}")
        if self.weighting not in ("relative", "absolute"):
            raise GreenSchedError("weighting must be 'relative' or 'absolute'")
        rows = prepare_fit_rows(df, drop_warmup=self.drop_warmup)
        if rows.empty:
            raise GreenSchedError("no usable inference rows to fit")
        k = len(FORMS[self.form])
        curves: list[dict[str, Any]] = []
        for (model, system), g in rows.groupby(["model", "system"], sort=True):
            if len(g) < k + 1:
                continue
            x = design_matrix(
                g["input_tokens"].to_numpy(), g["output_tokens"].to_numpy(), self.form
            )
            ce = _fit_nnls(x, g["energy_j"].to_numpy(dtype=np.float64), self.weighting)
            ct = _fit_nnls(x, g["runtime_s"].to_numpy(dtype=np.float64), self.weighting)
            params = (
                float(g["model_params_b"].iloc[0])
                if "model_params_b" in g.columns
                else params_of_model(str(model))
            )
            curves.append(
                {
                    "model": str(model),
                    "system": str(system),
                    "gpu": gpu_of_system(str(system)),
                    "params_b": params,
                    "n_rows": len(g),
                    "energy_coef": [float(v) for v in ce],
                    "runtime_coef": [float(v) for v in ct],
                }
            )
        if not curves:
            raise GreenSchedError(f"no (model, system) group has more than {k} usable rows")
        mle = DEFAULT_MLENERGY_FACTORS if mlenergy is None else mlenergy_scale_factors(mlenergy)

        self.curves_ = curves
        self.feature_names_ = list(FORMS[self.form])
        self.n_rows_ = len(rows)
        self.mlenergy_factors_ = {k2: v for k2, v in mle.items()}
        self.size_energy_exponent_ = float(mle["size_energy_exponent"])
        self.size_runtime_exponent_ = float(mle["size_itl_exponent"])
        self.batch_sizes_ = [float(v) for v in mle["batch_sizes"]]
        self.batch_energy_factor_ = [float(v) for v in mle["batch_energy_factor"]]
        self.batch_runtime_factor_ = [float(v) for v in mle["batch_itl_factor"]]
        sizes = [c["params_b"] for c in curves if np.isfinite(c["params_b"])]
        self.reference_params_b_ = float(np.median(sizes)) if sizes else 7.0
        self._fit_gpu_factors(mle)
        self._reset_cache()
        return self

    def _fit_gpu_factors(self, mle: dict[str, Any]) -> None:
        ref = self.reference_gpu
        fe: dict[str, float] = {}
        ft: dict[str, float] = {}
        src: dict[str, str] = {}
        for gpu in GPU_DATASHEET:
            e, t = _datasheet_factors(gpu, ref) if ref in GPU_DATASHEET else (1.0, 1.0)
            fe[gpu], ft[gpu] = e, t
            src[gpu] = (
                f"datasheet prior: (TDP/bandwidth) ratio to {ref}, {GPU_DATASHEET[gpu]['source']}"
            )
        fe[ref], ft[ref] = 1.0, 1.0
        src[ref] = "reference"
        if "H100" in fe and "B200" in fe and ref != "B200":
            fe["B200"] = fe["H100"] * float(mle["b200_over_h100_energy"])
            ft["B200"] = ft["H100"] * float(mle["b200_over_h100_itl"])
            src["B200"] = (
                "H100 factor x ML.ENERGY v3 B200/H100 geometric-mean ratio "
                f"({float(mle['b200_over_h100_energy']):.3f} J/token, "
                f"{float(mle['b200_over_h100_itl']):.3f} ITL) on "
                f"{int(mle['n_matched_b200_h100'])} matched configurations"
            )
        # measured GPUs: ratio of fitted curves to the reference GPU on a workload grid
        tin, tout = np.meshgrid([32.0, 128.0, 512.0], [32.0, 128.0, 512.0])
        x = design_matrix(tin.ravel(), tout.ravel(), self.form)
        by_gpu: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for c in self.curves_:
            by_gpu.setdefault(c["gpu"], {}).setdefault(c["model"], []).append(c)
        if ref in by_gpu:
            for gpu, models in by_gpu.items():
                if gpu == ref:
                    continue
                shared = [m for m in models if m in by_gpu[ref]]
                if not shared:
                    continue
                le, lt = [], []
                for m in shared:
                    pe = x @ np.mean([c["energy_coef"] for c in models[m]], axis=0)
                    pt = x @ np.mean([c["runtime_coef"] for c in models[m]], axis=0)
                    re_ = x @ np.mean([c["energy_coef"] for c in by_gpu[ref][m]], axis=0)
                    rt_ = x @ np.mean([c["runtime_coef"] for c in by_gpu[ref][m]], axis=0)
                    le.append(np.log(pe / re_))
                    lt.append(np.log(pt / rt_))
                fe[gpu] = float(np.exp(np.mean(le)))
                ft[gpu] = float(np.exp(np.mean(lt)))
                src[gpu] = (
                    f"fitted: geometric mean of fitted {gpu}/{ref} curves over "
                    f"{len(shared)} model(s), tin,tout in {{32,128,512}} (Wilkins et al. data)"
                )
        self.gpu_energy_factor_ = fe
        self.gpu_runtime_factor_ = ft
        self.gpu_factor_source_ = src

    # ------------------------------------------------------------------ state

    def _check_fitted(self) -> None:
        if self.curves_ is None:
            raise EnergyModelNotFittedError(
                "EnergyModel is not fitted: call fit(df), EnergyModel.from_json(...) or "
                "EnergyModel.load_default() first"
            )

    def _reset_cache(self) -> None:
        self._cache = {}
        self._log_batch = None

    @property
    def models_(self) -> list[str]:
        """Fitted model labels."""
        self._check_fitted()
        return sorted({c["model"] for c in self.curves_})

    @property
    def systems_(self) -> list[str]:
        """Fitted system labels."""
        self._check_fitted()
        return sorted({c["system"] for c in self.curves_})

    @property
    def gpus_(self) -> list[str]:
        """GPU names accepted by ``gpu=``."""
        self._check_fitted()
        return sorted(self.gpu_energy_factor_)

    def scale_table(self) -> pd.DataFrame:
        """GPU scale factors relative to the reference GPU, with their provenance."""
        self._check_fitted()
        rows = [
            {
                "gpu": g,
                "energy_factor": self.gpu_energy_factor_[g],
                "runtime_factor": self.gpu_runtime_factor_[g],
                "source": self.gpu_factor_source_[g],
            }
            for g in sorted(self.gpu_energy_factor_)
        ]
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------ resolution

    def _resolve_gpu(self, gpu: Any) -> tuple[str, str | None]:
        if gpu is None:
            return self.reference_gpu, None
        name = str(gpu)
        systems = {c["system"] for c in self.curves_}
        if name in systems:
            return gpu_of_system(name), name
        for g in self.gpu_energy_factor_:
            if g.lower() == name.lower():
                return g, None
        guess = gpu_of_system(name)
        if guess in self.gpu_energy_factor_:
            return guess, None
        raise GreenSchedError(
            f"unknown gpu {name!r}; expected one of {sorted(self.gpu_energy_factor_)} "
            f"or a fitted system {sorted(systems)}"
        )

    def _resolve(self, model: Any, gpu: Any) -> tuple[np.ndarray, np.ndarray]:
        """Coefficient vectors (energy J, runtime s) for one (model, gpu), scale folded in."""
        key = (model, gpu)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        gpu_name, system = self._resolve_gpu(gpu)
        fitted_models = {c["model"] for c in self.curves_}
        size_e = size_t = 1.0
        if model is None:
            cands = self.curves_
        elif isinstance(model, str) and model in fitted_models:
            cands = [c for c in self.curves_ if c["model"] == model]
        else:
            if isinstance(model, numbers.Real) and not isinstance(model, bool):
                params = float(model)
            else:
                params = params_of_model(str(model))
            if not np.isfinite(params) or params <= 0:
                raise GreenSchedError(
                    f"unknown model {model!r}; expected a fitted model {sorted(fitted_models)}, "
                    "a label with a size such as 'Llama-2 (13B)', or a parameter count in billions"
                )
            cands = self.curves_
            ratio = params / self.reference_params_b_
            size_e = ratio**self.size_energy_exponent_
            size_t = ratio**self.size_runtime_exponent_
        if system is not None:
            match = [c for c in cands if c["system"] == system]
        else:
            match = [c for c in cands if c["gpu"] == gpu_name]
        fe, ft = self.gpu_energy_factor_, self.gpu_runtime_factor_
        if match:
            ce = np.mean([c["energy_coef"] for c in match], axis=0)
            ct = np.mean([c["runtime_coef"] for c in match], axis=0)
        else:
            base = [c for c in cands if c["gpu"] == self.reference_gpu] or [
                c for c in cands if c["gpu"] in fe
            ]
            if not base:
                raise GreenSchedError(f"no fitted curve can be scaled to gpu {gpu_name!r}")
            ce = np.mean(
                [np.asarray(c["energy_coef"]) * fe[gpu_name] / fe[c["gpu"]] for c in base], axis=0
            )
            ct = np.mean(
                [np.asarray(c["runtime_coef"]) * ft[gpu_name] / ft[c["gpu"]] for c in base], axis=0
            )
        out = (np.asarray(ce, dtype=np.float64) * size_e, np.asarray(ct, dtype=np.float64) * size_t)
        self._cache[key] = out
        return out

    def _batch_factor(self, batch: np.ndarray, which: int) -> np.ndarray | float:
        if self._log_batch is None:
            self._log_batch = (
                np.log(np.asarray(self.batch_sizes_, dtype=np.float64)),
                np.log(np.asarray(self.batch_energy_factor_, dtype=np.float64)),
                np.log(np.asarray(self.batch_runtime_factor_, dtype=np.float64)),
            )
        lb = self._log_batch
        if batch.ndim == 0:
            b = float(batch)
            if b == 1.0:
                return 1.0
            return float(np.exp(np.interp(math.log(b), lb[0], lb[1 + which])))
        return np.exp(np.interp(np.log(batch), lb[0], lb[1 + which]))

    # ------------------------------------------------------------------ prediction

    def _evaluate(self, coef: np.ndarray, tin: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Sum of coefficient x feature; ``coef`` is (k,) or (rows, k)."""
        c = [coef[..., j] for j in range(coef.shape[-1])]
        if self.form == "wilkins":
            return c[0] * tin + n * (c[1] + c[2] * tin)
        if self.form == "quadratic":
            return c[0] * tin + n * (c[1] + c[2] * tin + c[3] * n)
        s1, s2 = _context_sums(tin, n)
        return c[0] + c[1] * n + c[2] * s1 + c[3] * s2

    def _predict(
        self,
        which: int,
        input_tokens: Any,
        output_tokens: Any,
        model: Any,
        gpu: Any,
        batch_size: Any,
    ) -> np.ndarray:
        self._check_fitted()
        tin = _as_float(input_tokens)
        n = _as_float(output_tokens)
        batch = _as_float(batch_size)
        for name, arr, low in (
            ("input_tokens", tin, 0.0),
            ("output_tokens", n, 0.0),
            ("batch_size", batch, 1.0),
        ):
            if arr.size and not (np.isfinite(arr).all() and (arr >= low).all()):
                raise GreenSchedError(f"{name} must be finite and >= {low:g}")
        tin, n = np.broadcast_arrays(tin, n)
        vector_cat = np.ndim(model) > 0 or np.ndim(gpu) > 0
        if not vector_cat:
            coef = self._resolve(model, gpu)[which]
        else:
            shape = np.broadcast_shapes(tin.shape, np.shape(model), np.shape(gpu))
            tin, n = np.broadcast_to(tin, shape), np.broadcast_to(n, shape)
            m_arr = np.broadcast_to(np.asarray(model, dtype=object), shape).ravel()
            g_arr = np.broadcast_to(np.asarray(gpu, dtype=object), shape).ravel()
            m_codes, m_uniq = pd.factorize(pd.Series(m_arr, dtype=object), use_na_sentinel=False)
            g_codes, g_uniq = pd.factorize(pd.Series(g_arr, dtype=object), use_na_sentinel=False)
            table = np.empty((len(m_uniq) * len(g_uniq), len(self.feature_names_)))
            for i, m in enumerate(m_uniq):
                for j, g in enumerate(g_uniq):
                    mm = None if m is None or (isinstance(m, float) and np.isnan(m)) else m
                    gg = None if g is None or (isinstance(g, float) and np.isnan(g)) else g
                    table[i * len(g_uniq) + j] = self._resolve(mm, gg)[which]
            coef = table[m_codes * len(g_uniq) + g_codes].reshape(*shape, table.shape[1])
        out = self._evaluate(coef, tin, n)
        factor = self._batch_factor(batch, which)
        if isinstance(factor, float):
            return out * factor if factor != 1.0 else np.asarray(out, dtype=np.float64)
        return out * factor

    def predict_energy_j(
        self,
        input_tokens: Any,
        output_tokens: Any,
        model: Any = None,
        gpu: Any = None,
        batch_size: Any = 1,
    ) -> np.ndarray:
        """Energy per job in joules; see :meth:`predict_energy_kwh`."""
        return self._predict(0, input_tokens, output_tokens, model, gpu, batch_size)

    def predict_energy_kwh(
        self,
        input_tokens: Any,
        output_tokens: Any,
        model: Any = None,
        gpu: Any = None,
        batch_size: Any = 1,
    ) -> np.ndarray:
        """Energy (CPU + GPU) per job in kWh, vectorised over numpy arrays.

        Parameters
        ----------
        input_tokens, output_tokens
            Token counts (scalars or arrays, broadcast together; >= 0).
        model
            ``None`` (mean of the fitted 7B models), a fitted model label (see ``models_``), another
            label with a size (``"Llama-2 (70B)"``) or a parameter count in billions (active
            parameters for mixture-of-experts); non-fitted sizes scale by ML.ENERGY exponents.
            May be an array of such values.
        gpu
            ``None`` (reference GPU), a GPU name (``gpus_``: A100, V100, H100, B200, M1-Pro) or a
            fitted system label (``systems_``); may be an array.
        batch_size
            Concurrent sequences sharing the GPU (>= 1; 1 = as measured); scalar or array.
        """
        return self._predict(0, input_tokens, output_tokens, model, gpu, batch_size) / J_PER_KWH

    def predict_runtime_s(
        self,
        input_tokens: Any,
        output_tokens: Any,
        model: Any = None,
        gpu: Any = None,
        batch_size: Any = 1,
    ) -> np.ndarray:
        """Runtime per job in seconds; arguments as :meth:`predict_energy_kwh`."""
        return self._predict(1, input_tokens, output_tokens, model, gpu, batch_size)

    # ------------------------------------------------------------------ serialisation

    _LEARNED = (
        "curves_",
        "feature_names_",
        "gpu_energy_factor_",
        "gpu_runtime_factor_",
        "gpu_factor_source_",
        "size_energy_exponent_",
        "size_runtime_exponent_",
        "reference_params_b_",
        "batch_sizes_",
        "batch_energy_factor_",
        "batch_runtime_factor_",
        "mlenergy_factors_",
        "n_rows_",
    )

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible state (parameters and learned attributes)."""
        self._check_fitted()
        return {
            "schema": SCHEMA,
            "citation": CITATION,
            "params": {
                "form": self.form,
                "drop_warmup": self.drop_warmup,
                "weighting": self.weighting,
                "reference_gpu": self.reference_gpu,
            },
            "learned": {name: getattr(self, name) for name in self._LEARNED},
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """Serialise to JSON text; also write it to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=1, sort_keys=True, allow_nan=False) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> EnergyModel:
        if state.get("schema") != SCHEMA:
            raise GreenSchedError(f"not an energy model state (schema {state.get('schema')!r})")
        obj = cls(**state["params"])
        learned = state["learned"]
        missing = [name for name in cls._LEARNED if name not in learned]
        if missing:
            raise GreenSchedError(f"energy model state lacks {missing}")
        for name in cls._LEARNED:
            setattr(obj, name, learned[name])
        if len(obj.feature_names_) != len(FORMS[obj.form]):
            raise GreenSchedError("energy model state: feature names do not match the form")
        obj._reset_cache()
        return obj

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> EnergyModel:
        """Rebuild a fitted model from :meth:`to_json` text or a path to such a file."""
        text = str(text_or_path)
        if isinstance(text_or_path, Path) or not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text(encoding="utf-8")
        return cls.from_dict(json.loads(text))

    @classmethod
    def load_default(cls) -> EnergyModel:
        """The coefficients shipped with the package (``energy_coefficients.json``)."""
        ref = resources.files("greensched.eval").joinpath("energy_coefficients.json")
        return cls.from_dict(json.loads(ref.read_text(encoding="utf-8")))


# ----------------------------------------------------------------------------------------------
# validation helpers


def holdout_predictions(
    df: pd.DataFrame,
    *,
    split: str = "random",
    test_fraction: float = 0.2,
    seed: int = 0,
    forms: tuple[str, ...] = ("wilkins", "quadratic", "context"),
    mlenergy: pd.DataFrame | None = None,
    drop_warmup: bool = True,
) -> pd.DataFrame:
    """Held-out predictions of each form for every test row.

    ``split="random"``: one random ``test_fraction`` of the usable rows (seeded) is held out, the
    models are fitted on the rest.  ``split="loso"`` (leave one system out): for every system the
    models are fitted on the other systems and predict the held-out system through its GPU
    (``gpu=gpu_of_system(system)``); a GPU without any factor is predicted as the reference GPU.

    Returns one row per (test row, form, target) with ``measured`` and ``predicted``.
    """
    rows = prepare_fit_rows(df, drop_warmup=drop_warmup).reset_index(drop=True)
    if split == "random":
        rng = np.random.default_rng(seed)
        test = np.zeros(len(rows), dtype=bool)
        test[rng.permutation(len(rows))[: int(round(test_fraction * len(rows)))]] = True
        folds = [("random", test)]
    elif split == "loso":
        folds = [
            (f"without {s}", (rows["system"] == s).to_numpy())
            for s in sorted(rows["system"].unique())
        ]
    else:
        raise GreenSchedError("split must be 'random' or 'loso'")
    out = []
    for fold, test in folds:
        train, held = rows.loc[~test], rows.loc[test]
        for form in forms:
            m = EnergyModel(form=form, drop_warmup=drop_warmup).fit(train, mlenergy)
            for (model, system), g in held.groupby(["model", "system"], sort=True):
                gpu: str | None = system if split == "random" else gpu_of_system(system)
                if gpu not in m.gpu_energy_factor_ and split == "loso":
                    gpu = None
                mdl = model if model in m.models_ else float(g["model_params_b"].iloc[0])
                tin = g["input_tokens"].to_numpy()
                tout = g["output_tokens"].to_numpy()
                for target, pred in (
                    ("energy_j", m.predict_energy_j(tin, tout, model=mdl, gpu=gpu)),
                    ("runtime_s", m.predict_runtime_s(tin, tout, model=mdl, gpu=gpu)),
                ):
                    out.append(
                        pd.DataFrame(
                            {
                                "fold": fold,
                                "form": form,
                                "target": target,
                                "model": model,
                                "system": system,
                                "predicted_as": gpu if gpu is not None else m.reference_gpu,
                                "input_tokens": tin,
                                "output_tokens": tout,
                                "measured": g[target].to_numpy(dtype=np.float64),
                                "predicted": pred,
                            }
                        )
                    )
    return pd.concat(out, ignore_index=True)


def summarize_errors(
    pred: pd.DataFrame, by: tuple[str, ...] = ("form", "target", "model", "system")
) -> pd.DataFrame:
    """MAPE (%), RMSE, median and 90th-percentile absolute percentage error per group."""
    ape = (pred["predicted"] / pred["measured"] - 1.0).abs() * 100.0
    sq = (pred["predicted"] - pred["measured"]) ** 2
    tmp = pred.loc[:, list(by)].assign(ape=ape.to_numpy(), sq=sq.to_numpy())
    g = tmp.groupby(list(by), sort=True)
    res = g.agg(
        n=("ape", "size"),
        mape_pct=("ape", "mean"),
        median_ape_pct=("ape", "median"),
        p90_ape_pct=("ape", lambda s: float(np.quantile(s, 0.9))),
        rmse=("sq", lambda s: float(np.sqrt(s.mean()))),
    )
    return res.reset_index()
