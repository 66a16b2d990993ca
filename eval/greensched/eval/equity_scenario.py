"""Per-request energy of Llama-2 7B/13B/70B from the twin, and the 10-location SE-GLB problem.

The scheduler's equity package takes per-request energy and GPU time as input data
(:class:`greensched.scheduler.equity.ten_locations.ModelSpec`); this module, one layer above it,
computes them with the digital twin's fitted energy model
(:class:`greensched.eval.energy_model.EnergyModel`, Wilkins et al. measurements scaled by
ML.ENERGY factors) for the mean request of the Azure conversation trace, on A100 GPUs (DGX A100).

GPUs per replica follow the fleet table's rule (bf16 weights in 90 % of the 40 GB A100 memory,
a power of two: 1, 1, 4) and the batch its defaults (16 for ≤ 14B, 8 above); GPU-seconds per
request = GPUs × runtime / batch.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

from greensched.data.azure_trace import read_azure_trace
from greensched.eval.energy_model import EnergyModel
from greensched.eval.fleet import GPU_MEMORY_GB
from greensched.scheduler.equity.problem import EquityProblem
from greensched.scheduler.equity.ten_locations import ModelSpec, build_ten_locations

__all__ = ["DEFAULT_TOKENS", "llama2_specs", "mean_trace_tokens", "ten_location_problem"]

#: Mean prompt and output tokens of the Azure 2023 conversation trace (used when it is absent).
DEFAULT_TOKENS = (1155.0, 211.0)
_PARAMS_B = {"7B": 7.0, "13B": 13.0, "70B": 70.0}


@functools.lru_cache(maxsize=4)
def mean_trace_tokens(data_dir: str | Path) -> tuple[float, float]:
    """Mean (input, output) tokens of ``azure_llm_inference/AzureLLMInferenceTrace_conv.csv``."""
    path = Path(data_dir) / "azure_llm_inference" / "AzureLLMInferenceTrace_conv.csv"
    if not path.exists():
        return DEFAULT_TOKENS
    df = read_azure_trace(path)
    return float(df["input_tokens"].mean()), float(df["output_tokens"].mean())


def _gpus(params_b: float, gpu: str = "A100") -> int:
    need = params_b * 2.0 / (GPU_MEMORY_GB[gpu] * 0.9)
    return int(2 ** max(0, math.ceil(math.log2(max(need, 1.0)))))


def llama2_specs(
    input_tokens: float, output_tokens: float, energy_model: EnergyModel | None = None
) -> tuple[ModelSpec, ...]:
    """Per-request IT energy (kWh) and GPU-seconds of Llama-2 7B/13B/70B on A100."""
    em = energy_model or EnergyModel.load_default()
    out = []
    for name, p in _PARAMS_B.items():
        batch = 16 if p <= 14 else 8
        label = f"Llama-2 ({name})"
        e = float(em.predict_energy_kwh(input_tokens, output_tokens, label, "A100", batch))
        r = float(em.predict_runtime_s(input_tokens, output_tokens, label, "A100", batch))
        out.append(ModelSpec(name=name, energy_kwh=e, gpu_s=_gpus(p) * r / batch))
    return tuple(out)


def ten_location_problem(
    data_dir: str | Path = "../shared/data",
    *,
    start: str = "2024-03-24",
    hours: int = 24,
    base_requests_per_h: float = 100_000.0,
    masks: bool = True,
    models: tuple[str, ...] = ("7B", "13B", "70B"),
    site_models: bool = True,
) -> EquityProblem:
    """The paper's 10 locations with twin-derived per-request energy (see ten_locations).

    ``models`` selects a subset of Llama-2 7B/13B/70B (e.g. ``("70B",)``: one model, so that
    only the geography of the load can change, as in the eGLB paper).
    """
    tin, tout = mean_trace_tokens(data_dir)
    specs = tuple(s for s in llama2_specs(tin, tout) if s.name in models)
    prob = build_ten_locations(
        data_dir,
        specs,
        start=start,
        hours=hours,
        base_requests_per_h=base_requests_per_h,
        masks=masks,
        site_models=site_models,
    )
    prob.notes["energy"] = (
        f"twin EnergyModel, A100, mean Azure conv request ({tin:.0f} in, {tout:.0f} out tokens): "
        + ", ".join(f"{s.name} {s.energy_kwh * 1000:.3f} Wh / {s.gpu_s:.2f} GPU-s" for s in specs)
    )
    return prob
