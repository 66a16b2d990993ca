"""Predictor ablations with paired statistics over seeds: a shorter prompt context, and the
report shared with the continuous-learning ablation (:mod:`greensched.feedback.ablation`).

Both ablations produce rows in the experiment results format (``experiment, variant, policy,
predictor, ablation, seed, metric, value``), so :func:`greensched.eval.experiment.stats.compare`
gives the mean ± 95 % CI, the paired t and Wilcoxon p-values (Holm over the metrics compared)
and the effect sizes.

Shorter prompt context (:func:`prompt_context_ablation`)
=========================================================
The transformer predictor reads one prompt per job (:mod:`greensched.predictor.prompts`): the
job (type, area, tokens, SLA) and one block of DC state per DC (carbon, price, renewable share,
PUE, utilisation).  The ablation trains the same model twice per seed on the same twin dataset
and tests both on the same held-out jobs: **full** prompt (all five fields) vs **short** prompt
(``SHORT_FIELDS``: carbon and price only, i.e. without the operational state).  The model is the
cheapest real configuration in which the prompt matters: the frozen MiniLM encoder with trained
heads (LoRA variant ``"frozen"``: one encoder pass over the data, then head epochs on cached
embeddings) and ``numeric_features = False``, so the prompt is the model's only view of the DC
state (with the numeric features on, the exact numbers would mask the prompt).  Adapting LoRA
layers per seed does not fit the 2-core budget; the frozen model is stated as such.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greensched.eval.experiment.stats import compare, summarize

__all__ = [
    "ABLATION_SECTIONS",
    "SHORT_FIELDS",
    "ablation_rows",
    "prompt_context_ablation",
    "write_ablation_report",
]

#: The short prompt's DC fields (of :data:`greensched.predictor.prompts.PROMPT_FIELDS`).
SHORT_FIELDS: tuple[str, ...] = ("carbon_kg_per_kwh", "price_usd_per_kwh")

#: Section headings of the ablation report, in order.
ABLATION_SECTIONS = ("## Shorter prompt context", "## Continuous learning off",
                     "## Expected outcome: continuous learning −10 % error")


def ablation_rows(experiment: str, variant: str, seed: int, metrics: dict[str, float],
                  predictor: str, ablation: bool) -> list[dict[str, Any]]:
    """One row per metric in the experiment results format."""
    return [{"experiment": experiment, "variant": variant, "policy": "-",
             "predictor": predictor, "ablation": ablation, "seed": int(seed), "metric": m,
             "value": float(v)} for m, v in metrics.items()]


def _mape(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - truth) / truth))


def prompt_context_ablation(
    seeds: Sequence[int], *, scenario: str = "default", n_train: int = 1200,
    n_test: int = 400, traces: str | None = None, short_fields: Sequence[str] = SHORT_FIELDS,
    progress: Callable[[int, int, str], None] | None = None,
) -> pd.DataFrame:
    """Full vs short prompt, per seed on the same data (module docstring); long rows.

    Metrics per (variant, seed): ``pred_mape_energy`` and ``pred_mape_service`` (every held-out
    job at every DC, against the twin's noisy ground truth), ``prompt_tokens`` (mean tokenised
    length) and ``fit_s``.
    """
    from greensched.eval.experiment.run import load_experiment_scenario
    from greensched.eval.simulate import build_dataset
    from greensched.eval.traces import jobs_from_demand
    from greensched.predictor.dataset import dc_column
    from greensched.predictor.factory import make_predictor
    from greensched.predictor.prompts import prompt_fields, render_prompts

    scen = load_experiment_scenario(scenario)
    rows: list[dict[str, Any]] = []
    variants = (("full-prompt", None, False), ("short-prompt", tuple(short_fields), True))
    total, done = len(seeds) * len(variants), 0
    for seed in seeds:
        jobs = jobs_from_demand(scen, n_train + n_test, seed=int(seed), traces=traces)
        data = build_dataset(scen, jobs, seed=int(seed))
        rng = np.random.default_rng(int(seed))
        test_idx = np.sort(rng.choice(len(data), size=n_test, replace=False))
        test = data.iloc[test_idx].reset_index(drop=True)
        train = data.drop(index=data.index[test_idx]).reset_index(drop=True)
        for label, fields, is_ablation in variants:
            if progress:
                progress(done, total, f"{label} seed {seed}")
            model = make_predictor("lora", seed=int(seed), freeze_base=True,
                                   numeric_features=False, prompt_fields=fields,
                                   num_threads=1, progress=False)
            t0 = time.perf_counter()
            model.fit(train)
            fit_s = time.perf_counter() - t0
            pred = model.predict_arrays(test, calibrated=False)
            metrics: dict[str, float] = {"fit_s": fit_s}
            for target, key in (("energy_kwh", "pred_mape_energy"),
                                ("service_s", "pred_mape_service")):
                truth = np.column_stack([test[dc_column(target, d)].to_numpy(float)
                                         for d in model.dcs_])
                metrics[key] = _mape(truth, np.asarray(pred[target], dtype=float))
            texts = render_prompts(test.iloc[:64], model.dcs_, (), prompt_fields(fields))
            tokenizer = getattr(model, "tokenizer_")  # noqa: B009 - LoraPredictor's tokenizer
            metrics["prompt_tokens"] = float(np.mean([len(x) for x in
                                                      tokenizer(texts)["input_ids"]]))
            rows += ablation_rows("prompt-context", label, int(seed), metrics, "lora-frozen",
                                  is_ablation)
            done += 1
    if progress:
        progress(total, total, "done")
    return pd.DataFrame(rows)


def _p(x: float) -> str:
    if not np.isfinite(x):
        return "–"
    return f"{x:.2e}" if x < 1e-3 else f"{x:.3f}"


def _table(results: pd.DataFrame, on: str, metrics: Sequence[tuple[str, str, float]],
           described: Sequence[tuple[str, str, float]] = ()) -> list[str]:
    """Tested ``metrics`` (paired t and Wilcoxon, Holm over them) and ``described`` ones
    (means only: deterministic quantities such as the prompt length are not tested)."""
    from greensched.eval.experiment.stats import ci95, holm

    summary = summarize(results)
    off = [v for v in dict.fromkeys(results["variant"]) if v != on][0]
    lines = [f"| metric | `{on}` | `{off}` | `{off}` vs `{on}`: change % (95 % CI over seeds) | "
             "p t (Holm) | p Wilcoxon (Holm) | Cohen's d_z | n seeds |",
             "|---|---|---|---|---|---|---|---|"]
    tested = pd.DataFrame([compare(results, on, m, [off]).iloc[0].to_dict()
                           for m, _, _ in metrics])
    tested["p_t_holm"] = holm(tested["p_ttest"].to_numpy())
    tested["p_w_holm"] = holm(tested["p_wilcoxon"].to_numpy())
    stats = {m: r for (m, _, _), r in zip(metrics, tested.to_dict("records"), strict=True)}
    for metric, label, scale in [*metrics, *described]:
        s_on = summary[(summary["variant"] == on) & (summary["metric"] == metric)].iloc[0]
        s_off = summary[(summary["variant"] == off) & (summary["metric"] == metric)].iloc[0]
        sub = results[results["metric"] == metric].pivot_table(index="seed", columns="variant",
                                                               values="value")
        change, half = ci95(100.0 * (sub[off] / sub[on] - 1.0).to_numpy())
        r = stats.get(metric)
        tests = (f"{_p(r['p_t_holm'])} | {_p(r['p_w_holm'])} | {r['cohens_dz']:.3g}"
                 if r is not None else "not tested | – | –")
        lines.append(
            f"| {label} | {scale * s_on['mean']:.4g} ± {scale * s_on['ci95']:.2g} | "
            f"{scale * s_off['mean']:.4g} ± {scale * s_off['ci95']:.2g} | {change:+.1f} ± "
            f"{half:.1f} | {tests} | {len(sub)} |")
    return lines


def write_ablation_report(path: str | Path, *, prompt: pd.DataFrame | None,
                          learning: pd.DataFrame | None, notes: dict[str, str] | None = None,
                          command: str | None = None) -> Path:
    """The Markdown report of both ablations (either may be missing: 'not run')."""
    notes = notes or {}
    md = Path(path)
    md.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Predictor ablations: shorter prompt context, continuous learning off", ""]
    if command:
        lines += [f"Regenerate: `{command}`", ""]
    lines += [ABLATION_SECTIONS[0], ""]
    if prompt is None or prompt.empty:
        lines.append("- not run")
    else:
        lines += [notes.get("prompt", "").strip(), "",
                  *_table(prompt, "full-prompt",
                          [("pred_mape_energy", "energy MAPE %", 100.0),
                           ("pred_mape_service", "service-time MAPE %", 100.0)],
                          [("prompt_tokens", "prompt length (tokens)", 1.0),
                           ("fit_s", "fit time (s, wall, shared machine)", 1.0)])]
    lines += ["", ABLATION_SECTIONS[1], ""]
    if learning is None or learning.empty:
        lines.append("- not run")
    else:
        lines += [notes.get("learning", "").strip(), "",
                  *_table(learning, "continuous-learning",
                          [("pred_mape_energy", "energy MAPE % (after the re-tune)", 100.0),
                           ("pred_mape_service", "service-time MAPE %", 100.0),
                           ("carbon_g_per_job", "carbon per job (g, greedy)", 1.0)])]
    lines += ["", ABLATION_SECTIONS[2], ""]
    if learning is None or learning.empty:
        lines.append("- not measured (the continuous-learning ablation was not run)")
    else:
        c = compare(learning, "continuous-learning", "pred_mape_energy",
                    ["continuous-learning-off"]).iloc[0]
        red, half, p = float(c["reduction_pct"]), float(c["reduction_ci95"]), float(c["p_ttest"])
        status = "met" if red >= 10.0 and p < 0.05 else (
            "not met (not significant)" if red >= 10.0 else "not met")
        lines += ["| outcome | measured | status |", "|---|---|---|",
                  f"| continuous learning −10 % error vs a static model | energy MAPE "
                  f"{red:.1f} % ± {half:.1f} lower with re-tuning (paired t p = {_p(p)}, "
                  f"{int(c['n'])} seeds) | **{status}** |"]
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return md
