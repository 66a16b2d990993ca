"""Statistics over seeds: means with 95 % CIs, paired tests with Holm correction, effect sizes.

For a metric and two variants the seeds pair up (common random numbers: same jobs, noise and
forecast error), so the tests are paired:

* mean ± the half-width of the 95 % Student-t interval, ``t_{0.975, n−1} · sd / √n``;
* reduction % = 100 · (1 − mean(GreenSched) / mean(baseline)) (the proposal's §2.5), and its
  95 % CI from the per-seed paired reductions;
* paired t-test (``scipy.stats.ttest_rel``) and Wilcoxon signed-rank (``scipy.stats.wilcoxon``,
  exact for small n), two-sided, each Holm-corrected over the baselines compared;
* effect size Cohen's d_z = mean(difference) / sd(difference) and the matched-pairs
  rank-biserial correlation r = (W⁺ − W⁻) / (W⁺ + W⁻).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["ci95", "compare", "holm", "summarize"]


def ci95(values: np.ndarray) -> tuple[float, float]:
    """(mean, half-width of the 95 % t interval); half-width 0 for one value."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n == 0:
        return float("nan"), float("nan")
    mean = float(v.mean())
    if n == 1:
        return mean, 0.0
    sd = float(v.std(ddof=1))
    return mean, float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n))


def holm(p: np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (NaN kept as NaN)."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    if ok.size == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, metric): n, mean, ci95 (half-width), sd (variant order kept)."""
    rows = []
    for (variant, metric), g in results.groupby(["variant", "metric"], sort=False):
        mean, half = ci95(g["value"].to_numpy())
        rows.append({"variant": variant, "metric": metric, "n": len(g), "mean": mean,
                     "ci95": half, "sd": float(g["value"].std(ddof=1)) if len(g) > 1 else 0.0})
    return pd.DataFrame(rows)


def _paired(results: pd.DataFrame, metric: str, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
    sub = results[results["metric"] == metric]
    pa = sub[sub["variant"] == a].set_index("seed")["value"]
    pb = sub[sub["variant"] == b].set_index("seed")["value"]
    seeds = pa.index.intersection(pb.index)
    return pa.loc[seeds].to_numpy(dtype=float), pb.loc[seeds].to_numpy(dtype=float)


def compare(results: pd.DataFrame, greensched: str, metric: str = "carbon_kg",
            baselines: list[str] | None = None) -> pd.DataFrame:
    """GreenSched against each baseline on ``metric`` (see the module docstring)."""
    names = baselines if baselines is not None else [
        v for v in dict.fromkeys(results["variant"]) if v != greensched
    ]
    rows = []
    for b in names:
        x, y = _paired(results, metric, greensched, b)
        n = len(x)
        diff = x - y
        red = 100.0 * (1.0 - x.mean() / y.mean()) if n and y.mean() != 0 else float("nan")
        per_seed = 100.0 * (1.0 - x / np.where(y != 0, y, np.nan))
        _, red_half = ci95(per_seed[np.isfinite(per_seed)])
        sd = float(diff.std(ddof=1)) if n > 1 else 0.0
        if n > 1 and sd > 0:
            p_t = float(stats.ttest_rel(x, y).pvalue)
            d_z = float(diff.mean() / sd)
        else:
            p_t, d_z = (1.0 if n > 1 else float("nan")), (0.0 if np.allclose(diff, 0) else
                                                            float("nan"))
        nz = diff[diff != 0]
        if nz.size:
            p_w = float(stats.wilcoxon(x, y).pvalue) if n > 1 else float("nan")
            ranks = stats.rankdata(np.abs(nz))
            w_pos, w_neg = float(ranks[nz > 0].sum()), float(ranks[nz < 0].sum())
            r_rb = (w_pos - w_neg) / (w_pos + w_neg)
        else:
            p_w, r_rb = 1.0, 0.0
        rows.append({
            "baseline": b, "metric": metric, "n": n, "greensched_mean": float(x.mean()),
            "baseline_mean": float(y.mean()), "reduction_pct": red,
            "reduction_ci95": red_half, "mean_diff": float(diff.mean()),
            "p_ttest": p_t, "p_wilcoxon": p_w, "cohens_dz": d_z, "rank_biserial": r_rb,
        })
    out = pd.DataFrame(rows)
    if len(out):
        out["p_ttest_holm"] = holm(out["p_ttest"].to_numpy())
        out["p_wilcoxon_holm"] = holm(out["p_wilcoxon"].to_numpy())
    return out
