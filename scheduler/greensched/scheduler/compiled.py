"""Matrix form of a built Green-LLM model, with label ↔ column/row maps (split from the planner)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from greensched.scheduler.backends import label_maps, make_backend

if TYPE_CHECKING:
    import linopy

    from greensched.scheduler.greenllm import GreenLLMModel

__all__ = ["_Compiled", "_load_backend"]


class _Compiled:
    """Matrix form of a GreenLLMModel with label ↔ column/row maps."""

    def __init__(self, gm: GreenLLMModel) -> None:
        self.gm = gm
        m = gm.model
        mat = m.matrices
        self.A = mat.A
        b = np.asarray(mat.b, dtype=float)
        sense = np.asarray(mat.sense)
        self.row_lower = np.where(sense == "<", -np.inf, b)
        self.row_upper = np.where(sense == ">", np.inf, b)
        self.lb = np.asarray(mat.lb, dtype=float)
        self.ub = np.asarray(mat.ub, dtype=float)
        vlabels = np.asarray(mat.vlabels)
        self.n = len(vlabels)
        self.col_of, self.row_of = label_maps(m)

    def vector(self, expr: linopy.LinearExpression) -> tuple[np.ndarray, float]:
        """Dense column-coefficient vector and constant of a scalar-summed expression."""
        v = np.asarray(expr.vars).ravel()
        c = np.asarray(expr.coeffs).ravel()
        keep = v >= 0
        out = np.zeros(self.n)
        np.add.at(out, self.col_of[v[keep]], c[keep])
        return out, float(np.asarray(expr.const).sum())

    def values(self, var: linopy.Variable, x: np.ndarray) -> xr.DataArray:
        labels = var.labels
        arr = np.where(labels.values >= 0, x[self.col_of[np.maximum(labels.values, 0)]], np.nan)
        return xr.DataArray(arr, coords=labels.coords, dims=labels.dims)

    def evaluate(self, expr: linopy.LinearExpression, x: np.ndarray) -> xr.DataArray:
        """Value of a (possibly labelled) linear expression at column values ``x``."""
        vars_ = expr.vars
        v = vars_.values
        coeffs = expr.coeffs.values
        vals = np.where(v >= 0, x[self.col_of[np.maximum(v, 0)]], 0.0) * coeffs
        term_axis = vars_.dims.index("_term")
        total = vals.sum(axis=term_axis) + np.asarray(expr.const.values)
        dims = [d for d in vars_.dims if d != "_term"]
        return xr.DataArray(total, coords={d: vars_.coords[d] for d in dims}, dims=dims)

    def duals(self, row_duals: np.ndarray) -> dict[str, xr.DataArray]:
        out = {}
        for name in self.gm.model.constraints:
            labels = self.gm.model.constraints[name].labels
            arr = np.where(
                labels.values >= 0, row_duals[self.row_of[np.maximum(labels.values, 0)]], np.nan
            )
            out[name] = xr.DataArray(arr, coords=labels.coords, dims=labels.dims)
        return out


def _load_backend(comp: _Compiled, solver: str, threads: int | None):  # type: ignore[no-untyped-def]
    backend = make_backend(solver, threads)
    backend.load(comp.A, comp.row_lower, comp.row_upper, comp.lb, comp.ub)
    return backend
