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

from greensched.data.energy_inference import gpu_of_system, params_of_model
from greensched.errors import GreenSchedError
from greensched.eval.energy_terms import (
    _UNFITTED,
    CITATION,
    DEFAULT_MLENERGY_FACTORS,
    FORMS,
    GPU_DATASHEET,
    J_PER_KWH,
    SCHEMA,
    EnergyModelNotFittedError,
    _as_float,
    _context_sums,
    _datasheet_factors,
    _fit_nnls,
    design_matrix,
    mlenergy_scale_factors,
    prepare_fit_rows,
)

__all__ = [
    "EnergyModel",
    "EnergyModelNotFittedError",
    "FORMS",
    "GPU_DATASHEET",
    "DEFAULT_MLENERGY_FACTORS",
    "design_matrix",
    "mlenergy_scale_factors",
    "prepare_fit_rows",
    "CITATION",
]


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
