"""Adapter for the ML.ENERGY leaderboard v3 LLM configurations.

Source: github.com/ml-energy/leaderboard, ``public/data/models/*.json`` (data updated 2026-02-16;
Chung et al., "The ML.ENERGY Benchmark", NeurIPS 2025 Datasets & Benchmarks).  Each JSON file is
one (model, task) with a list of serving ``configurations`` measured on H100 or B200 GPUs.
``mlenergy_llm_configs_extract.csv`` is a flat table of the same scalar fields.

Both readers return one row per configuration with the tidy columns of :data:`TIDY_COLUMNS`:

====================== ==========================================================
column                 meaning
====================== ==========================================================
model                  model id, e.g. ``meta-llama/Llama-3.1-8B-Instruct``
task                   benchmark task (``lm-arena-chat``, ``gpqa``, ...)
total_params_b         total parameters, billions
active_params_b        parameters active per token, billions (MoE < total)
weight_precision       ``bfloat16`` / ``fp8`` ...
gpu_model              ``H100`` / ``B200``
num_gpus               GPUs serving one model replica
batch_size             configured maximum batch (vLLM ``max_num_seqs``)
avg_batch_size         measured mean running batch
avg_output_len         mean output tokens per request
avg_power_w            mean GPU power, watts
energy_per_request_j   joules per request
energy_per_token_j     joules per output token
throughput_tok_s       output tokens per second
median_itl_ms          median inter-token latency, milliseconds (p90/p95/p99 too)
source_file            file the row came from
====================== ==========================================================

Columns whose name ends in a unit (``energy_per_token_joules``, ``median_itl_ms``, ...) are
converted to the units above; other unit suffixes (``_kwh``, ``_us``, ...) are converted when known
and rejected with :class:`~greensched.errors.DataFileError` otherwise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from greensched.errors import DataFileError

__all__ = ["read_mlenergy_configs", "read_mlenergy_json", "TIDY_COLUMNS"]

TIDY_COLUMNS: tuple[str, ...] = (
    "model",
    "task",
    "total_params_b",
    "active_params_b",
    "weight_precision",
    "gpu_model",
    "num_gpus",
    "batch_size",
    "avg_batch_size",
    "avg_output_len",
    "avg_power_w",
    "energy_per_request_j",
    "energy_per_token_j",
    "throughput_tok_s",
    "median_itl_ms",
    "p90_itl_ms",
    "p95_itl_ms",
    "p99_itl_ms",
    "source_file",
)

_ENERGY = {"joules": 1.0, "j": 1.0, "kj": 1e3, "kilojoules": 1e3, "wh": 3600.0, "kwh": 3.6e6}
_POWER = {"watts": 1.0, "w": 1.0, "kw": 1e3, "kilowatts": 1e3}
_LATENCY_MS = {"ms": 1.0, "s": 1e3, "sec": 1e3, "seconds": 1e3, "us": 1e-3}
_RATE = {"sec": 1.0, "s": 1.0, "second": 1.0, "min": 1 / 60.0, "minute": 1 / 60.0}
_PARAMS = {"billions": 1.0, "b": 1.0, "millions": 1e-3, "m": 1e-3}

# tidy name -> (source-name prefix, unit table); the source name is prefix + unit suffix.
_UNIT_FIELDS: dict[str, tuple[str, dict[str, float]]] = {
    "total_params_b": ("total_params_", _PARAMS),
    "active_params_b": ("activated_params_", _PARAMS),
    "avg_power_w": ("avg_power_", _POWER),
    "energy_per_request_j": ("energy_per_request_", _ENERGY),
    "energy_per_token_j": ("energy_per_token_", _ENERGY),
    "throughput_tok_s": ("output_throughput_tokens_per_", _RATE),
    "median_itl_ms": ("median_itl_", _LATENCY_MS),
    "p90_itl_ms": ("p90_itl_", _LATENCY_MS),
    "p95_itl_ms": ("p95_itl_", _LATENCY_MS),
    "p99_itl_ms": ("p99_itl_", _LATENCY_MS),
}
_CANONICAL_SOURCE = {
    "total_params_b": "total_params_billions",
    "active_params_b": "activated_params_billions",
    "avg_power_w": "avg_power_watts",
    "energy_per_request_j": "energy_per_request_joules",
    "energy_per_token_j": "energy_per_token_joules",
    "throughput_tok_s": "output_throughput_tokens_per_sec",
    "median_itl_ms": "median_itl_ms",
    "p90_itl_ms": "p90_itl_ms",
    "p95_itl_ms": "p95_itl_ms",
    "p99_itl_ms": "p99_itl_ms",
}
# Plain fields: tidy name -> (source name, kind)
_PLAIN_FIELDS: dict[str, tuple[str, str]] = {
    "gpu_model": ("gpu_model", "text"),
    "num_gpus": ("num_gpus", "int"),
    "batch_size": ("max_num_seqs", "int"),
    "avg_batch_size": ("avg_batch_size", "float"),
    "avg_output_len": ("avg_output_len", "float"),
}
_MODEL_FIELDS: dict[str, tuple[str, str]] = {
    "task": ("task", "text"),
    "weight_precision": ("weight_precision", "text"),
}


def _match_units(
    names: list[str],
    fields: dict[str, tuple[str, dict[str, float]]],
    *,
    file: Path,
    line_of: Callable[[str | None], int | None],
    column_of: Callable[[str], str],
) -> dict[str, tuple[str, float]]:
    """Find each unit-carrying field among ``names``; tidy name -> (source name, factor).

    ``line_of(name)`` gives the line of a present field (``None``: where a missing one belongs),
    ``column_of(name)`` the column label used in the error.
    """
    found: dict[str, tuple[str, float]] = {}
    for tidy, (prefix, units) in fields.items():
        hits = [n for n in names if n.startswith(prefix)]
        if not hits:
            col = _CANONICAL_SOURCE[tidy]
            raise DataFileError(
                f"missing column {col!r}", file=file, line=line_of(None), column=column_of(col)
            )
        name = hits[0]
        unit = name[len(prefix) :]
        factor = units.get(unit.lower())
        if factor is None:
            raise DataFileError(
                f"unknown unit {unit!r}; expected one of {sorted(units)}",
                file=file,
                line=line_of(name),
                column=column_of(name),
                value=unit,
            )
        found[tidy] = (name, factor)
    return found


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("boolean")
    if isinstance(value, int | float):
        out = float(value)
    else:
        text = str(value).strip()
        if not text:
            raise ValueError("empty")
        out = float(text)
    if not np.isfinite(out):
        raise ValueError("not finite")
    return out


def _convert(value: Any, kind: str) -> Any:
    if kind == "text":
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError("empty")
        if isinstance(value, dict | list):
            raise ValueError("not a scalar")
        return str(value).strip()
    out = _to_float(value)
    if kind == "int":
        if out != round(out):
            raise ValueError("not an integer")
        return int(round(out))
    return out


def _bad_value(file: Path, line: int | None, column: str, value: Any, kind: str) -> DataFileError:
    empty = value is None or (isinstance(value, str) and not value.strip())
    what = (
        "missing value"
        if empty
        else {
            "text": "invalid text value",
            "int": "non-numeric or non-integer value",
            "float": "non-numeric value",
        }[kind]
    )
    expected = {"text": "a non-empty string", "int": "an integer", "float": "a number"}[kind]
    return DataFileError(
        f"{what}; expected {expected}", file=file, line=line, column=column, value=value
    )


def read_mlenergy_configs(csv: str | Path) -> pd.DataFrame:
    """Read the flat ``mlenergy_llm_configs_extract.csv`` table (one row per configuration).

    Raises :class:`DataFileError` with file, 1-based line (header = line 1) and column for a
    missing column, a missing / non-numeric value, or an unknown unit suffix.
    """
    file = Path(csv)
    if not file.is_file():
        raise DataFileError("file not found", file=file)
    try:
        raw = pd.read_csv(file, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as exc:
        raise DataFileError("empty file", file=file, line=1) from exc
    except pd.errors.ParserError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise DataFileError(
            f"malformed CSV: {exc}", file=file, line=int(m.group(1)) if m else None
        ) from exc
    header = [str(c) for c in raw.columns]
    units = _match_units(
        header, _UNIT_FIELDS, file=file, line_of=lambda _name: 1, column_of=lambda c: c
    )
    out: dict[str, Any] = {}
    fields: dict[str, tuple[str, str, float]] = {"model": ("model", "text", 1.0)}
    for tidy, (src, kind) in {**_MODEL_FIELDS, **_PLAIN_FIELDS}.items():
        fields[tidy] = (src, kind, 1.0)
    for tidy, (src, factor) in units.items():
        fields[tidy] = (src, "float", factor)
    for tidy, (src, kind, factor) in fields.items():
        if src not in header:
            raise DataFileError(f"missing column {src!r}", file=file, line=1, column=src)
        col = raw[src]
        if kind == "text":
            vals = col.str.strip()
            bad = (vals == "").to_numpy()
            if bad.any():
                pos = int(np.flatnonzero(bad)[0])
                raise _bad_value(file, pos + 2, src, col.iloc[pos], kind)
            out[tidy] = vals.to_numpy(dtype=object)
            continue
        num = pd.to_numeric(col.str.strip(), errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(num)
        if kind == "int":
            bad |= np.isfinite(num) & (num != np.round(num))
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise _bad_value(file, pos + 2, src, col.iloc[pos], kind)
        out[tidy] = num.astype(np.int64) if kind == "int" else num * factor
    df = pd.DataFrame(out)
    df["source_file"] = file.name
    return _finish(df)


# ----------------------------------------------------------------------------------------------
# JSON


def _config_lines(text: str) -> list[dict[str, int]]:
    """Line numbers of each configuration object and of its keys, for error messages.

    Returns, for every element ``i`` of the top-level ``configurations`` array, a dict mapping
    each key of that object to its 1-based line, plus ``""`` -> the line of the opening brace.
    """
    result: list[dict[str, int]] = []
    stack: list[str] = []  # "{" or "["
    line = 1
    i = 0
    n = len(text)
    last_key_top: str | None = None
    in_configs_depth: int | None = None
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
        elif ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            token = text[i + 1 : j]
            k = j + 1
            while k < n and text[k] in " \t\r\n":
                k += 1
            is_key = k < n and text[k] == ":" and stack and stack[-1] == "{"
            if is_key:
                if len(stack) == 1:
                    last_key_top = token
                if in_configs_depth is not None and len(stack) == in_configs_depth + 1 and result:
                    result[-1].setdefault(token, line)
            line += text.count("\n", i, j)
            i = j
        elif ch in "{[":
            stack.append(ch)
            if ch == "[" and len(stack) == 2 and last_key_top == "configurations":
                in_configs_depth = len(stack)
            elif ch == "{" and in_configs_depth is not None and len(stack) == in_configs_depth + 1:
                result.append({"": line})
        elif ch in "}]":
            if stack:
                stack.pop()
            if in_configs_depth is not None and len(stack) < in_configs_depth:
                in_configs_depth = None
        i += 1
    return result


def _read_json_file(file: Path) -> list[dict[str, Any]]:
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataFileError(f"not UTF-8 text: {exc}", file=file) from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataFileError(f"invalid JSON: {exc.msg}", file=file, line=exc.lineno) from exc
    if not isinstance(doc, dict):
        raise DataFileError("expected a JSON object at top level", file=file, line=1)
    lines = _config_lines(text)

    def top_line(key: str | None) -> int:
        if key is None:
            return 1
        m = re.search(r'^\s*"' + re.escape(key) + r'"\s*:', text, re.MULTILINE)
        return text.count("\n", 0, m.start()) + 1 if m else 1

    row_base: dict[str, Any] = {}
    model_id = doc.get("model_id")
    if model_id is None:
        raise DataFileError("missing field 'model_id'", file=file, line=1, column="model_id")
    try:
        row_base["model"] = _convert(model_id, "text")
    except ValueError as exc:
        raise _bad_value(file, top_line("model_id"), "model_id", model_id, "text") from exc
    for tidy, (src, kind) in _MODEL_FIELDS.items():
        if src not in doc:
            raise DataFileError(f"missing field {src!r}", file=file, line=1, column=src)
        try:
            row_base[tidy] = _convert(doc[src], kind)
        except ValueError as exc:
            raise _bad_value(file, top_line(src), src, doc[src], kind) from exc
    top_names = [k for k in doc if k.startswith(("total_params_", "activated_params_"))]
    for tidy in ("total_params_b", "active_params_b"):
        prefix, units = _UNIT_FIELDS[tidy]
        hits = [k for k in top_names if k.startswith(prefix)]
        if not hits:
            col = _CANONICAL_SOURCE[tidy]
            raise DataFileError(f"missing field {col!r}", file=file, line=1, column=col)
        unit = hits[0][len(prefix) :]
        if unit.lower() not in units:
            raise DataFileError(
                f"unknown unit {unit!r}; expected one of {sorted(units)}",
                file=file,
                line=top_line(hits[0]),
                column=hits[0],
                value=unit,
            )
        try:
            row_base[tidy] = _to_float(doc[hits[0]]) * units[unit.lower()]
        except ValueError as exc:
            raise _bad_value(file, top_line(hits[0]), hits[0], doc[hits[0]], "float") from exc

    configs = doc.get("configurations")
    if not isinstance(configs, list):
        raise DataFileError(
            "missing or non-list field 'configurations'",
            file=file,
            line=top_line("configurations") if configs is not None else 1,
            column="configurations",
        )
    rows: list[dict[str, Any]] = []
    per_config_units = {
        k: v for k, v in _UNIT_FIELDS.items() if k not in ("total_params_b", "active_params_b")
    }
    for idx, cfg in enumerate(configs):
        where: dict[str, int] = lines[idx] if idx < len(lines) else {}
        if not isinstance(cfg, dict):
            raise DataFileError(
                "configuration is not a JSON object",
                file=file,
                line=where.get(""),
                column=f"configurations[{idx}]",
            )

        def line_of(key: str | None, where: dict[str, int] = where) -> int | None:
            return where.get(key, where.get("")) if key else where.get("")

        def column_of(name: str, idx: int = idx) -> str:
            return f"configurations[{idx}].{name}"

        row = dict(row_base)
        names = list(cfg)
        cfg_units = _match_units(
            names,
            per_config_units,
            file=file,
            line_of=line_of,
            column_of=column_of,
        )
        for tidy, (src, kind) in _PLAIN_FIELDS.items():
            if src not in cfg:
                raise DataFileError(
                    f"missing field {src!r}",
                    file=file,
                    line=line_of(None),
                    column=f"configurations[{idx}].{src}",
                )
            try:
                row[tidy] = _convert(cfg[src], kind)
            except ValueError as exc:
                raise _bad_value(
                    file, line_of(src), f"configurations[{idx}].{src}", cfg[src], kind
                ) from exc
        for tidy, (src, factor) in cfg_units.items():
            try:
                row[tidy] = _to_float(cfg[src]) * factor
            except ValueError as exc:
                raise _bad_value(
                    file, line_of(src), f"configurations[{idx}].{src}", cfg[src], "float"
                ) from exc
        row["source_file"] = file.name
        rows.append(row)
    return rows


def read_mlenergy_json(directory: str | Path) -> pd.DataFrame:
    """Read every model JSON of the leaderboard into one row per configuration.

    ``directory`` may be the leaderboard folder (with a ``models/`` sub-folder) or the
    ``models/`` folder itself; a single ``.json`` file is accepted too.  Files without a
    ``configurations`` list at top level and no ``model_id`` (such as ``index.json``) are only
    skipped when found next to a ``models/`` folder.
    """
    path = Path(directory)
    if path.is_file():
        files = [path]
    elif (path / "models").is_dir():
        files = sorted((path / "models").glob("*.json"))
    elif path.is_dir():
        files = sorted(path.glob("*.json"))
    else:
        raise DataFileError("file or directory not found", file=path)
    if not files:
        raise DataFileError("no *.json files found", file=path)
    rows: list[dict[str, Any]] = []
    for f in files:
        rows.extend(_read_json_file(f))
    if not rows:
        raise DataFileError("no configurations found", file=path)
    return _finish(pd.DataFrame(rows))


def _finish(df: pd.DataFrame) -> pd.DataFrame:
    df = df.loc[:, list(TIDY_COLUMNS)].reset_index(drop=True)
    for col in ("model", "task", "weight_precision", "gpu_model", "source_file"):
        df[col] = df[col].astype(str)
    for col in ("num_gpus", "batch_size"):
        df[col] = df[col].astype(np.int64)
    for col in TIDY_COLUMNS:
        if col not in (
            "model",
            "task",
            "weight_precision",
            "gpu_model",
            "source_file",
            "num_gpus",
            "batch_size",
        ):
            df[col] = df[col].astype(np.float64)
    return df
