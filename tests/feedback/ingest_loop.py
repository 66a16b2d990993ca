"""Kill-test helper: ingest batches into an outcome store forever-ish, acknowledging each one.

Usage: ``python ingest_loop.py STORE FIRST_BATCH N_BATCHES BATCH_SIZE``. After each batch's
``ingest`` has returned (its transaction committed) the batch number is printed on its own line
and stdout is flushed: a printed number is an acknowledged batch. Batch ``b`` holds job_ids
``b{b:05d}-{i:06d}`` for ``i < BATCH_SIZE``.
"""

from __future__ import annotations

import sys

from greensched.feedback.store import OutcomeStore
from outcome_factory import make_outcomes


def main(argv: list[str]) -> int:
    url, first, count, size = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    with OutcomeStore.open(url) as store:
        print("ready", flush=True)
        for b in range(first, first + count):
            report = store.ingest(make_outcomes(size, prefix=f"b{b:05d}-", seed=b))
            assert report.inserted == size, report
            print(b, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
