"""The timer: warm-up, then timed steps until a minimum count AND a minimum time are reached.

On CPU each step is timed with ``time.perf_counter``; on CUDA with a pair of CUDA events per
step, read after one synchronisation at the end (so the host never waits inside the loop).
Statistics are over per-step times: median, 10th and 90th percentile (linear interpolation,
numpy's default), the interquartile range over the median (``iqr_rel``) and the number of timed
steps, so a reader can judge the spread. Below ``MIN_STEPS_FOR_SPREAD`` timed steps there is no
spread: p10/p90 of 3 steps would only be interpolations between the minimum, the median and the
maximum. A timing whose ``iqr_rel`` exceeds :data:`NOISY_IQR_REL` (0.1, torch.utils.benchmark's
threshold for a "noisy" measurement) is :attr:`Timing.noisy`.

A step may be split into phases (:func:`time_phased_steps`, :func:`time_phased_steps_cuda`): the
step is called with a ``mark(name)`` callable and calls it at the end of each phase; a phase's time
in a step is the time since the previous mark (or the step's start), a phase marked twice in one
step is summed, and each phase's median over the timed steps is in :attr:`Timing.phases_ms`. The
timed steps are the marked steps themselves, so the whole and its phases rest on the same steps.
On CUDA each mark records an event on the stream (no host synchronisation inside the step).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "MIN_STEPS_FOR_SPREAD",
    "NOISY_IQR_REL",
    "Mark",
    "MarkedStep",
    "no_mark",
    "TimerSettings",
    "Timing",
    "summarise",
    "time_steps",
    "time_steps_cuda",
    "time_phased_steps",
    "time_phased_steps_cuda",
]

# Timed steps from which p10/p90 are given; from fewer they would mostly restate the fastest
# and the slowest step (of 3 steps: interpolations between minimum, median and maximum).
MIN_STEPS_FOR_SPREAD = 10
# Interquartile range over median above which a timing is noisy (torch.utils.benchmark's
# Measurement flags the same ratio above 0.1).
NOISY_IQR_REL = 0.1

# A step split into phases calls ``mark(name)`` at the end of each phase.
Mark = Callable[[str], None]
MarkedStep = Callable[[Mark], object]


def no_mark(name: str) -> None:
    """A ``mark`` that records nothing: a marked step run as a plain one."""


@dataclass(frozen=True)
class TimerSettings:
    """The timer's stopping rule: warm-up, then timed steps until BOTH minimums are reached.

    Two caps end it earlier: ``max_steps`` (sub-millisecond steps), and ``max_time_s`` for
    slow steps: once that much was timed, ``min_steps`` drops to ``floor_steps``. The row's
    ``steps_timed`` says how many steps its statistics rest on.
    """

    # Untimed steps: first-call allocations, oneDNN primitive creation, cuDNN autotuning.
    warmup: int = 2
    min_steps: int = 5  # timed steps at least (p10/p90 need a few)
    min_time_s: float = 0.5  # timed seconds at least
    max_steps: int = 10_000  # cap for sub-millisecond steps
    max_time_s: float = float("inf")  # cap for slow steps (a VGG training step on a CPU)
    floor_steps: int = 3  # steps timed at least, even past max_time_s

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.min_steps < 1 or self.max_steps < self.min_steps:
            raise ValueError(f"timer needs warmup >= 0 and 1 <= min_steps <= max_steps; got {self}")
        if self.min_time_s < 0 or self.max_time_s < 0 or self.floor_steps < 1:
            raise ValueError(f"timer times must be >= 0 and floor_steps >= 1; got {self}")

    def done(self, steps: int, total_s: float) -> bool:
        """True once ``steps`` timed steps totalling ``total_s`` seconds are enough."""
        if steps >= self.max_steps:
            return True
        if total_s >= self.max_time_s and steps >= min(self.floor_steps, self.min_steps):
            return True
        return steps >= self.min_steps and total_s >= self.min_time_s


@dataclass(frozen=True)
class Timing:
    """Per-step wall time of a timed run, in milliseconds."""

    median_ms: float
    p10_ms: float | None  # None below MIN_STEPS_FOR_SPREAD steps
    p90_ms: float | None
    steps: int
    total_s: float  # sum of the timed steps
    # (q75 - q25) / median; None below MIN_STEPS_FOR_SPREAD steps
    iqr_rel: float | None = None
    # Median of each phase over the timed steps (phased timing only), in ms.
    phases_ms: dict[str, float] | None = None

    @property
    def noisy(self) -> bool | None:
        """True if the interquartile range exceeds :data:`NOISY_IQR_REL` of the median; None
        without a spread (below :data:`MIN_STEPS_FOR_SPREAD` steps)."""
        return None if self.iqr_rel is None else self.iqr_rel > NOISY_IQR_REL

    def samples_per_s(self, batch_size: int) -> float:
        """Throughput from the median step: robust to the odd slow step on a shared machine."""
        return batch_size / (self.median_ms / 1e3)


def summarise(
    step_seconds: Sequence[float], phase_seconds: dict[str, Sequence[float]] | None = None
) -> Timing:
    """Median, p10, p90 (linear interpolation between order statistics) and interquartile range
    over median of step times; p10, p90 and the range are None below
    :data:`MIN_STEPS_FOR_SPREAD` steps. ``phase_seconds``: each phase's time in every step."""
    if not step_seconds:
        raise ValueError("no timed steps to summarise")
    ordered = sorted(step_seconds)
    spread = len(ordered) >= MIN_STEPS_FOR_SPREAD
    median = _quantile(ordered, 0.5)
    iqr = _quantile(ordered, 0.75) - _quantile(ordered, 0.25)
    phases = (
        None
        if phase_seconds is None
        else {name: _quantile(sorted(times), 0.5) * 1e3 for name, times in phase_seconds.items()}
    )
    return Timing(
        median_ms=median * 1e3,
        p10_ms=_quantile(ordered, 0.1) * 1e3 if spread else None,
        p90_ms=_quantile(ordered, 0.9) * 1e3 if spread else None,
        steps=len(ordered),
        total_s=sum(ordered),
        iqr_rel=iqr / median if spread and median > 0 else None,
        phases_ms=phases,
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
    timing = time_phased_steps(lambda mark: step(), settings, clock=clock)
    return dataclasses.replace(timing, phases_ms=None)


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
    timing = time_phased_steps_cuda(lambda mark: step(), settings, device=device)
    return dataclasses.replace(timing, phases_ms=None)


def time_phased_steps(
    step: MarkedStep,
    settings: TimerSettings,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Like :func:`time_steps`, for a step that calls ``mark(name)`` at the end of each phase;
    the result's ``phases_ms`` holds each phase's median (host clock)."""
    for _ in range(settings.warmup):
        step(no_mark)
    times: list[float] = []
    phases: dict[str, list[float]] = {}
    total = 0.0
    while not settings.done(len(times), total):
        marks = _Marks(clock)
        step(marks)
        elapsed = clock() - marks.start
        times.append(elapsed)
        total += elapsed
        _add_phases(phases, marks.spent, len(times))
    return summarise(times, phases)


class _Marks:
    """A ``mark`` on the host clock: each call adds the time since the previous one (or the
    step's start) to the phase it names."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.spent: dict[str, float] = {}
        self.start = self.last = clock()

    def __call__(self, name: str) -> None:
        now = self.clock()
        self.spent[name] = self.spent.get(name, 0.0) + now - self.last
        self.last = now


def time_phased_steps_cuda(
    step: MarkedStep,
    settings: TimerSettings,
    *,
    device: torch.device | str = "cuda",
) -> Timing:
    """Like :func:`time_steps_cuda`, for a step that calls ``mark(name)`` at the end of each
    phase: each mark records a CUDA event, read after the chunk's one synchronisation."""
    for _ in range(settings.warmup):
        step(no_mark)
    torch.cuda.synchronize(device)
    times: list[float] = []
    phases: dict[str, list[float]] = {}
    total = 0.0
    while not settings.done(len(times), total):
        chunk = min(settings.min_steps, settings.max_steps - len(times))
        recorded: list[list[tuple[str, torch.cuda.Event]]] = []
        for _ in range(chunk):
            events = [("", _recorded_event())]
            step(functools.partial(_record_mark, events))
            events.append(("", _recorded_event()))
            recorded.append(events)
        torch.cuda.synchronize(device)
        for events in recorded:
            spent: dict[str, float] = {}
            for (_, before), (name, after) in zip(events, events[1:-1], strict=False):
                spent[name] = spent.get(name, 0.0) + before.elapsed_time(after) / 1e3
            elapsed = events[0][1].elapsed_time(events[-1][1]) / 1e3
            times.append(elapsed)
            total += elapsed
            _add_phases(phases, spent, len(times))
    return summarise(times, phases)


def _record_mark(events: list[tuple[str, torch.cuda.Event]], name: str) -> None:
    events.append((name, _recorded_event()))


def _recorded_event() -> torch.cuda.Event:
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event


def _add_phases(phases: dict[str, list[float]], spent: dict[str, float], steps: int) -> None:
    """Append one step's phase times; a phase a step did not mark took 0 s in it."""
    for name in spent.keys() - phases.keys():
        phases[name] = [0.0] * (steps - 1)
    for name, times in phases.items():
        times.append(spent.get(name, 0.0))


def _quantile(ordered: Sequence[float], q: float) -> float:
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    fraction = position - low
    return ordered[low] + (ordered[high] - ordered[low]) * fraction
