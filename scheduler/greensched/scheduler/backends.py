"""LP solver backends: HiGHS (default) and Gurobi (optional, when importable and licensed).

Both take the same matrix form (min cᵀx s.t. row_lower ≤ A x ≤ row_upper, lb ≤ x ≤ ub), can
change the objective and append a row between solves (for the lexicographic phases, warm-started),
and return primal values and row duals.  Row duals follow the convention
∂(optimal objective)/∂(row bound): a binding ``≤`` row of a minimisation has a dual ≤ 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from greensched.errors import SolverUnavailableError

__all__ = [
    "GUROBI_SIZE_LIMIT",
    "BackendSolution",
    "GurobiBackend",
    "HighsBackend",
    "LPBackend",
    "SolveStatus",
    "available_solvers",
    "label_maps",
    "native_stdout_silenced",
    "set_highs_threads",
    "load_highs_model",
    "make_backend",
]

#: Variables and constraints allowed by the size-limited licence shipped with pip's gurobipy.
GUROBI_SIZE_LIMIT = 2000


class SolveStatus(StrEnum):
    """Outcome of a solve."""

    OPTIMAL = "optimal"
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    INFEASIBLE_OR_UNBOUNDED = "infeasible_or_unbounded"
    TIME_LIMIT = "time_limit"
    ERROR = "error"

    @property
    def is_ok(self) -> bool:
        """True when a solution may be read."""
        return self is SolveStatus.OPTIMAL


@dataclass
class BackendSolution:
    """Raw solver output: status, primal column values and row duals (None when not ok)."""

    status: SolveStatus
    x: np.ndarray | None
    row_duals: np.ndarray | None
    objective: float | None
    seconds: float
    message: str = ""


class LPBackend(Protocol):
    """What the planner needs from a solver."""

    name: str

    def load(
        self,
        A: sp.csr_array,
        row_lower: np.ndarray,
        row_upper: np.ndarray,
        lb: np.ndarray,
        ub: np.ndarray,
    ) -> None:
        """Load the constraint matrix and bounds (objective zero)."""

    def set_objective(self, c: np.ndarray) -> None:
        """Replace the objective coefficients (minimisation)."""

    def add_row(self, coeffs: np.ndarray, upper: float) -> None:
        """Append the row coeffsᵀ x ≤ upper (dense coefficient vector)."""

    def remove_added_rows(self) -> None:
        """Drop every row appended with :meth:`add_row`."""

    def solve(self, time_limit_s: float | None = None, *, warm: bool = False) -> BackendSolution:
        """Solve from the current state (warm-started where the solver can).

        ``warm`` says the current basis stays primal feasible (only the objective changed and
        rows satisfied by the last solution were added), as in later lexicographic phases.
        """


def load_highs_model(
    highs: Any,
    A: sp.sparray | sp.spmatrix,
    row_lower: np.ndarray,
    row_upper: np.ndarray,
    lb: np.ndarray,
    ub: np.ndarray,
    cost: np.ndarray | None = None,
) -> int:
    """Pass the LP min costᵀx s.t. row_lower ≤ A x ≤ row_upper, lb ≤ x ≤ ub to a ``highspy.Highs``.

    The one place that turns the matrix form into a ``HighsLp`` (column-wise CSC, int32
    indices); used by :class:`HighsBackend` (the planner), the batch IP and the benchmarks.
    ``cost`` defaults to zeros (set it later with ``changeColsCost``).  Returns the number of
    columns.
    """
    import highspy

    csc = sp.csc_array(A)
    n_col, n_row = int(csc.shape[1]), int(csc.shape[0])
    lp = highspy.HighsLp()
    lp.num_col_ = n_col
    lp.num_row_ = n_row
    lp.col_cost_ = np.zeros(n_col) if cost is None else np.asarray(cost, dtype=float)
    lp.col_lower_ = np.asarray(lb, dtype=float)
    lp.col_upper_ = np.asarray(ub, dtype=float)
    lp.row_lower_ = np.asarray(row_lower, dtype=float)
    lp.row_upper_ = np.asarray(row_upper, dtype=float)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = csc.indptr.astype(np.int32)
    lp.a_matrix_.index_ = csc.indices.astype(np.int32)
    lp.a_matrix_.value_ = csc.data.astype(float)
    highs.passModel(lp)
    return n_col


#: Environment variable that lets the solvers print their banners and logs
#: (``greensched --verbose`` sets it).
VERBOSE_ENV = "GREENSCHED_VERBOSE"
_BANNER_DONE = False


def solver_verbose() -> bool:
    """True when solver output was asked for (``$GREENSCHED_VERBOSE`` set and not ``0``)."""
    return os.environ.get(VERBOSE_ENV, "0") not in ("", "0")


@contextlib.contextmanager
def native_stdout_silenced() -> Iterator[None]:
    """Send what native code writes to file descriptor 1 (C's stdout, whatever ``sys.stdout``
    is) to /dev/null for the block."""
    fd = 1
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    try:
        saved = os.dup(fd)
    except OSError:  # no descriptor 1 (a daemon): nothing to silence
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).fflush(None)
        os.dup2(saved, fd)
        os.close(saved)
        os.close(null)


def silence_highs_banner() -> None:
    """HiGHS prints its copyright banner on stdout when the first ``Highs`` object of a process
    is made (it breaks progress bars and machine-read output): make that first object with
    stdout silenced, unless :func:`solver_verbose`.  Idempotent and cheap after the first call.
    """
    global _BANNER_DONE
    if _BANNER_DONE or solver_verbose():
        return
    import highspy

    with native_stdout_silenced():
        highspy.Highs()
    _BANNER_DONE = True


class HighsBackend:
    """HiGHS through highspy, dual simplex (IPM measured 3.6× slower on these LPs)."""

    name = "highs"

    def __init__(self, threads: int | None = None) -> None:
        import highspy

        self._hs = highspy
        silence_highs_banner()
        self.h = highspy.Highs()
        self.h.setOptionValue("output_flag", solver_verbose())
        self.h.setOptionValue("solver", "simplex")
        set_highs_threads(self.h, threads)
        self.n = 0
        self._added = 0

    def load(
        self,
        A: sp.csr_array,
        row_lower: np.ndarray,
        row_upper: np.ndarray,
        lb: np.ndarray,
        ub: np.ndarray,
    ) -> None:
        self.n = load_highs_model(self.h, A, row_lower, row_upper, lb, ub)

    def set_objective(self, c: np.ndarray) -> None:
        idx = np.arange(self.n, dtype=np.int32)
        self.h.changeColsCost(self.n, idx, np.asarray(c, dtype=float))

    def add_row(self, coeffs: np.ndarray, upper: float) -> None:
        nz = np.flatnonzero(coeffs)
        self.h.addRow(-np.inf, float(upper), len(nz), nz.astype(np.int32), coeffs[nz].astype(float))
        self._added += 1

    def remove_added_rows(self) -> None:
        if self._added:
            total = self.h.getNumRow()
            idx = np.arange(total - self._added, total, dtype=np.int32)
            self.h.deleteRows(len(idx), idx)
            self._added = 0

    def solve(self, time_limit_s: float | None = None, *, warm: bool = False) -> BackendSolution:
        hs = self._hs
        if time_limit_s is not None:
            self.h.setOptionValue("time_limit", float(time_limit_s))
        # After an objective change the last basis is still primal feasible, so primal simplex
        # continues from it; measured on a 35x35x5x24 lexicographic solve: phase 2 took 5.4 s
        # with primal vs 46 s with dual simplex.
        self.h.setOptionValue("simplex_strategy", 4 if warm else 1)
        t0 = time.perf_counter()
        self.h.run()
        seconds = time.perf_counter() - t0
        ms = self.h.getModelStatus()
        mapping = {
            hs.HighsModelStatus.kOptimal: SolveStatus.OPTIMAL,
            hs.HighsModelStatus.kInfeasible: SolveStatus.INFEASIBLE,
            hs.HighsModelStatus.kUnbounded: SolveStatus.UNBOUNDED,
            hs.HighsModelStatus.kUnboundedOrInfeasible: SolveStatus.INFEASIBLE_OR_UNBOUNDED,
            hs.HighsModelStatus.kTimeLimit: SolveStatus.TIME_LIMIT,
        }
        status = mapping.get(ms, SolveStatus.ERROR)
        if not status.is_ok:
            return BackendSolution(
                status, None, None, None, seconds, self.h.modelStatusToString(ms)
            )
        sol = self.h.getSolution()
        return BackendSolution(
            status,
            np.asarray(sol.col_value, dtype=float),
            np.asarray(sol.row_dual, dtype=float),
            float(self.h.getInfo().objective_function_value),
            seconds,
        )


class GurobiBackend:
    """Gurobi through gurobipy's matrix API (optional; pip's licence is size-limited)."""

    name = "gurobi"

    def __init__(self, threads: int | None = None) -> None:
        try:
            import gurobipy as gp
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise SolverUnavailableError(
                "solver 'gurobi' needs gurobipy: pip install 'greensched[gurobi]'"
            ) from exc
        self.gp = gp
        try:
            self.env = gp.Env(empty=True)
            self.env.setParam("OutputFlag", 0)
            if threads is not None:
                self.env.setParam("Threads", int(threads))
            self.env.start()
        except gp.GurobiError as exc:  # pragma: no cover - licence problems
            raise SolverUnavailableError(f"Gurobi could not start: {exc}") from exc
        self.model = gp.Model(env=self.env)
        self.vars: Any = None
        self._added: list = []

    def _licence_error(self, exc: Exception, nvars: int, ncons: int) -> SolverUnavailableError:
        return SolverUnavailableError(
            f"Gurobi refused the model ({nvars} variables, {ncons} constraints): {exc}. "
            f"pip's gurobipy licence allows at most {GUROBI_SIZE_LIMIT} variables and "
            f"{GUROBI_SIZE_LIMIT} constraints; use --solver highs or a full Gurobi licence"
        )

    def load(
        self,
        A: sp.csr_array,
        row_lower: np.ndarray,
        row_upper: np.ndarray,
        lb: np.ndarray,
        ub: np.ndarray,
    ) -> None:
        gp = self.gp
        m = self.model
        n = A.shape[1]
        self.vars = m.addMVar(n, lb=lb, ub=ub)
        eq = np.isfinite(row_lower) & np.isfinite(row_upper) & (row_lower == row_upper)
        le = np.isfinite(row_upper) & ~eq
        ge = np.isfinite(row_lower) & ~eq
        A = sp.csr_array(A)
        for mask, sense, rhs in ((eq, "=", row_upper), (le, "<", row_upper), (ge, ">", row_lower)):
            if mask.any():
                m.addMConstr(sp.csr_matrix(A[mask]), self.vars, sense, rhs[mask])
        # Remember the original order of the rows for the duals.
        self._row_order = np.concatenate(
            [np.flatnonzero(eq), np.flatnonzero(le), np.flatnonzero(ge)]
        )
        self._nrows = A.shape[0]
        m.update()
        self._shape = (n, A.shape[0])
        del gp

    def set_objective(self, c: np.ndarray) -> None:
        assert self.vars is not None
        self.vars.Obj = np.asarray(c, dtype=float)

    def add_row(self, coeffs: np.ndarray, upper: float) -> None:
        assert self.vars is not None
        nz = np.flatnonzero(coeffs)
        expr = self.gp.LinExpr(coeffs[nz].tolist(), [self.vars[int(i)].item() for i in nz])
        self._added.append(self.model.addLConstr(expr, "<", float(upper)))
        self._nrows += 1
        self._row_order = np.append(self._row_order, self._nrows - 1)

    def remove_added_rows(self) -> None:
        for constr in self._added:
            self.model.remove(constr)
        n = len(self._added)
        if n:
            self._nrows -= n
            self._row_order = self._row_order[:-n]
        self._added = []
        self.model.update()

    def solve(self, time_limit_s: float | None = None, *, warm: bool = False) -> BackendSolution:
        gp = self.gp
        grb = gp.GRB
        if time_limit_s is not None:
            self.model.Params.TimeLimit = float(time_limit_s)
        self.model.Params.Method = 0 if warm else -1  # primal simplex continues a feasible basis
        t0 = time.perf_counter()
        try:
            self.model.optimize()
        except gp.GurobiError as exc:
            if getattr(exc, "errno", None) == 10010 or "size-limited" in str(exc):
                raise self._licence_error(exc, *self._shape) from exc
            raise
        seconds = time.perf_counter() - t0
        mapping = {
            grb.OPTIMAL: SolveStatus.OPTIMAL,
            grb.INFEASIBLE: SolveStatus.INFEASIBLE,
            grb.UNBOUNDED: SolveStatus.UNBOUNDED,
            grb.INF_OR_UNBD: SolveStatus.INFEASIBLE_OR_UNBOUNDED,
            grb.TIME_LIMIT: SolveStatus.TIME_LIMIT,
        }
        status = mapping.get(self.model.Status, SolveStatus.ERROR)
        if not status.is_ok:
            return BackendSolution(
                status, None, None, None, seconds, f"gurobi status {self.model.Status}"
            )
        x = np.asarray(self.vars.X, dtype=np.float64)
        pi = np.asarray(self.model.getAttr("Pi", self.model.getConstrs()), dtype=float)
        duals = np.empty(self._nrows)
        duals[self._row_order] = pi
        return BackendSolution(status, x, duals, float(self.model.ObjVal), seconds)


def available_solvers() -> list[str]:
    """Names of the backends that can be imported here."""
    names = []
    try:
        import highspy  # noqa: F401

        names.append("highs")
    except ImportError:  # pragma: no cover
        pass
    try:
        import gurobipy  # noqa: F401

        names.append("gurobi")
    except ImportError:
        pass
    return names


def make_backend(name: str, threads: int | None = None) -> LPBackend:
    """Create a backend by name (``highs`` or ``gurobi``)."""
    key = name.lower()
    if key == "highs":
        return HighsBackend(threads)
    if key == "gurobi":
        return GurobiBackend(threads)
    raise SolverUnavailableError(f"unknown solver {name!r}; expected 'highs' or 'gurobi'")


def label_maps(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """Maps from a linopy model's variable and constraint labels to matrix columns and rows.

    ``col_of[label]`` is the column of variable ``label`` in ``model.matrices`` (``-1`` for a
    label without a column, e.g. a masked entry); ``row_of`` likewise for constraint rows.  Only
    linopy's public API is used (``Model.matrices``, ``Variable.labels``,
    ``Constraint.labels``).
    """
    mat = model.matrices
    vlabels = np.asarray(mat.vlabels, dtype=np.int64)
    clabels = np.asarray(mat.clabels, dtype=np.int64)

    def size(container: Any, used: np.ndarray) -> int:
        top = max((int(np.max(container[k].labels.values, initial=-1)) for k in container),
                  default=-1)
        return max(top, int(used.max(initial=-1))) + 1

    col_of = np.full(size(model.variables, vlabels), -1, dtype=np.int64)
    col_of[vlabels] = np.arange(len(vlabels))
    row_of = np.full(size(model.constraints, clabels), -1, dtype=np.int64)
    row_of[clabels] = np.arange(len(clabels))
    return col_of, row_of


_HIGHS_THREADS: list[int] = []


def set_highs_threads(h: Any, threads: int | None) -> None:
    """Set a HiGHS instance's thread count safely.

    HiGHS keeps one global thread scheduler per process; a later ``run()`` asking for a
    different count ends with an error status.  When ``threads`` differs from the count the
    scheduler was last made for, the scheduler is reset first (blocking), so solves with
    different thread settings can follow each other in one process.
    """
    if threads is None:
        return
    n = int(threads)
    if not _HIGHS_THREADS or _HIGHS_THREADS[-1] != n:  # unknown or different: reset
        type(h).resetGlobalScheduler(True)
    _HIGHS_THREADS[:] = [n]
    h.setOptionValue("threads", n)
