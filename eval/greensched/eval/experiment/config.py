"""Experiment files (TOML): scenario, job mix, policies (variants), seeds, ablations, quick preset.

Example (``examples/experiments/main.toml``)::

    name = "main"
    kind = "policies"               # the default; "sweep": greensched.eval.experiment.sweeps
    scenario = "default"            # "default" (embedded day), a scenario directory,
                                    # "synth:DCS,AREAS,TYPES,HOURS,SEED", or one built day
                                    # "build:BUILD.toml@YYYY-MM-DD"
    seeds = 30
    noise = true                    # the twin's lognormal noise
    forecast_error = 0.1            # σ of the lognormal error of the carbon/price forecast
    capacity_scale = 1.0            # multiplies every DC's resource capacity
    greensched = "greensched"       # the variant tested against the others
    reference = "performance-only"  # the variant reductions are also reported against
    alternatives = ["greensched-carbon"]  # other GreenSched settings tested the same way

    [jobs]
    n_jobs = 4000
    traces = "../shared/data/azure_llm_inference"   # Azure LLM inference traces (optional)
    batch_share = 0.5               # share of batch (deferrable) jobs
    batch_deadline_h = [2.0, 12.0]  # batch deadlines, uniform in this range (hours)

    [[variant]]
    label = "greensched"
    policy = "greensched"
    predictor = "expected"          # expected | oracle | xgboost
    params = {}

    notes = "..."                   # Markdown printed in the report's Run section

    [quick]                         # overrides for --quick
    seeds = 3
    n_jobs = 400

Relative paths resolve against the experiment file's folder, then the current folder.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from greensched.errors import GreenSchedError

__all__ = [
    "ExperimentConfig",
    "ExperimentError",
    "JobMix",
    "PredictorKind",
    "Variant",
    "load_experiment",
]


class ExperimentError(GreenSchedError):
    """An experiment file is wrong (the message names the file, field and value)."""


class PredictorKind(StrEnum):
    """Where a variant's per-(job, dc) energy and service-time predictions come from."""

    EXPECTED = "expected"  # the twin's population-mean expectation (no per-job hindsight)
    #: the twin's per-job values with the run's noise (queues of a nearest-DC placement)
    ORACLE = "oracle"
    XGBOOST = "xgboost"  # XGBoost trained on a twin dataset of another seed (pure-ML pipeline)
    #: GreenSched's transformer (MiniLM + LoRA adapters + heads; ``lora-frozen``: the frozen
    #: encoder + heads), trained once per run on the same twin dataset as ``xgboost``
    LORA = "lora"
    LORA_FROZEN = "lora-frozen"


@dataclass
class Variant:
    """One compared configuration: a policy with parameters and a predictor."""

    label: str
    policy: str
    predictor: PredictorKind = PredictorKind.EXPECTED
    params: dict[str, Any] = field(default_factory=dict)
    ablation: bool = False

    def __post_init__(self) -> None:
        from greensched.scheduler.policies import POLICY_NAMES

        if not self.label or not isinstance(self.label, str):
            raise ExperimentError(f"variant label {self.label!r} must be a non-empty string")
        if self.policy not in POLICY_NAMES:
            raise ExperimentError(
                f"variant {self.label!r}: policy {self.policy!r} is not known; expected one of "
                f"{', '.join(POLICY_NAMES)}"
            )
        try:
            self.predictor = PredictorKind(self.predictor)
        except ValueError as exc:
            raise ExperimentError(
                f"variant {self.label!r}: predictor {self.predictor!r} is not known; expected "
                f"{', '.join(k.value for k in PredictorKind)}"
            ) from exc
        if not isinstance(self.params, dict):
            raise ExperimentError(f"variant {self.label!r}: params must be a table")


@dataclass
class JobMix:
    """How jobs are drawn: count, traces, share and deadlines of batch jobs.

    With ``represent_demand`` every sampled job stands for w = (the scenario's queries per day)
    / n_jobs real queries: the twin's queues, utilisation and facility accounting weigh it by w
    (so on-site renewables, grid caps and queueing see the scenario's full load) and the
    policies' capacity ledger is divided by w (capacity binds as at full load).
    """

    n_jobs: int = 2000
    traces: str | None = None
    batch_share: float = 0.5
    batch_deadline_h: tuple[float, float] = (2.0, 12.0)
    train_jobs: int = 3000
    represent_demand: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, int) or self.n_jobs < 1:
            raise ExperimentError(f"jobs.n_jobs {self.n_jobs!r} must be an integer >= 1")
        if not (0.0 <= float(self.batch_share) <= 1.0):
            raise ExperimentError(f"jobs.batch_share {self.batch_share!r} must lie in [0, 1]")
        lo, hi = (float(v) for v in self.batch_deadline_h)
        if not (0 < lo <= hi and math.isfinite(hi)):
            raise ExperimentError(
                f"jobs.batch_deadline_h {list(self.batch_deadline_h)!r} must be [low, high] "
                "with 0 < low <= high"
            )
        self.batch_deadline_h = (lo, hi)


@dataclass
class ExperimentConfig:
    """A parsed experiment (see the module docstring)."""

    name: str
    scenario: str
    variants: list[Variant]
    jobs: JobMix = field(default_factory=JobMix)
    seeds: int = 30
    noise: bool = True
    forecast_error: float = 0.1
    capacity_scale: float = 1.0
    greensched: str = "greensched"
    reference: str = "performance-only"
    quick: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    notes: str = ""
    alternatives: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ExperimentError(f"seeds {self.seeds!r} must be an integer >= 1")
        if not (math.isfinite(self.forecast_error) and self.forecast_error >= 0):
            raise ExperimentError(f"forecast_error {self.forecast_error!r} must be >= 0")
        if not (math.isfinite(self.capacity_scale) and self.capacity_scale > 0):
            raise ExperimentError(f"capacity_scale {self.capacity_scale!r} must be > 0")
        labels = [v.label for v in self.variants]
        if not labels:
            raise ExperimentError("an experiment needs at least one [[variant]]")
        dup = {x for x in labels if labels.count(x) > 1}
        if dup:
            raise ExperimentError(f"variant labels must be unique; repeated: {sorted(dup)!r}")
        for alt in self.alternatives:
            if alt not in labels:
                raise ExperimentError(f"alternatives names {alt!r}, no variant; labels are "
                                      f"{labels!r}")
        for key in ("greensched", "reference"):
            if getattr(self, key) not in labels:
                raise ExperimentError(
                    f"{key} = {getattr(self, key)!r} names no variant; labels are {labels!r}"
                )

    def select(self, labels: list[str]) -> ExperimentConfig:
        """A copy with only the variants ``labels`` (the GreenSched and reference variants
        must be among them)."""
        known = [v.label for v in self.variants]
        bad = [x for x in labels if x not in known]
        if bad:
            raise ExperimentError(f"--variants: {bad[0]!r} names no variant; labels are "
                                  f"{known!r}")
        keep = set(labels)
        return ExperimentConfig(
            name=self.name, scenario=self.scenario,
            variants=[v for v in self.variants if v.label in keep], jobs=self.jobs,
            seeds=self.seeds, noise=self.noise, forecast_error=self.forecast_error,
            capacity_scale=self.capacity_scale, greensched=self.greensched,
            reference=self.reference, quick=dict(self.quick), source=self.source,
            notes=self.notes, alternatives=[a for a in self.alternatives if a in keep],
        )

    def quick_preset(self) -> ExperimentConfig:
        """The ``[quick]`` overrides applied (few seeds, few jobs)."""
        q = dict(self.quick)
        jobs = JobMix(
            n_jobs=int(q.pop("n_jobs", min(self.jobs.n_jobs, 400))),
            traces=self.jobs.traces,
            batch_share=self.jobs.batch_share,
            batch_deadline_h=self.jobs.batch_deadline_h,
            train_jobs=int(q.pop("train_jobs", min(self.jobs.train_jobs, 600))),
            represent_demand=self.jobs.represent_demand,
        )
        keep = q.pop("variants", None)
        variants = [v for v in self.variants if keep is None or v.label in keep]
        seeds = int(q.pop("seeds", min(self.seeds, 3)))
        if q:
            raise ExperimentError(f"[quick] has unknown key(s) {sorted(q)!r}")
        return ExperimentConfig(
            name=self.name, scenario=self.scenario, variants=variants, jobs=jobs, seeds=seeds,
            noise=self.noise, forecast_error=self.forecast_error,
            capacity_scale=self.capacity_scale, greensched=self.greensched,
            reference=self.reference, quick={}, source=self.source, notes=self.notes,
            alternatives=[a for a in self.alternatives if a in {v.label for v in variants}],
        )


_TOP = {"name", "scenario", "seeds", "noise", "forecast_error", "capacity_scale", "greensched",
        "reference", "jobs", "variant", "quick", "notes", "alternatives", "kind"}


def _resolve(value: str | None, base: Path) -> str | None:
    if value is not None and value.startswith("build:"):
        path, at, start = value[6:].partition("@")
        return "build:" + str(_resolve(path, base)) + at + start
    if value is None or value == "default" or value.startswith("synth:"):
        return value
    p = Path(value)
    if not p.is_absolute() and (base / p).exists():
        return str((base / p).resolve())
    return str(p)


def read_experiment_file(path: str | Path) -> dict[str, Any]:
    """The parsed TOML of an experiment file; a missing file or bad TOML names the file."""
    p = Path(path)
    if not p.is_file():
        raise ExperimentError(f"{p}: experiment file not found")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{p}: invalid TOML ({exc})") from exc


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment TOML file (errors name the file and field)."""
    p = Path(path)
    raw = read_experiment_file(p)
    if raw.get("kind", "policies") != "policies":
        raise ExperimentError(f"{p}: kind {raw.get('kind')!r} is not a policy experiment "
                              "(kind = 'sweep' files are read by load_sweep_experiment)")
    unknown = set(raw) - _TOP
    if unknown:
        raise ExperimentError(f"{p}: unknown key(s) {sorted(unknown)!r}; expected {sorted(_TOP)}")
    base = p.parent
    try:
        jobs_raw = dict(raw.get("jobs", {}))
        if "batch_deadline_h" in jobs_raw:
            jobs_raw["batch_deadline_h"] = tuple(jobs_raw["batch_deadline_h"])
        jobs_raw["traces"] = _resolve(jobs_raw.get("traces"), base)
        jobs = JobMix(**jobs_raw)
        variants = [Variant(**v) for v in raw.get("variant", [])]
        cfg = ExperimentConfig(
            name=str(raw.get("name", p.stem)),
            scenario=str(_resolve(str(raw.get("scenario", "default")), base)),
            variants=variants,
            jobs=jobs,
            seeds=raw.get("seeds", 30),
            noise=bool(raw.get("noise", True)),
            forecast_error=float(raw.get("forecast_error", 0.1)),
            capacity_scale=float(raw.get("capacity_scale", 1.0)),
            greensched=str(raw.get("greensched", "greensched")),
            reference=str(raw.get("reference", "performance-only")),
            quick=dict(raw.get("quick", {})),
            source=str(p),
            notes=str(raw.get("notes", "")),
            alternatives=[str(a) for a in raw.get("alternatives", [])],
        )
    except TypeError as exc:
        raise ExperimentError(f"{p}: {exc}") from exc
    except ExperimentError as exc:
        raise ExperimentError(f"{p}: {exc}") from exc
    return cfg
