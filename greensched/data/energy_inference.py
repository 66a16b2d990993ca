"""Adapter for the measured LLM inference energy of Wilkins, Keshav & Mortier.

Source data: github.com/grantwilkins/energy-inference (files ``all-input-stats.csv``,
``all-output-stats.csv`` and ``all-stats.csv``), the measurements behind "Offline energy-optimal
LLM serving: workload-based energy models for LLM inference on heterogeneous systems"
(arXiv 2407.04014).  Each row is one measured phase of one run.

:func:`read_energy_inference` turns one file, or a directory of them, into a tidy table with one
row per measured run:

============== =============================================================================
column         meaning
============== =============================================================================
system         hardware label as in the source ("Palmetto Intel+A100", "M1-Pro", ...)
gpu            accelerator derived from ``system`` ("A100", "V100", "M1-Pro", ...)
model          model label as in the source ("Llama-2 (7B)", ...)
model_params_b total parameters in billions, parsed from the model label
num_gpus       number of GPUs used
batch_size     the ``Batch Size`` column as recorded (see note below)
input_tokens   ``Number of Input Tokens``
output_tokens  ``Number of Output Tokens`` (``Output Token Limit`` in the input sweep)
total_tokens   ``Total Number of Tokens`` when present (prompt + generated text, re-tokenised)
runtime_s      wall-clock runtime of the phase, seconds
cpu_energy_j   CPU package energy (RAPL), joules; can be slightly negative in the source
gpu_energy_j   GPU energy (NVML), joules
energy_j       ``cpu_energy_j + gpu_energy_j``
energy_kwh     ``energy_j / 3.6e6``
phase          the source ``Phase`` label
kind           ``"inference"`` or ``"startup"`` (tokenizer / model load)
iteration      repeat index; iteration 0 is the first (warm-up) run of a setting
source_file    file name the row came from
============== =============================================================================

Notes on the source data (checked against the files, 2026-11 copy):

* Inference rows have ``Phase`` ``start-inference-<setting>-<iteration>`` on the CUDA systems
  and ``inference-<setting>-<iteration>`` on ``M1-Pro``; both are kept as inference rows.
* ``all-stats.csv`` is the union of the two sweep files; when a directory is read, rows measured
  identically in several files are kept once (first file in name order).
* The ``Batch Size`` column (32 everywhere) is the batch size handed to the Hugging Face
  pipeline; every run generates a single sequence for a single prompt.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from greensched.errors import DataFileError

__all__ = [
    "read_energy_inference",
    "gpu_of_system",
    "params_of_model",
    "TIDY_COLUMNS",
]

TIDY_COLUMNS: tuple[str, ...] = (
    "system",
    "gpu",
    "model",
    "model_params_b",
    "num_gpus",
    "batch_size",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "runtime_s",
    "cpu_energy_j",
    "gpu_energy_j",
    "energy_j",
    "energy_kwh",
    "phase",
    "kind",
    "iteration",
    "source_file",
)

# Quantities whose header carries a unit, e.g. "Runtime (s)": base name -> (tidy name, units).
_TIME_UNITS = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "min": 60.0, "h": 3600.0}
_ENERGY_UNITS = {"j": 1.0, "kj": 1e3, "mj": 1e6, "wh": 3600.0, "kwh": 3.6e6}
_UNIT_COLUMNS: dict[str, tuple[str, dict[str, float]]] = {
    "runtime": ("runtime_s", _TIME_UNITS),
    "cpu energy": ("cpu_energy_j", _ENERGY_UNITS),
    "gpu energy": ("gpu_energy_j", _ENERGY_UNITS),
}
_CANONICAL_HEADER = {
    "runtime_s": "Runtime (s)",
    "cpu_energy_j": "CPU Energy (J)",
    "gpu_energy_j": "GPU Energy (J)",
}
# Plain integer columns: tidy name -> accepted source headers (first found wins).
_INT_COLUMNS: dict[str, tuple[str, ...]] = {
    "output_tokens": ("Number of Output Tokens", "Output Token Limit"),
    "input_tokens": ("Number of Input Tokens",),
    "iteration": ("Iteration",),
    "num_gpus": ("Number of GPUs",),
    "batch_size": ("Batch Size",),
}
_OPTIONAL_INT_COLUMNS: dict[str, tuple[str, ...]] = {
    "total_tokens": ("Total Number of Tokens",),
}
_TEXT_COLUMNS: dict[str, str] = {"phase": "Phase", "model": "Model", "system": "System"}

_INFERENCE_RE = re.compile(r"^\s*(?:start-)?inference\b", re.IGNORECASE)
_STARTUP_RE = re.compile(r"^\s*(?:tokenizer|model[ -]load|load[ -]model)\s*$", re.IGNORECASE)
_HEADER_UNIT_RE = re.compile(r"^\s*(?P<base>[^()]*?)\s*\((?P<unit>[^()]*)\)\s*$")

# Total parameter counts (billions) of mixture-of-experts labels that cannot be read as n x m.
_MOE_TOTAL_PARAMS_B = {
    "8x7b": 46.7,  # Mixtral 8x7B (Mistral AI model card)
    "8x22b": 141.0,  # Mixtral 8x22B (Mistral AI model card)
}

_GPU_PATTERNS: tuple[tuple[str, str], ...] = (
    ("B200", "B200"),
    ("H200", "H200"),
    ("H100", "H100"),
    ("A100", "A100"),
    ("V100", "V100"),
    ("L40", "L40"),
    ("A10", "A10"),
    ("T4", "T4"),
    ("M1", "M1-Pro"),
    ("M2", "M2"),
)


def gpu_of_system(system: str) -> str:
    """Accelerator name of a source ``System`` label (``"Swing AMD+A100"`` -> ``"A100"``).

    Unknown labels are returned unchanged.
    """
    up = str(system).upper()
    for token, name in _GPU_PATTERNS:
        if token in up:
            return name
    return str(system)


def params_of_model(model: str) -> float:
    """Total parameters (billions) parsed from a label such as ``"Llama-2 (70B)"``.

    Mixture-of-experts labels ``"Mixtral (8x7B)"`` use the published total parameter count.
    Returns NaN when the label carries no size.
    """
    text = str(model)
    moe = re.search(r"(\d+)\s*x\s*(\d+(?:\.\d+)?)\s*B\b", text, re.IGNORECASE)
    if moe:
        key = f"{moe.group(1)}x{moe.group(2)}b".lower()
        if key in _MOE_TOTAL_PARAMS_B:
            return _MOE_TOTAL_PARAMS_B[key]
        return float(moe.group(1)) * float(moe.group(2))
    dense = re.search(r"(\d+(?:\.\d+)?)\s*B\b", text, re.IGNORECASE)
    if dense:
        return float(dense.group(1))
    return float("nan")


def _csv_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.glob("*.csv") if p.is_file())
        if not files:
            raise DataFileError("no *.csv files in directory", file=path)
        return files
    if not path.exists():
        raise DataFileError("file not found", file=path)
    return [path]


def _find_unit_columns(header: list[str], file: Path) -> dict[str, tuple[str, float]]:
    """Map tidy name -> (source header, factor to SI) for the unit-carrying quantities."""
    found: dict[str, tuple[str, float]] = {}
    for col in header:
        m = _HEADER_UNIT_RE.match(col)
        if not m:
            continue
        base = m.group("base").strip().lower()
        if base not in _UNIT_COLUMNS:
            continue
        tidy, units = _UNIT_COLUMNS[base]
        unit = m.group("unit").strip()
        factor = units.get(unit.lower())
        if factor is None:
            raise DataFileError(
                f"unknown unit {unit!r} for {m.group('base').strip()}; "
                f"expected one of {sorted(units)}",
                file=file,
                line=1,
                column=col,
                value=unit,
            )
        found[tidy] = (col, factor)
    for base, (tidy, units) in _UNIT_COLUMNS.items():
        if tidy not in found:
            plain = [c for c in header if c.strip().lower() == base]
            if plain:
                raise DataFileError(
                    f"column has no unit; expected e.g. '{plain[0].strip()} ({next(iter(units))})'",
                    file=file,
                    line=1,
                    column=plain[0],
                )
            example = _CANONICAL_HEADER[tidy]
            raise DataFileError(f"missing column {example!r}", file=file, line=1, column=example)
    return found


def _pick(header: list[str], names: Iterable[str]) -> str | None:
    for name in names:
        if name in header:
            return name
    return None


def _numeric(raw: pd.Series, file: Path, column: str, *, integer: bool) -> np.ndarray:
    """Parse a text column as numbers; the first bad cell raises with its 1-based line."""
    text = raw.str.strip()
    values = pd.to_numeric(text, errors="coerce")
    bad = values.isna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        cell = raw.iloc[pos]
        what = "missing value" if cell is None or str(cell).strip() == "" else "non-numeric value"
        raise DataFileError(
            f"{what}; expected a number", file=file, line=pos + 2, column=column, value=cell
        )
    out = values.to_numpy(dtype=np.float64)
    if integer:
        frac = out != np.round(out)
        if frac.any():
            pos = int(np.flatnonzero(frac)[0])
            raise DataFileError(
                "expected an integer", file=file, line=pos + 2, column=column, value=raw.iloc[pos]
            )
    return out


def _read_one(file: Path) -> pd.DataFrame:
    try:
        raw = pd.read_csv(file, dtype=str, keep_default_na=False, skipinitialspace=False)
    except pd.errors.EmptyDataError as exc:
        raise DataFileError("empty file", file=file, line=1) from exc
    except pd.errors.ParserError as exc:
        m = re.search(r"line (\d+)", str(exc))
        line = int(m.group(1)) if m else None
        raise DataFileError(f"malformed CSV: {exc}", file=file, line=line) from exc
    except UnicodeDecodeError as exc:
        raise DataFileError(f"not UTF-8 text: {exc}", file=file) from exc
    header = [str(c) for c in raw.columns]
    out: dict[str, object] = {}

    for tidy, src in _TEXT_COLUMNS.items():
        if src not in header:
            raise DataFileError(f"missing column {src!r}", file=file, line=1, column=src)
        col = raw[src].str.strip()
        empty = (col == "").to_numpy()
        if empty.any():
            pos = int(np.flatnonzero(empty)[0])
            raise DataFileError(
                "missing value", file=file, line=pos + 2, column=src, value=raw[src].iloc[pos]
            )
        out[tidy] = col.to_numpy(dtype=object)

    unit_cols = _find_unit_columns(header, file)
    for tidy, (src, factor) in unit_cols.items():
        out[tidy] = _numeric(raw[src], file, src, integer=False) * factor

    for tidy, names in _INT_COLUMNS.items():
        picked = _pick(header, names)
        if picked is None:
            raise DataFileError(f"missing column {names[0]!r}", file=file, line=1, column=names[0])
        out[tidy] = _numeric(raw[picked], file, picked, integer=True).astype(np.int64)
    for tidy, names in _OPTIONAL_INT_COLUMNS.items():
        picked = _pick(header, names)
        if picked is None:
            out[tidy] = np.full(len(raw), -1, dtype=np.int64)
        else:
            out[tidy] = _numeric(raw[picked], file, picked, integer=True).astype(np.int64)

    phases = pd.Series(out["phase"], dtype=object)
    is_inf = phases.str.match(_INFERENCE_RE).to_numpy(dtype=bool)
    is_start = phases.str.match(_STARTUP_RE).to_numpy(dtype=bool)
    unknown = ~(is_inf | is_start)
    if unknown.any():
        pos = int(np.flatnonzero(unknown)[0])
        raise DataFileError(
            "unknown phase; expected 'start-inference-*', 'inference-*', 'tokenizer' "
            "or 'model load'",
            file=file,
            line=pos + 2,
            column="Phase",
            value=phases.iloc[pos],
        )
    out["kind"] = np.where(is_inf, "inference", "startup").astype(object)
    df = pd.DataFrame(out)
    for tidy in ("runtime_s", "gpu_energy_j"):
        neg = df[tidy].to_numpy() < 0
        if neg.any():
            pos = int(np.flatnonzero(neg)[0])
            src = unit_cols[tidy][0]
            raise DataFileError(
                "negative value; expected >= 0",
                file=file,
                line=pos + 2,
                column=src,
                value=raw[src].iloc[pos],
            )
    df["source_file"] = file.name
    return df


def read_energy_inference(
    path_or_dir: str | Path,
    *,
    include_startup: bool = False,
    deduplicate: bool = True,
) -> pd.DataFrame:
    """Read Wilkins et al. energy measurements into a tidy table (see module docstring).

    Parameters
    ----------
    path_or_dir
        One CSV file, or a directory whose ``*.csv`` files are all read (in name order).
    include_startup
        Keep the ``tokenizer`` / ``model load`` rows (``kind == "startup"``); by default only
        inference runs are returned.
    deduplicate
        Drop rows that repeat an identical measurement already read from an earlier file
        (``all-stats.csv`` repeats the two sweep files).

    Raises
    ------
    DataFileError
        Naming file, 1-based line (header = line 1) and column, for a missing column, a
        non-numeric or missing value, a negative runtime / GPU energy, an unknown phase label
        or a unit that is not understood.
    """
    files = _csv_files(Path(path_or_dir))
    frames = [_read_one(f) for f in files]
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if deduplicate and len(frames) > 1:
        key = df[["system", "model", "phase", "iteration", "input_tokens", "output_tokens"]].copy()
        key["r"] = df["runtime_s"].round(6)
        key["g"] = df["gpu_energy_j"].round(3)
        df = df.loc[~key.duplicated(keep="first").to_numpy()]
    if not include_startup:
        df = df.loc[df["kind"].to_numpy() == "inference"]
    df = df.reset_index(drop=True)
    df["gpu"] = df["system"].map(gpu_of_system).astype(str)
    df["model_params_b"] = df["model"].map(params_of_model).astype(np.float64)
    df["energy_j"] = df["cpu_energy_j"] + df["gpu_energy_j"]
    df["energy_kwh"] = df["energy_j"] / 3.6e6
    return df.loc[:, list(TIDY_COLUMNS)]
