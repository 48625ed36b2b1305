"""The timer's statistics and stopping rule, on a fake clock (no wall-clock assertions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.measure.timing import (
    MIN_STEPS_FOR_SPREAD,
    TimerSettings,
    summarise,
    time_steps,
    time_steps_cuda,
)


class FakeClock:
    """A clock that a step advances by the next of the given durations."""

    def __init__(self, durations: list[float]) -> None:
        self.now = 0.0
        self.durations = list(durations)
        self.calls = 0

    def __call__(self) -> float:
        return self.now

    def step(self) -> None:
        self.calls += 1
        self.now += self.durations.pop(0)


def test_summarise_matches_numpy_percentiles() -> None:
    times = [0.010, 0.012, 0.011, 0.050, 0.009, 0.010, 0.013, 0.014, 0.008, 0.011, 0.030]
    timing = summarise(times)
    assert timing.steps == 11
    assert timing.median_ms == pytest.approx(np.percentile(times, 50) * 1e3)
    assert timing.p10_ms == pytest.approx(np.percentile(times, 10) * 1e3)
    assert timing.p90_ms == pytest.approx(np.percentile(times, 90) * 1e3)
    assert timing.total_s == pytest.approx(sum(times))
    assert timing.samples_per_s(32) == pytest.approx(32 / np.median(times))


def test_summarise_of_3_steps_gives_median_but_no_spread() -> None:
    # The large-model timer may stop after 3 steps: p10/p90 would be interpolated min/median/max.
    timing = summarise([0.030, 0.010, 0.020])
    assert timing.median_ms == pytest.approx(20.0)
    assert timing.steps == 3
    assert timing.p10_ms is None and timing.p90_ms is None
    assert summarise([0.001 * (i + 1) for i in range(MIN_STEPS_FOR_SPREAD - 1)]).p10_ms is None


def test_summarise_of_10_steps_gives_the_spread() -> None:
    # Sorted, in ms: 1 2 3 4 5 6 7 9 12 20. Linear interpolation at q * (n - 1):
    # p10 at 0.9 -> 1 + 0.9 * (2 - 1) = 1.9; median at 4.5 -> 5.5; p90 at 8.1 -> 12 + 0.1 * 8 = 12.8
    times = [0.004, 0.001, 0.012, 0.003, 0.007, 0.002, 0.020, 0.005, 0.009, 0.006]
    timing = summarise(times)
    assert MIN_STEPS_FOR_SPREAD == 10 and timing.steps == 10
    assert timing.p10_ms == pytest.approx(1.9)
    assert timing.median_ms == pytest.approx(5.5)
    assert timing.p90_ms == pytest.approx(12.8)


def test_summarise_refuses_no_steps() -> None:
    with pytest.raises(ValueError, match="no timed steps"):
        summarise([])


def test_warmup_is_not_timed_and_min_steps_rules_when_time_is_reached() -> None:
    # warm-up steps take 1 s each and must not show in the statistics
    clock = FakeClock([1.0, 1.0] + [0.01] * 10)
    timing = time_steps(
        clock.step, TimerSettings(warmup=2, min_steps=5, min_time_s=0.0), clock=clock
    )
    assert clock.calls == 2 + 5
    assert timing.steps == 5
    assert timing.median_ms == pytest.approx(10.0)


def test_min_time_rules_when_steps_are_short() -> None:
    clock = FakeClock([0.1] * 100)
    settings = TimerSettings(warmup=0, min_steps=3, min_time_s=1.0)
    timing = time_steps(clock.step, settings, clock=clock)
    # 0.1 s steps: the tenth brings the total to 1.0 s (floating point may need an eleventh)
    assert timing.steps in (10, 11)
    assert timing.total_s >= 1.0 - 1e-9


def test_max_steps_caps_the_loop() -> None:
    clock = FakeClock([0.0] * 100)
    settings = TimerSettings(warmup=0, min_steps=1, min_time_s=5.0, max_steps=20)
    assert time_steps(clock.step, settings, clock=clock).steps == 20


def test_spread_is_reported() -> None:
    clock = FakeClock([0.01 * (i + 1) for i in range(10)])  # 10, 20, ..., 100 ms
    timing = time_steps(
        clock.step, TimerSettings(warmup=0, min_steps=10, min_time_s=0.0), clock=clock
    )
    assert timing.p10_ms == pytest.approx(19.0)
    assert timing.median_ms == pytest.approx(55.0)
    assert timing.p90_ms == pytest.approx(91.0)


@pytest.mark.parametrize(
    "kwargs",
    [dict(min_steps=0), dict(warmup=-1), dict(min_time_s=-1.0), dict(min_steps=5, max_steps=2)],
)
def test_bad_timer_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TimerSettings(**kwargs)  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_timer_times_with_events() -> None:
    a = torch.randn(512, 512, device="cuda")
    timing = time_steps_cuda(lambda: a @ a, TimerSettings(warmup=1, min_steps=10, min_time_s=0.0))
    assert timing.steps >= 10
    assert 0 < timing.p10_ms <= timing.median_ms <= timing.p90_ms


def test_max_time_lowers_the_step_count_for_slow_steps() -> None:
    clock = FakeClock([2.0] * 10)  # a 2 s step (VGG training on a CPU)
    settings = TimerSettings(warmup=0, min_steps=5, min_time_s=0.5, max_time_s=3.0, floor_steps=3)
    assert time_steps(clock.step, settings, clock=clock).steps == 3
    fast = FakeClock([0.01] * 100)
    assert time_steps(fast.step, settings, clock=fast).steps == 50  # min_time rules, not the cap
