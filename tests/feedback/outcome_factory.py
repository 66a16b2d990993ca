"""Synthetic outcome records for the feedback tests (and the kill-test subprocess).

Ground truth: energy grows with tokens, service time with output tokens; the prediction is the
truth times a log-normal error of spread ``error_sigma``; drift is injected by scaling the
measurements (``energy_scale``/``service_scale``) or the token and query-type mix.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

QUERY_TYPES = ("chat", "code", "summarise")
AREAS = ("eu", "us", "asia")
DCS = ("dc-a", "dc-b")
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def make_outcomes(
    n: int,
    *,
    prefix: str = "j",
    seed: int = 0,
    error_sigma: float = 0.15,
    energy_scale: float = 1.0,
    service_scale: float = 1.0,
    token_scale: float = 1.0,
    query_mix: tuple[float, ...] = (0.6, 0.3, 0.1),
    area_mix: tuple[float, ...] = (0.4, 0.4, 0.2),
    model_version: str = "v1",
    start: datetime = T0,
) -> list[dict[str, Any]]:
    """``n`` valid outcome records with job_ids ``{prefix}{i:06d}``, measured 1 s apart."""
    rng = np.random.default_rng(seed)
    inp = np.maximum(1, np.round(rng.lognormal(np.log(300 * token_scale), 0.6, n))).astype(int)
    out = np.maximum(1, np.round(rng.lognormal(np.log(150 * token_scale), 0.5, n))).astype(int)
    qt = rng.choice(len(QUERY_TYPES), size=n, p=np.asarray(query_mix) / sum(query_mix))
    area = rng.choice(len(AREAS), size=n, p=np.asarray(area_mix) / sum(area_mix))
    dc = rng.integers(0, len(DCS), n)
    arrival = np.sort(rng.uniform(0, 24 * 3600, n))
    e_true = 2e-6 * (inp + 4 * out) * (1.0 + 0.2 * dc)
    s_true = 0.3 + 0.02 * out
    e_pred = e_true * np.exp(rng.normal(0, error_sigma, n))
    s_pred = s_true * np.exp(rng.normal(0, error_sigma, n))
    e_meas = e_true * energy_scale * np.exp(rng.normal(0, 0.02, n))
    s_meas = s_true * service_scale * np.exp(rng.normal(0, 0.02, n))
    recs = []
    for i in range(n):
        recs.append({
            "job_id": f"{prefix}{i:06d}",
            "arrival_s": round(float(arrival[i]), 3),
            "area": AREAS[area[i]],
            "query_type": QUERY_TYPES[qt[i]],
            "input_tokens": int(inp[i]),
            "output_tokens": int(out[i]),
            "sla_s": 30.0,
            "dc": DCS[dc[i]],
            "model_version": model_version,
            "pred_energy_kwh": float(e_pred[i]),
            "pred_service_s": float(s_pred[i]),
            "pred_energy_kwh_p10": float(e_pred[i] * 0.8),
            "pred_energy_kwh_p90": float(e_pred[i] * 1.25),
            "propensity": 0.5,
            "energy_kwh": float(e_meas[i]),
            "service_s": float(s_meas[i]),
            "measured_at": (start + timedelta(seconds=i)).isoformat(),
        })
    return recs
