"""The serving fleet of each data center: which model runs on which GPUs, how many, what batch.

A scenario directory may hold an optional ``fleet.csv`` (see ``docs/fleet.md``) with one row per
(dc, query_type)::

    dc,query_type,model,gpu,gpus_per_replica,replicas,batch_size
    us-central1,chat,13B,H100,1,auto,16

* ``dc`` / ``query_type``: identifiers of the scenario, or ``*`` for "every" (a more specific row
  wins: (dc, type) > (dc, ``*``) > (``*``, type) > (``*``, ``*``)).
* ``model``: a size class (``7B``, ``13B``, ``70B``), a label carrying a size (``Llama-2 (13B)``)
  or a bare parameter count in billions (``13``).
* ``gpu``: ``A100``, ``V100``, ``H100``, ``B200`` (or ``M1-Pro``, the measured laptop).
* ``gpus_per_replica``: GPUs holding one copy of the model (integer >= 1); the weights (2 bytes
  per parameter, bf16) must fit in 90 % of their memory.
* ``replicas``: model copies serving that query type at that DC (integer >= 1), or ``auto`` /
  empty: sized by the twin (:mod:`greensched.eval.twin`) so that the scenario's resource capacity
  corresponds to the target utilisation.
* ``batch_size``: maximum concurrent sequences per replica (continuous batching), 1..2048.

(dc, query_type) pairs that no row covers take :func:`default_fleet`'s values.  A bad file raises
:class:`greensched.errors.ScenarioError` naming the file, line, column and value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from greensched.data.energy_inference import params_of_model
from greensched.errors import ScenarioError
from greensched.scenario import Scenario

__all__ = [
    "AUTO",
    "FLEET_COLUMNS",
    "FLEET_FILE",
    "GPU_MEMORY_GB",
    "LETTER_REGION_GPUS",
    "LETTER_TYPE_MODELS",
    "Fleet",
    "default_fleet",
    "fleet_for",
    "load_fleet",
    "model_params_b",
]

FLEET_FILE = "fleet.csv"
FLEET_COLUMNS = ("dc", "query_type", "model", "gpu", "gpus_per_replica", "replicas", "batch_size")
#: Value of ``replicas`` meaning "size it from the scenario" (stored as 0 in :class:`Fleet`).
AUTO = "auto"
_WILDCARD = "*"

#: HBM per GPU (GB), NVIDIA datasheets: A100 40GB SXM4, V100 32GB SXM2, H100 80GB SXM5,
#: HGX B200 (1.44 TB per 8 GPUs = 180 GB); Apple M1 Pro: 32 GB unified memory.
GPU_MEMORY_GB: dict[str, float] = {
    "A100": 40.0,
    "V100": 32.0,
    "H100": 80.0,
    "B200": 180.0,
    "M1-Pro": 32.0,
}
_GPU_NAMES = {g.lower(): g for g in GPU_MEMORY_GB}
_FIT_FRACTION = 0.9
_BYTES_PER_PARAM = 2.0  # bf16 weights

#: Default GPU of the Green-LLM letter's nine Google regions.  An *illustrative assumption* that
#: makes the fleet heterogeneous (three generations); it is not a statement about which GPUs
#: Google offers in each region.
LETTER_REGION_GPUS: dict[str, str] = {
    "us-central1": "H100",
    "us-east1": "A100",
    "us-east4": "H100",
    "us-east5": "A100",
    "us-south1": "A100",
    "us-west1": "B200",
    "us-west2": "A100",
    "us-west3": "A100",
    "us-west4": "H100",
}
#: GPU by DC index (cycled) for DCs of other scenarios.
GPU_CYCLE = ("A100", "H100", "A100", "B200")

#: Default model size class of the letter's query types (an assumption: heavier reasoning and
#: code models for math and code, a small model for the short "image" captions); other types: 7B.
LETTER_TYPE_MODELS: dict[str, str] = {
    "chat": "13B",
    "summarization": "13B",
    "math": "70B",
    "code": "34B",
    "image": "7B",
}
DEFAULT_MODEL = "7B"


def model_params_b(model: str | float) -> float:
    """Parameters (billions) of a fleet ``model`` value; NaN when it carries no size."""
    if isinstance(model, int | float) and not isinstance(model, bool):
        return float(model)
    text = str(model).strip()
    try:
        return float(text)
    except ValueError:
        pass
    return float(params_of_model(text))


def _gpus_needed(params_b: float, gpu: str) -> int:
    """Smallest power of two of GPUs whose memory holds the bf16 weights (90 % usable)."""
    need = params_b * _BYTES_PER_PARAM / (GPU_MEMORY_GB[gpu] * _FIT_FRACTION)
    return int(2 ** max(0, math.ceil(math.log2(max(need, 1.0)))))


def _default_batch(params_b: float, gpu: str) -> int:
    if gpu in ("V100", "M1-Pro"):
        return 8
    return 16 if params_b <= 14 else 8


@dataclass
class Fleet:
    """Per (dc, query_type) serving configuration.

    Attributes
    ----------
    table
        One row per (dc, query_type) of the scenario, in scenario order (dc outer), columns
        :data:`FLEET_COLUMNS` plus ``params_b`` and ``source`` (``"default"`` or the file and
        line).  ``replicas`` is 0 where it is ``auto``.
    """

    table: pd.DataFrame

    def arrays(self, scenario: Scenario) -> dict[str, np.ndarray]:
        """Arrays of shape (dc, query_type) in the scenario's label order.

        Keys: ``params_b`` (float), ``gpu`` and ``model`` (object), ``gpus_per_replica``,
        ``replicas`` (0 = auto) and ``batch_size`` (int64).
        """
        t = self.table.set_index(["dc", "query_type"])
        idx = pd.MultiIndex.from_product([scenario.dcs, scenario.query_types])
        missing = idx.difference(t.index)
        if len(missing):
            dc, k = missing[0]
            raise ScenarioError(f"the fleet has no row for dc {dc!r}, query_type {k!r}")
        t = t.loc[idx]
        shape = (len(scenario.dcs), len(scenario.query_types))
        return {
            "params_b": t["params_b"].to_numpy(dtype=float).reshape(shape),
            "gpu": t["gpu"].to_numpy(dtype=object).reshape(shape),
            "model": t["model"].to_numpy(dtype=object).reshape(shape),
            "gpus_per_replica": t["gpus_per_replica"].to_numpy(dtype=np.int64).reshape(shape),
            "replicas": t["replicas"].to_numpy(dtype=np.int64).reshape(shape),
            "batch_size": t["batch_size"].to_numpy(dtype=np.int64).reshape(shape),
        }

    def to_frame(self) -> pd.DataFrame:
        """The table in ``fleet.csv`` form (``replicas`` 0 written as ``auto``)."""
        out = self.table.loc[:, list(FLEET_COLUMNS)].copy()
        out["replicas"] = [AUTO if int(r) == 0 else str(int(r)) for r in out["replicas"]]
        return out

    def save(self, path: str | Path) -> Path:
        """Write the table as ``fleet.csv``."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        self.to_frame().to_csv(p, index=False, lineterminator="\n")
        return p

    def with_replicas(self, replicas: np.ndarray, scenario: Scenario) -> Fleet:
        """A copy whose ``auto`` replicas are replaced by ``replicas`` (dc, query_type)."""
        t = self.table.copy()
        dpos = pd.Index(scenario.dcs).get_indexer(t["dc"])
        kpos = pd.Index(scenario.query_types).get_indexer(t["query_type"])
        current = t["replicas"].to_numpy(dtype=np.int64)
        t["replicas"] = np.where(current > 0, current, replicas[dpos, kpos]).astype(np.int64)
        return Fleet(t)


def default_fleet(scenario: Scenario) -> Fleet:
    """The fleet used when a scenario has no ``fleet.csv`` (all assumptions, see docs/fleet.md).

    * GPU: :data:`LETTER_REGION_GPUS` for the letter's regions, else :data:`GPU_CYCLE` by the
      DC's index in the scenario.
    * Model: :data:`LETTER_TYPE_MODELS` for the letter's query types, else 7B.
    * GPUs per replica: the smallest power of two whose memory holds the bf16 weights.
    * Batch size: 16 (8 for models above 14B and on V100).
    * Replicas: ``auto``.
    """
    rows = []
    for j, dc in enumerate(scenario.dcs):
        gpu = LETTER_REGION_GPUS.get(dc, GPU_CYCLE[j % len(GPU_CYCLE)])
        for k in scenario.query_types:
            model = LETTER_TYPE_MODELS.get(k, DEFAULT_MODEL)
            p = model_params_b(model)
            rows.append(
                {
                    "dc": dc,
                    "query_type": k,
                    "model": model,
                    "gpu": gpu,
                    "gpus_per_replica": _gpus_needed(p, gpu),
                    "replicas": 0,
                    "batch_size": _default_batch(p, gpu),
                    "params_b": p,
                    "source": "default",
                }
            )
    return Fleet(pd.DataFrame(rows))


def _cell_int(value: str, path: Path, line: int, column: str, *, low: int, high: int) -> int:
    text = value.strip()
    try:
        num = float(text)
    except ValueError:
        num = float("nan")
    if not math.isfinite(num) or num != round(num) or not (low <= num <= high):
        raise ScenarioError(
            f"expected an integer in {low}..{high}", file=path, line=line, column=column,
            value=value,
        )
    return int(num)


def load_fleet(path: str | Path, scenario: Scenario) -> Fleet:
    """Read and validate a ``fleet.csv`` for ``scenario``; uncovered pairs take the defaults.

    Raises
    ------
    ScenarioError
        Missing file or column, unknown dc / query_type / gpu, a model without a size, a
        non-integer or out-of-range count, a duplicated (dc, query_type) row, or a model whose
        weights do not fit on ``gpus_per_replica`` GPUs — naming file, line, column and value.
    """
    p = Path(path)
    if not p.is_file():
        raise ScenarioError("fleet file not found", file=p)
    try:
        raw = pd.read_csv(p, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError as exc:
        raise ScenarioError("file is empty; expected a header row", file=p, line=1) from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"cannot parse as UTF-8 CSV ({exc})", file=p) from exc
    raw.columns = [str(c).strip() for c in raw.columns]
    for col in FLEET_COLUMNS:
        if col not in raw.columns:
            optional = col == "replicas"
            if optional:
                raw[col] = AUTO
                continue
            raise ScenarioError(
                f"missing column; the header must contain {', '.join(FLEET_COLUMNS)}",
                file=p, line=1, column=col,
            )
    dcs, types = set(scenario.dcs), set(scenario.query_types)
    specific: dict[tuple[str, str], dict[str, object]] = {}
    for i, row in enumerate(raw.itertuples(index=False)):
        line = i + 2
        rec = dict(zip(raw.columns, row, strict=True))
        dc = str(rec["dc"]).strip()
        k = str(rec["query_type"]).strip()
        if dc != _WILDCARD and dc not in dcs:
            raise ScenarioError(
                f"unknown dc; expected '*' or one of {', '.join(scenario.dcs[:8])}"
                f"{', ...' if len(dcs) > 8 else ''}", file=p, line=line, column="dc", value=dc,
            )
        if k != _WILDCARD and k not in types:
            raise ScenarioError(
                f"unknown query_type; expected '*' or one of {', '.join(scenario.query_types)}",
                file=p, line=line, column="query_type", value=k,
            )
        model = str(rec["model"]).strip()
        params = model_params_b(model) if model else float("nan")
        if not (math.isfinite(params) and params > 0):
            raise ScenarioError(
                "model must carry a size: a size class such as 7B / 13B / 70B, a label such as "
                "'Llama-2 (13B)', or a parameter count in billions",
                file=p, line=line, column="model", value=rec["model"],
            )
        gpu_text = str(rec["gpu"]).strip()
        gpu = _GPU_NAMES.get(gpu_text.lower())
        if gpu is None:
            raise ScenarioError(
                f"unknown gpu; expected one of {', '.join(GPU_MEMORY_GB)}",
                file=p, line=line, column="gpu", value=rec["gpu"],
            )
        gpus = _cell_int(str(rec["gpus_per_replica"]), p, line, "gpus_per_replica",
                         low=1, high=4096)
        rep_text = str(rec["replicas"]).strip()
        replicas = 0 if rep_text.lower() in ("", AUTO) else _cell_int(
            rep_text, p, line, "replicas", low=1, high=10**7)
        batch = _cell_int(str(rec["batch_size"]), p, line, "batch_size", low=1, high=2048)
        weights_gb = params * _BYTES_PER_PARAM
        usable_gb = gpus * GPU_MEMORY_GB[gpu] * _FIT_FRACTION
        if weights_gb > usable_gb:
            raise ScenarioError(
                f"the {model} model's bf16 weights ({weights_gb:.0f} GB) do not fit on {gpus} "
                f"{gpu} ({usable_gb:.0f} GB usable); use at least {_gpus_needed(params, gpu)}",
                file=p, line=line, column="gpus_per_replica", value=rec["gpus_per_replica"],
            )
        key = (dc, k)
        if key in specific:
            raise ScenarioError(
                f"duplicated row for dc {dc!r}, query_type {k!r} (first on line "
                f"{specific[key]['line']})", file=p, line=line, column="query_type", value=k,
            )
        specific[key] = {
            "model": model, "gpu": gpu, "gpus_per_replica": gpus, "replicas": replicas,
            "batch_size": batch, "params_b": params, "line": line,
        }
    base = default_fleet(scenario).table
    rows = []
    for rec_d in base.to_dict("records"):
        dc, k = str(rec_d["dc"]), str(rec_d["query_type"])
        hit = _lookup(specific, dc, k)
        if hit is not None:
            rec_d.update({c: hit[c] for c in ("model", "gpu", "gpus_per_replica", "replicas",
                                               "batch_size", "params_b")})
            rec_d["source"] = f"{p}:{hit['line']}"
        rows.append(rec_d)
    return Fleet(pd.DataFrame(rows))


def _lookup(
    specific: Mapping[tuple[str, str], dict[str, object]], dc: str, k: str
) -> dict[str, object] | None:
    for key in ((dc, k), (dc, _WILDCARD), (_WILDCARD, k), (_WILDCARD, _WILDCARD)):
        if key in specific:
            return specific[key]
    return None


def fleet_for(scenario: Scenario, path: str | Path | None = None) -> Fleet:
    """``path`` if given, else ``fleet.csv`` beside the scenario when present, else defaults."""
    if path is not None:
        return load_fleet(path, scenario)
    if scenario.source is not None and (Path(scenario.source) / FLEET_FILE).is_file():
        return load_fleet(Path(scenario.source) / FLEET_FILE, scenario)
    return default_fleet(scenario)
