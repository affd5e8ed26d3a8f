"""How a long-running process's heap is left after start-up: what the cyclic garbage collector scans, and how
often it runs.

A turn's (or a request's) garbage is freed by reference counting the moment it is dropped; the cyclic collector
only exists for reference cycles.  CPython runs its youngest collection every 700 net allocations of tracked
objects, and every tenth of those also scans the middle generation — at 256 turns in flight each worker
process ran ~30 of them a second, over the live objects of every turn in flight, and a full collection a few
times a minute (a pause of every thread of the process): ~0.15 ms of CPU a turn, ~4 % of the worker's, measured
with ``gc.callbacks`` (docs/performance.md, *Garbage collection*).  At 50,000 it ran once or not at all in such a run.

Nothing piles up for it: cyclic garbage is never freed by reference counting, so it keeps the net count
rising until a collection runs — at most ~50,000 objects wait (a few MB), however long the process lives.
"""

from __future__ import annotations

import gc

YOUNG_COLLECTION_THRESHOLD = 50_000


def settle_after_start_up() -> None:
    """Call once start-up is done, before the load: move everything loaded so far (modules, SDK clients, the
    engine — it lives as long as the process) out of the collector's generations, so a full collection scans
    only what the load allocates, and collect the youngest generation every 50,000 net allocations instead of
    700.  The older generations keep their ratios (a middle collection every 10 young ones, a full one every 10
    of those when the long-lived objects grew by a quarter)."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, oldest)
