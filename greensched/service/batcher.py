"""The micro-batcher: one thread that coalesces the jobs of concurrent requests."""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from greensched.service.config import ServiceError
from greensched.service.predict import JobArrays
from greensched.service.schemas import listing

__all__ = ["JobConflict", "MicroBatcher", "Pending"]

log = logging.getLogger("greensched.service")


@dataclass
class Pending:
    """One request's jobs and the future its answer goes to."""

    jobs: JobArrays
    future: concurrent.futures.Future[Any]

class MicroBatcher:
    """One thread that coalesces concurrent requests into batched calls of ``process``.

    :meth:`submit` queues a request's jobs and returns a future.  The thread takes the first
    pending request, keeps collecting for ``window_s`` seconds (or until ``max_jobs`` jobs),
    then calls ``process(items)`` with the requests in arrival order; ``process`` must resolve
    every item's future.  Requests whose future was cancelled before processing are dropped.
    """

    def __init__(self, process: Callable[[list[Pending]], None], *, window_s: float,
                 max_jobs: int, name: str = "greensched-batcher") -> None:
        self._process = process
        self.window_s = float(window_s)
        self.max_jobs = int(max_jobs)
        self._queue: queue.SimpleQueue[Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._stopping = False
        self._name = name
        self._count_lock = threading.Lock()
        self._pending_jobs = 0

    @property
    def pending_jobs(self) -> int:
        """Jobs submitted and not yet taken by the thread."""
        return self._pending_jobs

    def _count(self, delta: int) -> None:
        with self._count_lock:
            self._pending_jobs += delta

    def start(self) -> None:
        """Start the thread (idempotent)."""
        with self._start_lock:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the queued work, then stop the thread."""
        with self._start_lock:
            self._stopping = True
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout_s)
        self._fail_rest(ServiceError("the service is shutting down"))

    def submit(self, jobs: JobArrays) -> concurrent.futures.Future[Any]:
        """Queue ``jobs``; the future resolves to what ``process`` sets for them."""
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if self._stopping:
            fut.set_exception(ServiceError("the service is shutting down"))
            return fut
        if self._thread is None:
            self.start()
        self._count(len(jobs))
        self._queue.put(Pending(jobs, fut))
        return fut

    def _fail_rest(self, exc: BaseException) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None and item.future.set_running_or_notify_cancel():
                item.future.set_exception(exc)

    def _run(self) -> None:
        carry: Pending | None = None
        while True:
            first = carry if carry is not None else self._queue.get()
            carry = None
            if first is None:
                return
            items, n = [first], len(first.jobs)
            deadline = time.monotonic() + self.window_s
            stop = False
            while n < self.max_jobs:
                remaining = deadline - time.monotonic()
                try:
                    nxt = (self._queue.get(timeout=remaining) if remaining > 0
                           else self._queue.get_nowait())
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                if n + len(nxt.jobs) > self.max_jobs:
                    carry = nxt
                    break
                items.append(nxt)
                n += len(nxt.jobs)
            self._count(-n)
            live = [it for it in items if it.future.set_running_or_notify_cancel()]
            if live:
                try:
                    self._process(live)
                except BaseException as exc:  # never leave a future unresolved
                    log.exception("batch of %d job(s) failed", n)
                    for it in live:
                        if not it.future.done():
                            it.future.set_exception(exc)
            if stop:
                if carry is not None and carry.future.set_running_or_notify_cancel():
                    carry.future.set_exception(ServiceError("the service is shutting down"))
                return


class JobConflict(ServiceError):
    """Job ids already assigned with other content."""

    def __init__(self, job_ids: list[str]) -> None:
        self.job_ids = job_ids
        super().__init__(f"job_id(s) {listing(job_ids, 5)} were already assigned with "
                         "different content; use new job ids")

