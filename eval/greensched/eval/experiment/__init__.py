"""Experiments: GreenSched against the published baselines, seeds × variants, statistics, report.

``greensched experiment run EXP.toml --out DIR`` runs :func:`run_experiment` (in-process, a
local process pool, or Ray); ``greensched experiment report DIR`` runs :func:`write_report`.
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

__all__ = [
    "EXPECTED_OUTCOMES",
    "METRICS",
    "SECTIONS",
    "TIMING_METRICS",
    "ExperimentConfig",
    "ExperimentError",
    "JobMix",
    "PredictorKind",
    "Variant",
    "ci95",
    "compare",
    "expected_outcomes",
    "holm",
    "load_experiment",
    "results_frames",
    "run_experiment",
    "run_task",
    "summarize",
    "write_report",
]
