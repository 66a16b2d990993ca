"""Where the hour workers run: in this process, in child processes, or as Ray actors.

Every engine exposes the same two calls: :meth:`WorkerPool.call` (one method on every worker,
with per-worker arguments, run concurrently) and :meth:`WorkerPool.close`.  Workers keep state
(their hourly LPs, bases and column pools) between calls, so an hour always goes back to the
worker that built it and warm starts survive between coordination rounds.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import traceback
from collections.abc import Sequence
from enum import StrEnum
from multiprocessing.connection import Connection
from typing import Any

from greensched.errors import GreenSchedError
from greensched.scheduler.decompose.hourly import HourWorker

__all__ = ["Engine", "WorkerPool", "make_pool"]


class Engine(StrEnum):
    """How the hour workers run."""

    SERIAL = "serial"
    PROCESSES = "processes"
    RAY = "ray"


def _serve(conn: Connection, threads: int) -> None:  # pragma: no cover - runs in a child
    worker = HourWorker(threads=threads)
    while True:
        msg = conn.recv()
        if msg is None:
            break
        method, args = msg
        try:
            conn.send((True, getattr(worker, method)(*args)))
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            conn.send((False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
    conn.close()


class WorkerPool:
    """A fixed set of stateful hour workers.

    Parameters
    ----------
    engine
        serial (one worker in this process), processes (``workers`` child processes) or ray
        (``workers`` Ray actors on the cluster at ``ray_address``; ``"local"`` starts one here).
    workers
        Number of workers (≥ 1).
    ray_address
        Address of a running Ray cluster, or ``"local"``.
    """

    def __init__(self, engine: Engine, workers: int = 1, ray_address: str | None = None):
        self.engine = engine
        self.workers = int(workers)
        self._local: list[HourWorker] = []
        self._procs: list[tuple[Any, Connection]] = []
        self._actors: list[Any] = []
        self._ray: Any = None
        self._ray_started = False
        if engine is Engine.SERIAL:
            self._local = [HourWorker(threads=1)]
            self.workers = 1
        elif engine is Engine.PROCESSES:
            # fork keeps the parent's imports (spawn would re-import linopy/xarray, ~3 s each);
            # the parent has run no solver yet, so no solver threads are copied.
            method = "fork" if sys.platform.startswith("linux") else "spawn"
            ctx: Any = mp.get_context(method)
            for _ in range(self.workers):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(child, 1), daemon=True)
                proc.start()
                child.close()
                self._procs.append((proc, parent))
        elif engine is Engine.RAY:
            self._start_ray(ray_address)
        else:  # pragma: no cover - enum exhausted
            raise GreenSchedError(f"unknown engine {engine!r}")

    def _start_ray(self, address: str | None) -> None:
        try:
            import ray
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise GreenSchedError(
                "--ray needs the ray package: pip install 'greensched[ray]'"
            ) from exc
        self._ray = ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": False,
            }
            if address in (None, "", "local"):
                kwargs["num_cpus"] = self.workers
            else:
                kwargs["address"] = address
            # Workers import greensched from the same folders as this process.
            paths = [p for p in sys.path if p and os.path.isdir(p)]
            kwargs["runtime_env"] = {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}}
            ray.init(**kwargs)
            self._ray_started = True
        actor = ray.remote(num_cpus=1)(HourWorker)
        self._actors = [actor.remote(threads=1) for _ in range(self.workers)]

    def call(self, method: str, args: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Run ``method(*args[w])`` on every worker w concurrently; results in worker order."""
        if len(args) != self.workers:
            raise GreenSchedError(f"{method}: {len(args)} argument sets for {self.workers} workers")
        if self.engine is Engine.SERIAL:
            return [getattr(w, method)(*a) for w, a in zip(self._local, args, strict=True)]
        if self.engine is Engine.PROCESSES:
            for (_proc, conn), a in zip(self._procs, args, strict=True):
                conn.send((method, a))
            out = []
            errors = []
            for _proc, conn in self._procs:
                ok, value = conn.recv()
                if ok:
                    out.append(value)
                else:
                    errors.append(value)
            if errors:
                raise RuntimeError(f"hour worker failed in {method}: {errors[0]}")
            return out
        refs = [
            getattr(actor, method).remote(*a) for actor, a in zip(self._actors, args, strict=True)
        ]
        return list(self._ray.get(refs))

    def close(self) -> None:
        """Stop the workers (and a Ray cluster this pool started)."""
        for proc, conn in self._procs:
            try:
                conn.send(None)
                conn.close()
            except (OSError, BrokenPipeError):  # pragma: no cover - child already gone
                pass
            proc.join(timeout=10)
            if proc.is_alive():  # pragma: no cover
                proc.terminate()
        self._procs = []
        if self._actors:
            for actor in self._actors:
                self._ray.kill(actor)
            self._actors = []
        if self._ray_started:
            self._ray.shutdown()
            self._ray_started = False

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_pool(workers: int = 1, ray_address: str | None = None) -> WorkerPool:
    """Serial for one local worker, child processes for more, Ray actors with an address."""
    if workers < 1:
        raise GreenSchedError(f"workers {workers!r} must be >= 1")
    if ray_address is not None:
        return WorkerPool(Engine.RAY, workers, ray_address)
    if workers == 1:
        return WorkerPool(Engine.SERIAL, 1)
    return WorkerPool(Engine.PROCESSES, workers)
