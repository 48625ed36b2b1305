"""What a run measures: frozen settings built once from the command line.

A :class:`RunPlan` names the models, devices, dtypes, memory formats, ``torch.compile`` modes,
modes and batch sizes of a run, the timer's stopping rule and how many timing passes a row
gets (``passes``: the later ones re-time it for its run-to-run spread). ``RunPlan.short()`` is the
default plan of ``nox -s bench`` (every model at fp32, and at the fastest format where bf16 is
native, in a few minutes on a 2-core CPU); ``RunPlan.full()`` is the long one.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure.timing import TimerSettings
from bench.shards import Shard

__all__ = [
    "DEVICES",
    "DTYPES",
    "MEMORY_FORMATS",
    "MODES",
    "COMPILE_MODES",
    "FASTEST_FORMAT",
    "RunPlan",
    "parse_batch_size",
    "default_threads",
]

DEVICES = ("cpu", "cuda")
# fp32; bf16 under torch.autocast (weights stay fp32); bf16 weights and inputs, cast once.
DTYPES = ("fp32", "bf16_autocast", "bf16")
MEMORY_FORMATS = ("contiguous", "channels_last")
MODES = ("infer", "train")
# Eager ("none"), or torch.compile (inductor) with its default mode or "max-autotune".
COMPILE_MODES = ("none", "default", "max-autotune")
# The (dtype, memory format) the fastest format adds on a device with native bf16 (detected by
# bench.measure.machine.native_bf16): bf16 autocast with channels_last, where a CPU's bf16
# peaks run about twice (AMD Zen 4) to ten times (Intel AMX) its fp32 ones.
FASTEST_FORMAT = ("bf16_autocast", "channels_last")

# Timed seconds after which a re-timing pass stops at its floor of steps (RunPlan.pass_timer).
PASS_MAX_TIME_S = 0.5
PASS_FLOOR_STEPS = 2

# A row's median step (ms) from which its layer-times profile takes fewer steps.
LONG_STEP_MS = 500.0

# Input side (pixels) from which a model counts as "large" (ImageNet-sized) for default batches.
LARGE_INPUT_PX = 128


@dataclass(frozen=True)
class RunPlan:
    """Everything one ``python -m bench run`` measures; the rows are its cross product.

    ``batch_sizes`` of ``None`` means the per-model defaults of :meth:`batches_for` (small
    batches for ImageNet-sized models, larger ones for 28/32-pixel inputs).
    """

    models: tuple[str, ...]
    devices: tuple[str, ...] = ("cpu",)
    dtypes: tuple[str, ...] = ("fp32",)
    memory_formats: tuple[str, ...] = ("contiguous",)
    modes: tuple[str, ...] = MODES
    compiles: tuple[str, ...] = ("none",)  # --compile: torch.compile modes, "none" is eager
    batch_sizes: tuple[int, ...] | None = None
    threads: int = field(default_factory=lambda: default_threads())
    # Short plan: a slow step (ResNet-34 CIFAR training at batch 32, ~220 GFLOP) stops after
    # 3 timed steps once 2 s are timed (no spread: see timing.MIN_STEPS_FOR_SPREAD); fast ones
    # run 10 steps and at least 0.5 s. (3 s cost ~25 s more of the 15-minute main job.)
    timer: TimerSettings = TimerSettings(warmup=1, min_steps=10, min_time_s=0.5, max_time_s=2.0)
    # Per-model default batches, used when batch_sizes is None: (small input, large input).
    infer_batches: tuple[tuple[int, ...], tuple[int, ...]] = ((1, 32), (1,))
    train_batches: tuple[tuple[int, ...], tuple[int, ...]] = ((32,), (1,))
    # Timer for large-input models: VGG-19 training is ~120 GFLOP a sample, ~1-2 s a step here.
    large_timer: TimerSettings = TimerSettings(warmup=1, min_steps=3, min_time_s=0.0)
    max_batch: bool = False  # CUDA: also find the largest batch that fits (doubling, bisecting)
    # Also measure FASTEST_FORMAT on each device with native bf16 (none extra elsewhere), at
    # each mode's largest batch only (fastest_batches). On in RunPlan.short.
    fastest_format: bool = False
    label: str = "custom"  # "short", "full" or "custom": which preset the plan started from
    shard: Shard | None = None  # --shard I/N: measure only this slice of the rows
    # --passes N: pass 1 times every row with its timer; passes 2..N re-time the rows once all
    # are measured, with pass_timer, and the row's pass_spread_rel is the spread of the passes'
    # medians (bench compare's run-to-run noise). 1: no re-timing. 2 in both presets.
    passes: int = 1
    # --layer-times: the modes whose step is profiled per layer (bench.measure.layer_times)
    # after a model's rows, in steps of its own, at each device and format's largest batch,
    # into layer_times.jsonl; () profiles nothing. `bench all`'s main job: ("train",).
    layer_times: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("no models selected: see `python -m bench list`")
        _check_subset("device", self.devices, DEVICES)
        _check_subset("dtype", self.dtypes, DTYPES)
        _check_subset("memory format", self.memory_formats, MEMORY_FORMATS)
        _check_subset("mode", self.modes, MODES)
        _check_subset("compile mode", self.compiles, COMPILE_MODES)
        if self.layer_times:
            _check_subset("--layer-times mode", self.layer_times, self.modes)
        if self.batch_sizes is not None:
            for b in self.batch_sizes:
                parse_batch_size(b)
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1; got {self.threads}")
        if self.passes < 1:
            raise ValueError(f"passes must be >= 1 (1: no re-timing); got {self.passes}")

    @classmethod
    def short(cls, models: tuple[str, ...], **overrides: Any) -> RunPlan:
        """The default plan: every model, fp32 contiguous, small batches, short timer; and the
        fastest format where bf16 is native (``fastest_format=False`` leaves it out)."""
        settings: dict[str, Any] = {
            "fastest_format": True,
            "label": "short",
            "passes": 2,
            **overrides,
        }
        return cls(models=models, **settings)

    @classmethod
    def full(cls, models: tuple[str, ...], **overrides: Any) -> RunPlan:
        """The long plan: all dtypes and memory formats, a batch-size sweep, longer timing."""
        settings: dict[str, Any] = dict(
            dtypes=DTYPES,
            memory_formats=MEMORY_FORMATS,
            infer_batches=((1, 8, 32, 128, 512), (1, 2, 4, 8, 16, 32)),
            train_batches=((8, 32, 128, 512), (1, 2, 4, 8, 16, 32)),
            timer=TimerSettings(warmup=3, min_steps=10, min_time_s=2.0),
            large_timer=TimerSettings(warmup=2, min_steps=10, min_time_s=2.0),
            label="full",
            passes=2,
        )
        settings.update(overrides)
        return cls(models=models, **settings)

    def batches_for(self, input_shape: tuple[int, int, int], mode: str) -> tuple[int, ...]:
        """Batch sizes to measure for a model with this input shape in this mode."""
        if self.batch_sizes is not None:
            return self.batch_sizes
        large = is_large(input_shape)
        table = self.infer_batches if mode == "infer" else self.train_batches
        return table[1] if large else table[0]

    def fastest_batches(self, input_shape: tuple[int, int, int], mode: str) -> tuple[int, ...]:
        """The batch sizes at which ``fastest_format`` adds its rows: the largest of
        :meth:`batches_for`, the batch the summary's best samples/s usually comes from (the
        whole list would add batch-1 latency rows the summary does not show); none for
        ImageNet-sized inputs in the short plan, whose bf16 rows took a minute of the
        15-minute main job (``--full`` measures every format)."""
        if self.label == "short" and is_large(input_shape):
            return ()
        return (max(self.batches_for(input_shape, mode)),)

    def timer_for(self, input_shape: tuple[int, int, int]) -> TimerSettings:
        """The timer's stopping rule for a model with this input shape."""
        return self.large_timer if is_large(input_shape) else self.timer

    def retimes(self, input_shape: tuple[int, int, int], compile: str) -> bool:
        """Whether passes 2..N re-time a row of this input shape and compile mode: not with
        one pass; not a compiled row (re-timing it would compile again, which costs more than
        the row); not an ImageNet-sized row in the short plan (seconds a step, as for
        :meth:`fastest_batches`). Rows not re-timed have no ``pass_spread_rel``; ``bench
        compare`` judges them by the other rows' spreads."""
        if self.passes < 2 or compile != "none":
            return False
        return not (self.label == "short" and is_large(input_shape))

    @staticmethod
    def pass_timer(timer: TimerSettings) -> TimerSettings:
        """The timer of passes 2..N, from the row's own: one warm-up step (the model is built
        again), half the steps, a fifth of the time, and once 0.5 s are timed
        (:data:`PASS_MAX_TIME_S`) :data:`PASS_FLOOR_STEPS` steps suffice. The short plan's
        timer (10 steps and 0.5 s) becomes 5 steps and 0.1 s, a fifth of pass 1's timing for
        a fast row; a slow step (ResNet-34 CIFAR training, over a second) is timed twice
        after its warm-up instead of three times. Its median is noisier than pass 1's, so the
        spread errs large: the safe side for a gate, which must not fail identical code."""
        floor = min(PASS_FLOOR_STEPS, timer.min_steps)
        steps = max(floor, (timer.min_steps + 1) // 2)
        return TimerSettings(
            warmup=1,
            min_steps=steps,
            min_time_s=timer.min_time_s / 5,
            max_steps=max(steps, timer.max_steps // 2),
            max_time_s=min(timer.max_time_s, PASS_MAX_TIME_S),
            floor_steps=floor,
        )

    @staticmethod
    def layer_steps(step_ms: float) -> tuple[int, int]:
        """(warm-up, timed) steps of each kind, with and without hooks, a profiled step gets,
        by its row's median: (2, 5), or (1, 3) from :data:`LONG_STEP_MS` (ResNet-34 CIFAR
        training, about 2 s a step on 2 cores, profiled in 16 s rather than 28)."""
        return (1, 3) if step_ms >= LONG_STEP_MS else (2, 5)

    def as_dict(self) -> dict[str, Any]:
        """The plan as JSON-ready data (for ``meta.json``)."""
        return _jsonable(dataclasses.asdict(self))


def is_large(input_shape: tuple[int, int, int]) -> bool:
    """True for ImageNet-sized inputs (side >= 128 px)."""
    return max(input_shape[1:]) >= LARGE_INPUT_PX


def parse_batch_size(value: object) -> int:
    """A positive integer batch size, or a one-line ``ValueError`` naming the bad value."""
    if isinstance(value, bool):
        raise ValueError(f"bad batch size {value!r}: give a positive integer such as 32")
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        try:
            number = int(text)
        except ValueError:
            raise ValueError(
                f"bad batch size {value!r}: give a positive integer such as 32"
            ) from None
    if number < 1:
        raise ValueError(f"bad batch size {value!r}: it must be at least 1")
    return number


def default_threads() -> int:
    """CPU threads for torch: the cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _check_subset(what: str, given: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    if not given:
        raise ValueError(f"no {what} selected; choose from {', '.join(allowed)}")
    for value in given:
        if value not in allowed:
            raise ValueError(f"unknown {what} {value!r}; choose from {', '.join(allowed)}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
