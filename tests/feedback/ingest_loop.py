"""Kill-test helper: ingest batches into an outcome store, acknowledging each one.

Usage: ``python ingest_loop.py STORE FIRST_BATCH N_BATCHES BATCH_SIZE [PAUSE_BATCH]``.

After each batch's ``ingest`` has returned (its transaction committed) the batch number is
printed on its own line and stdout is flushed: a printed number is an acknowledged batch.
Batch ``b`` holds job_ids ``b{b:05d}-{i:06d}`` for ``i < BATCH_SIZE``. With ``PAUSE_BATCH``,
that batch stops inside its transaction after its first insert chunk, prints
``inflight PAUSE_BATCH`` and waits (to be killed there).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from outcome_factory import make_outcomes

from greensched.feedback.store import OutcomeStore


def main(argv: list[str]) -> int:
    url, first, count, size = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    pause_batch = int(argv[4]) if len(argv) > 4 else None
    current = {"batch": -1, "chunks": 0}
    real_insert = OutcomeStore._insert_chunk

    def insert(self: OutcomeStore, conn: Any, rows: list[dict[str, Any]]) -> None:
        real_insert(self, conn, rows)
        current["chunks"] += 1
        if current["batch"] == pause_batch and current["chunks"] == 1:
            print(f"inflight {pause_batch}", flush=True)
            time.sleep(120)

    OutcomeStore._insert_chunk = insert  # type: ignore[method-assign]
    with OutcomeStore.open(url) as store:
        print("ready", flush=True)
        for b in range(first, first + count):
            current.update(batch=b, chunks=0)
            report = store.ingest(make_outcomes(size, prefix=f"b{b:05d}-", seed=b))
            assert report.inserted == size, report
            print(b, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
