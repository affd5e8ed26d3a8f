"""MicroBatcher: concurrent submissions travel together, each caller gets its own result, failures reach every
caller of the batch, and nothing waits when there is no load."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from webhooks.batching import ItemFailed, MicroBatcher


def test_concurrent_submissions_share_a_batch_and_get_their_own_results() -> None:
    batches: list[list[int]] = []

    async def flush(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        await asyncio.sleep(0)
        return [item * 10 for item in items]

    async def main() -> list[int]:
        batcher: MicroBatcher[int, int] = MicroBatcher(flush, max_batch=100, max_in_flight=1)
        return list(await asyncio.gather(*(batcher.submit(n) for n in range(20))))

    assert asyncio.run(main()) == [n * 10 for n in range(20)]
    assert batches == [list(range(20))]  # one loop iteration's submissions: one batch, in order


def test_batches_are_capped_and_the_next_waits_for_a_free_slot() -> None:
    in_flight = 0
    peak = 0
    sizes: list[int] = []

    async def flush(items: Sequence[int]) -> list[int]:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        sizes.append(len(items))
        await asyncio.sleep(0.001)
        in_flight -= 1
        return list(items)

    async def main() -> list[int]:
        batcher: MicroBatcher[int, int] = MicroBatcher(flush, max_batch=8, max_in_flight=2)
        return list(await asyncio.gather(*(batcher.submit(n) for n in range(50))))

    assert asyncio.run(main()) == list(range(50))
    assert peak <= 2 and max(sizes) <= 8 and sum(sizes) == 50


def test_a_failed_flush_fails_every_caller_of_that_batch_only() -> None:
    calls = 0

    async def flush(items: Sequence[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if "bad" in items:
            raise RuntimeError("database unavailable")
        return [item.upper() for item in items]

    async def main() -> tuple[list[object], str]:
        batcher: MicroBatcher[str, str] = MicroBatcher(flush, max_batch=10, max_in_flight=1)
        failed = await asyncio.gather(batcher.submit("a"), batcher.submit("bad"), return_exceptions=True)
        later = await batcher.submit("c")  # the batcher keeps working after a failure
        return list(failed), later

    failed, later = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) for r in failed)
    assert later == "C" and calls == 2


def test_a_flush_returning_the_wrong_number_of_results_is_an_error() -> None:
    async def flush(items: Sequence[int]) -> list[int]:
        return []

    async def main() -> int:
        return await MicroBatcher(flush).submit(1)

    with pytest.raises(RuntimeError, match="returned 0 results for 1 items"):
        asyncio.run(main())


def test_an_item_failed_answer_fails_only_that_caller() -> None:
    async def flush(items: Sequence[str]) -> list[str | ItemFailed]:
        return [ItemFailed(ValueError(f"bad item {item}")) if item == "bad" else item.upper() for item in items]

    async def main() -> list[object]:
        batcher: MicroBatcher[str, str] = MicroBatcher(flush, max_batch=10, max_in_flight=1)
        return list(
            await asyncio.gather(
                batcher.submit("a"), batcher.submit("bad"), batcher.submit("c"), return_exceptions=True
            )
        )

    a, bad, c = asyncio.run(main())
    assert (a, c) == ("A", "C")
    assert isinstance(bad, ValueError) and "bad item bad" in str(bad)


def test_callers_that_stopped_waiting_are_left_out_of_the_next_batch() -> None:
    flushed: list[list[int]] = []
    release = asyncio.Event()

    async def flush(items: Sequence[int]) -> list[int]:
        flushed.append(list(items))
        await release.wait()  # the first batch hangs (a stuck server) while more callers queue up
        return list(items)

    async def main() -> int:
        batcher: MicroBatcher[int, int] = MicroBatcher(flush, max_batch=10, max_in_flight=1)
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0)
        impatient = [asyncio.ensure_future(asyncio.wait_for(batcher.submit(n), 0.01)) for n in range(1, 4)]
        for waiter in impatient:
            with pytest.raises(TimeoutError):
                await waiter
        patient = asyncio.ensure_future(batcher.submit(9))
        release.set()
        await first
        return await patient

    assert asyncio.run(main()) == 9
    assert flushed == [[0], [9]]  # the callers that gave up cost nothing once the server answered again
