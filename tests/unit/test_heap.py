"""medspa.heap: after start-up the young generation is collected every 50,000 net allocations, start-up objects
are frozen, and cyclic garbage is still collected (bounded) without an explicit ``gc.collect``.  Each case runs in
an interpreter of its own: the collector's settings are process-wide."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_start_up_objects_are_frozen_and_young_collections_are_rarer() -> None:
    seen = _run(
        """
        import gc, json
        from medspa.heap import YOUNG_COLLECTION_THRESHOLD, settle_after_start_up
        before = gc.get_threshold()
        settle_after_start_up()
        print(json.dumps({"young": gc.get_threshold()[0], "wanted": YOUNG_COLLECTION_THRESHOLD,
                          "middle": gc.get_threshold()[1], "middle_before": before[1],
                          "oldest": gc.get_threshold()[2], "oldest_before": before[2],
                          "frozen": gc.get_freeze_count()}))
        """
    )
    assert seen["young"] == seen["wanted"] == 50_000
    assert (seen["middle"], seen["oldest"]) == (seen["middle_before"], seen["oldest_before"])
    assert seen["frozen"] > 1_000  # the interpreter's and the imports' objects


def test_cyclic_garbage_is_still_collected_without_asking() -> None:
    seen = _run(
        """
        import gc, json, weakref
        from medspa.heap import settle_after_start_up
        settle_after_start_up()

        class Node:
            pass

        def cycle():
            a, b = Node(), Node()
            a.other, b.other = b, a
            return weakref.ref(a)

        first = cycle()  # garbage at once: only the collector can free it
        young_runs = gc.get_stats()[0]["collections"]
        for _ in range(60_000):  # 120,000 cyclic objects, more than the threshold
            cycle()
        print(json.dumps({"first_alive": first() is not None,
                          "young_runs": gc.get_stats()[0]["collections"] - young_runs,
                          "pending": gc.get_count()[0]}))
        """
    )
    assert seen["first_alive"] is False  # collected by a collection the allocations triggered
    assert seen["young_runs"] >= 1
    assert seen["pending"] < 50_000  # never more than the threshold's worth waits
