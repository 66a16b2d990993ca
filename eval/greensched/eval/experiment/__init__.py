"""Experiments: GreenSched against the published baselines, seeds × variants, statistics, report.

``greensched experiment run EXP.toml --out DIR`` runs :func:`run_experiment` (in-process, a
local process pool, or Ray); ``greensched experiment report DIR`` runs :func:`write_report`.
A file with ``kind = "sweep"`` is a sensitivity-sweep experiment instead (the Green-LLM letter's
Section III, :mod:`greensched.eval.experiment.sweeps`): ``run_sweep_experiment`` /
``write_sweep_report``.
The experiment file format is in :mod:`greensched.eval.experiment.config`.
"""

from __future__ import annotations

from greensched.eval.experiment.config import (
    ExperimentConfig,
    ExperimentError,
    JobMix,
    PredictorKind,
    Variant,
    load_experiment,
)
from greensched.eval.experiment.engine import results_frames, run_experiment
from greensched.eval.experiment.report import (
    EXPECTED_OUTCOMES,
    SECTIONS,
    expected_outcomes,
    write_report,
)
from greensched.eval.experiment.run import METRICS, TIMING_METRICS, run_task
from greensched.eval.experiment.stats import ci95, compare, holm, summarize
from greensched.eval.experiment.sweeps import (
    SWEEP_SECTIONS,
    SweepExperiment,
    experiment_kind,
    load_sweep_experiment,
    run_sweep_experiment,
    write_sweep_report,
)

__all__ = [
    "EXPECTED_OUTCOMES",
    "METRICS",
    "SECTIONS",
    "SWEEP_SECTIONS",
    "TIMING_METRICS",
    "ExperimentConfig",
    "ExperimentError",
    "SweepExperiment",
    "JobMix",
    "PredictorKind",
    "Variant",
    "ci95",
    "compare",
    "expected_outcomes",
    "experiment_kind",
    "holm",
    "load_experiment",
    "load_sweep_experiment",
    "results_frames",
    "run_experiment",
    "run_sweep_experiment",
    "run_task",
    "summarize",
    "write_report",
    "write_sweep_report",
]
