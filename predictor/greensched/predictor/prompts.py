"""Compact text prompts: one job and the state of every DC in its hour.

One prompt per job; the model predicts all DCs from it (multi-output head), so the DC state is
listed in the model's DC order.  Every number is rounded to a small integer, which the MiniLM
(BERT uncased WordPiece) vocabulary holds as a single token for 0..341::

    <query_type> <area> in <input_tokens> out <output_tokens|?> sla <sla_s> ; <dc block> ; ...

    dc block = <carbon> <price> <renewable> <pue> <util>   (blocks in the model's DC order)
      carbon     grid carbon intensity in 10 g/kWh      (kg/kWh × 100, rounded)
      price      electricity price in US cents/kWh      (USD/kWh × 100, rounded)
      renewable  on-site renewable share in %           (× 100, rounded)
      pue        PUE overhead in %                      ((PUE − 1) × 100, rounded)
      util       utilisation of the binding resource %  (× 100, rounded)

Example (2 DCs)::

    chat area1 in 512 out 128 sla 30 ; 41 9 20 12 50 ; 23 12 0 30 64

Numbers are clipped to [−99, 999] (negative prices stay signed).  With the MiniLM tokenizer a
9-DC prompt takes 68–70 tokens including ``[CLS]``/``[SEP]``, 81 in a deliberately bad case
(measured in ``tests/predictor/test_prompts.py``; the budget is 96).  A DC is identified by
the position of its block (no index: 9 tokens fewer, and inference time grows with length).
The RTT is not in the text: it depends on the area, which is, and the LoRA model also receives
the exact numeric features.
The function is pure and deterministic: the same row always gives the same string.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from greensched.predictor.dataset import dc_column

__all__ = ["PROMPT_FIELDS", "prompt_fields", "render_prompt", "render_prompts"]

#: (state field, scale, offset) in prompt order; value shown = round((x − offset) × scale).
PROMPT_FIELDS: tuple[tuple[str, float, float], ...] = (
    ("carbon_kg_per_kwh", 100.0, 0.0),
    ("price_usd_per_kwh", 100.0, 0.0),
    ("renewable_share", 100.0, 0.0),
    ("pue", 100.0, 1.0),
    ("utilization", 100.0, 0.0),
)


def prompt_fields(names: Sequence[str] | None) -> tuple[tuple[str, float, float], ...]:
    """The :data:`PROMPT_FIELDS` entries named in ``names`` (in prompt order; ``None``: all).

    A shorter prompt context (fewer state fields per DC block) for ablations; unknown names
    raise ``ValueError`` naming the valid ones.
    """
    if names is None:
        return PROMPT_FIELDS
    known = [f for f, _, _ in PROMPT_FIELDS]
    bad = [n for n in names if n not in known]
    if bad:
        raise ValueError(f"prompt field {bad[0]!r} is not known; expected some of "
                         f"{', '.join(known)}")
    return tuple(e for e in PROMPT_FIELDS if e[0] in set(names))


def _num(x: Any, scale: float = 1.0, offset: float = 0.0) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "?"
    if not math.isfinite(v):
        return "?"
    return str(int(np.clip(round((v - offset) * scale), -99, 999)))


def _tokens(x: Any) -> str:
    """Token counts exact (they drive energy); unknown → '?'."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "?"
    return str(int(round(v))) if math.isfinite(v) else "?"


def render_prompt(job: Mapping[str, Any], dcs: Sequence[str],
                  extra_fields: Sequence[str] = (),
                  fields: Sequence[tuple[str, float, float]] = PROMPT_FIELDS) -> str:
    """Render one dataset row (job fields + ``<field>__<dc>`` state) as prompt text.

    Parameters
    ----------
    job
        A mapping with ``query_type``, ``area``, ``input_tokens``, ``output_tokens`` (may be
        missing/NaN → ``?``), ``sla_s`` and the state columns of every DC in ``dcs``.
    dcs
        DC identifiers in the model's output order.
    extra_fields
        DC descriptor fields (``gpu_memory_gb``, ``model_params_b``, ...) appended to each DC
        block as rounded numbers, so that the text describes each DC by what serves the job
        there (needed to predict for a DC the model never saw).
    fields
        The state fields of each DC block (default all of :data:`PROMPT_FIELDS`; see
        :func:`prompt_fields` for a shorter context).
    """
    head = (f"{job['query_type']} {job['area']} in {_tokens(job['input_tokens'])} "
            f"out {_tokens(job.get('output_tokens'))} sla {_num(job['sla_s'])}")
    blocks = [" ".join([_num(job[dc_column(f, d)], s, o) for f, s, o in fields]
                       + [_num(job.get(dc_column(f, d))) for f in extra_fields])
              for d in dcs]
    return " ; ".join([head, *blocks])


def render_prompts(df: pd.DataFrame, dcs: Sequence[str],
                   extra_fields: Sequence[str] = (),
                   fields: Sequence[tuple[str, float, float]] = PROMPT_FIELDS) -> list[str]:
    """:func:`render_prompt` for every row of a dataset frame, in row order."""
    cols = ["query_type", "area", "input_tokens", "output_tokens", "sla_s"]
    cols += [dc_column(f, d) for d in dcs for f, _, _ in fields]
    cols += [dc_column(f, d) for d in dcs for f in extra_fields]
    recs = df.reindex(columns=cols).to_dict("records")
    return [render_prompt(r, dcs, extra_fields, fields) for r in recs]
