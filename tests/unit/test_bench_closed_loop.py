"""The closed loop's throughput by the patients' cycles (``scripts/bench_closed_loop.cycle_throughput``)."""

from __future__ import annotations

import pytest

from scripts.bench_closed_loop import cycle_throughput

WINDOW = (15.0, 25.0)


def replies_in_window(first_reply: float, cycle: float) -> list[float]:
    """One patient's reply times inside ``WINDOW`` when it replies at ``first_reply`` and every ``cycle`` after."""
    times, t = [], first_reply
    while t <= WINDOW[1]:
        if t >= WINDOW[0]:
            times.append(t)
        t += cycle
    return times


def counted(patients: list[list[float]]) -> float:
    return sum(len(times) for times in patients) / (WINDOW[1] - WINDOW[0])


@pytest.mark.parametrize("clump_at", [0.0, 0.5, 1.0, 1.5])
def test_patients_in_step_are_measured_at_their_pace_wherever_the_window_falls(clump_at: float) -> None:
    # 512 patients at a 2.05 s cycle whose phases sit within 0.2 s of each other, as after starting together:
    # the count of replies in a 10 s window depends on where its edges fall, the cycles do not.
    patients = [replies_in_window(clump_at + 0.2 * i / 512, 2.05) for i in range(512)]
    assert cycle_throughput(patients) == pytest.approx(512 / 2.05)
    assert counted(patients) != pytest.approx(512 / 2.05, rel=0.01)


def test_patients_spread_evenly_agree_with_the_count() -> None:
    patients = [replies_in_window(2.0 * i / 400, 2.0) for i in range(400)]
    assert cycle_throughput(patients) == pytest.approx(200.0)
    assert counted(patients) == pytest.approx(200.0, rel=0.01)


def test_slower_patients_weigh_by_their_cycles() -> None:
    fast = replies_in_window(15.1, 1.0)  # 10 replies, 9 cycles over 9 s
    slow = replies_in_window(15.1, 3.0)  # 4 replies, 3 cycles over 9 s
    # Two patients, 12 cycles over 18 s: a mean cycle of 1.5 s.
    assert cycle_throughput([fast, slow]) == pytest.approx(2 / 1.5)


def test_no_figure_unless_every_patient_has_a_whole_cycle_in_the_window() -> None:
    assert cycle_throughput([]) is None
    assert cycle_throughput([[15.5, 17.5], [16.0]]) is None
    assert cycle_throughput([[15.5, 17.5], [16.0, 18.0]]) == pytest.approx(1.0)


def test_the_concurrency_benchmark_reads_its_window_by_the_same_rule() -> None:
    from scripts.bench_concurrency import Window

    window = Window(warmup_s=0.0, duration_s=0.0)
    window.start, window.stop = WINDOW
    for patient in range(256):
        start = 0.3 * patient / 256  # in step, as in the benchmark: the count is off, the cycles are not
        for end in replies_in_window(start, 0.52):
            window.record(patient, end - 0.5, end)
        window.record(patient, 25.1, 25.6)  # ends after the window: not counted
    assert window.turns_per_s(256) == pytest.approx(256 / 0.52)
    assert len(window.latencies_ms) == sum(len(replies_in_window(0.3 * p / 256, 0.52)) for p in range(256))
    # A patient without a whole cycle in the window: the count.
    window.ends[0] = window.ends[0][:1]
    assert window.turns_per_s(256) == pytest.approx(len(window.latencies_ms) / 10.0)
