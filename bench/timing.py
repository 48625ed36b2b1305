"""The timer: warm-up, then timed steps until a minimum count AND a minimum time are reached.

On CPU each step is timed with ``time.perf_counter``; on CUDA with a pair of CUDA events per
step, read after one synchronisation at the end (so the host never waits inside the loop).
Statistics are over per-step times: median, 10th and 90th percentile (linear interpolation,
numpy's default), and the number of timed steps, so a reader can judge the spread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from bench.config import TimerSettings

__all__ = ["Timing", "summarise", "time_steps", "time_steps_cuda"]


@dataclass(frozen=True)
class Timing:
    """Per-step wall time of a timed run, in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    steps: int
    total_s: float  # sum of the timed steps

    def samples_per_s(self, batch_size: int) -> float:
        """Throughput from the median step: robust to the odd slow step on a shared machine."""
        return batch_size / (self.median_ms / 1e3)


def summarise(step_seconds: Sequence[float]) -> Timing:
    """Median, p10, p90 (linear interpolation between order statistics) of step times."""
    if not step_seconds:
        raise ValueError("no timed steps to summarise")
    ordered = sorted(step_seconds)
    return Timing(
        median_ms=_quantile(ordered, 0.5) * 1e3,
        p10_ms=_quantile(ordered, 0.1) * 1e3,
        p90_ms=_quantile(ordered, 0.9) * 1e3,
        steps=len(ordered),
        total_s=sum(ordered),
    )


def time_steps(
    step: Callable[[], object],
    settings: TimerSettings,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Time ``step`` on the host clock (CPU work, or anything that returns when done).

    Runs ``settings.warmup`` untimed steps, then timed steps until at least ``min_steps`` were
    timed and their total reaches ``min_time_s`` (or a cap is hit: see :class:`TimerSettings`).
    """
    for _ in range(settings.warmup):
        step()
    times: list[float] = []
    total = 0.0
    while not settings.done(len(times), total):
        start = clock()
        step()
        elapsed = clock() - start
        times.append(elapsed)
        total += elapsed
    return summarise(times)


def time_steps_cuda(
    step: Callable[[], object],
    settings: TimerSettings,
    *,
    device: torch.device | str = "cuda",
) -> Timing:
    """Time ``step`` on a CUDA device with CUDA events (one pair per step).

    The stopping rule needs elapsed time while running; it is read from the events every
    ``min_steps`` steps (one synchronisation each), never after every step.
    """
    for _ in range(settings.warmup):
        step()
    torch.cuda.synchronize(device)
    pairs: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
    times: list[float] = []
    total = 0.0
    while not settings.done(len(times), total):
        chunk = min(settings.min_steps, settings.max_steps - len(times))
        pairs.clear()
        for _ in range(chunk):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            pairs.append((start, end))
        torch.cuda.synchronize(device)
        for start, end in pairs:
            elapsed = start.elapsed_time(end) / 1e3  # elapsed_time is in ms
            times.append(elapsed)
            total += elapsed
    return summarise(times)


def _quantile(ordered: Sequence[float], q: float) -> float:
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction
