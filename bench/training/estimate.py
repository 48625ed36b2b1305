"""How long a run of an accuracy plan will take on this machine, predicted before it starts.

The main job (``python -m bench all``) has a budget of wall-clock minutes; its accuracy plans
skip the runs that would not fit what is left of it. A run's time is predicted from the rates
the harness measured minutes earlier in the same results folder: the model's training
throughput (``mode`` train, no compile, the run's device and dtype) at the run's batch, over
the samples the recipe trains, and its inference throughput over the test images its
evaluations score. A rate between two measured batch sizes is interpolated in log(batch);
outside them the nearest measured one is taken. Rows in the run's memory format are preferred,
else the fastest format measured. Where the training rate comes from another batch or format
than the run's (the default sweep trains at batch 32, contiguous; the CIFAR recipes at 128,
channels_last), the prediction says so and names the row that would give the run's own rate
(``own_row``): such a rate can be far off (docs/time-to-accuracy.md), and a plan under a
budget measures that row where the prediction is too near the time left to decide on. A
model the harness did not measure takes the rates of one it did with the same layers (family,
input and parameter count: ``alexnet_mnist_kaiming`` differs from ``alexnet_mnist`` only in its
initialisation); one with neither has no prediction (the run is not skipped).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

import zoo
from bench.training.loop import TrainSettings, eval_interval, evaluations, length_steps
from bench.training.recipes import recipe_for, resolve_dtype
from data.cifar10 import OFFICIAL_SIZES as CIFAR10_SIZES
from data.mnist import OFFICIAL_SIZES as MNIST_SIZES

__all__ = [
    "Prediction",
    "RateRow",
    "SPLIT_SIZES",
    "SETUP_S",
    "interpolated_rate",
    "predict_run",
    "seconds_text",
]

SPLIT_SIZES: dict[str, Mapping[str, int]] = {"mnist": MNIST_SIZES, "cifar10": CIFAR10_SIZES}
# Reading the cached data set, building the model, saving its weights: about a second or two
# a run on a 2-core CPU (the rows' data_setup_s is about 0.1 s); counted once a run.
SETUP_S = 3.0


@dataclass(frozen=True)
class RateRow:
    """The harness row (``mode`` train, not compiled) whose rate a run's prediction needs:
    the model measured (the run's, or its same-layers twin), device, dtype, memory format and
    batch of the run."""

    model: str
    device: str
    dtype: str
    memory_format: str
    batch_size: int

    def text(self) -> str:
        """``batch 32, channels_last, fp32``."""
        return f"batch {self.batch_size}, {self.memory_format}, {self.dtype}"

    def harness_row(self, samples_per_s: float) -> dict[str, Any]:
        """The row, measured at ``samples_per_s``, as :func:`predict_run` reads the harness's."""
        return {
            "model": self.model,
            "mode": "train",
            "device": self.device,
            "dtype": self.dtype,
            "memory_format": self.memory_format,
            "batch_size": self.batch_size,
            "samples_per_s": samples_per_s,
        }


@dataclass(frozen=True)
class Prediction:
    """A run's predicted wall-clock seconds, and the measured rates they come from."""

    train_samples: int
    train_rate: float  # samples/s the harness measured (interpolated at the run's batch)
    eval_samples: int  # test samples scored over every evaluation, the last one included
    eval_rate: float  # images/s of inference
    rates_of: str  # the model whose harness rows gave the rates (the run's, or the same layers')
    # Where the training rate comes from another batch or memory format than the run's:
    # ``batch 32, contiguous, where the run trains at batch 128, channels_last``; else "".
    rate_elsewhere: str = ""
    # With rate_elsewhere: the row whose measurement would give the run's own rate.
    own_row: RateRow | None = None
    measured_first: bool = False  # the training rate was measured for this prediction

    @property
    def seconds(self) -> float:
        return SETUP_S + self.train_samples / self.train_rate + self.eval_samples / self.eval_rate

    def text(self) -> str:
        """``about 7.1 min (6,400 samples at 23 samples/s, 11,000 test images at 69/s)``."""
        notes = [
            f"{self.train_samples:,} samples at {self.train_rate:,.0f} samples/s",
            f"{self.eval_samples:,} test images at {self.eval_rate:,.0f}/s",
        ]
        if self.rates_of:
            notes.append(f"rates of {self.rates_of}, the same layers")
        said = ", ".join(notes)
        if self.rate_elsewhere:
            said += f"; the training rate from {self.rate_elsewhere}"
        if self.measured_first:
            said += "; the training rate measured at the run's batch and format before it"
        return f"about {seconds_text(self.seconds)} ({said})"


def seconds_text(seconds: float) -> str:
    """``26 s`` under a minute and a half, ``7.3 min`` from there; never negative."""
    seconds = max(seconds, 0.0)
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def interpolated_rate(points: Mapping[int, float], batch: int) -> float | None:
    """The samples/s at ``batch`` from rates measured at other batch sizes (``points``: batch
    -> samples/s): linear in log(batch) between the two measured around it, the nearest one's
    outside them; None without any point."""
    if not points:
        return None
    batches = sorted(points)
    if batch <= batches[0]:
        return points[batches[0]]
    if batch >= batches[-1]:
        return points[batches[-1]]
    upper = next(b for b in batches if b >= batch)
    lower = max(b for b in batches if b <= batch)
    if upper == lower:
        return points[lower]
    weight = (math.log(batch) - math.log(lower)) / (math.log(upper) - math.log(lower))
    return points[lower] + weight * (points[upper] - points[lower])


def _rates(
    rows: Iterable[Mapping[str, Any]], model: str, device: str, dtype: str, mode: str
) -> dict[str, dict[int, float]]:
    """memory format -> batch -> samples/s of the harness's rows of ``model`` in ``mode`` (not
    compiled, not a failed row, not a --max-batch search)."""
    formats: dict[str, dict[int, float]] = {}
    for row in rows:
        rate = row.get("samples_per_s")
        if (
            row.get("model") != model
            or row.get("mode") != mode
            or row.get("device") != device
            or row.get("dtype") != dtype
            or row.get("compile", "none") != "none"
            or row.get("error") is not None
            or row.get("max_batch") is not None
            or not isinstance(rate, int | float)
            or rate <= 0
        ):
            continue
        batch = int(row["batch_size"])
        points = formats.setdefault(str(row.get("memory_format", "contiguous")), {})
        points[batch] = max(points.get(batch, 0.0), float(rate))
    return formats


def _points(
    formats: Mapping[str, Mapping[int, float]], memory_format: str
) -> tuple[str, dict[int, float]]:
    """The run's memory format and its points where measured, else the format whose rates
    are the fastest at its largest batch, and its points (("", {}) without any)."""
    if memory_format in formats:
        return memory_format, dict(formats[memory_format])
    if not formats:
        return "", {}
    fastest = max(formats, key=lambda f: formats[f][max(formats[f])])
    return fastest, dict(formats[fastest])


def _elsewhere(
    points: Mapping[int, float], measured_format: str, batch: int, run_format: str
) -> str:
    """``batch 32, contiguous, where the run trains at batch 128, channels_last`` where the
    rate at ``batch`` is not read at or between measured batches of the run's format (the
    batch left out where it is); else ""."""
    between = min(points) <= batch <= max(points)
    if between and measured_format == run_format:
        return ""
    nearest = min(points) if batch < min(points) else max(points)  # as interpolated_rate reads
    measured = ", ".join([f"batch {nearest}"] * (not between) + [measured_format])
    return f"{measured}, where the run trains at batch {batch}, {run_format}"


def predict_run(settings: TrainSettings, rows: Iterable[Mapping[str, Any]]) -> Prediction | None:
    """The wall-clock seconds a run of ``settings`` will take here, from the harness's rows
    (``results.jsonl``'s) of its model; None where they lack its training or inference rate,
    or its data set's size is not known (an image folder)."""
    sizes = SPLIT_SIZES.get(settings.data)
    if sizes is None:
        return None
    rows = list(rows)
    measured = _measured_as(settings.model, rows)
    if measured is None:
        return None
    recipe = recipe_for(settings.model, settings.recipe)
    dtype = resolve_dtype(settings.dtype or recipe.dtype, settings.device)
    batch = settings.batch_size or recipe.batch_size
    run_format = recipe.memory_format
    train_format, train_points = _points(
        _rates(rows, measured, settings.device, dtype, "train"), run_format
    )
    train_rate = interpolated_rate(train_points, batch)
    eval_dtype = settings.evaluation_dtype(dtype)
    _, eval_points = _points(
        _rates(rows, measured, settings.device, eval_dtype, "infer"), run_format
    )
    eval_rate = interpolated_rate(eval_points, batch)
    if train_rate is None or eval_rate is None:
        return None
    steps_per_epoch = sizes["train"] // batch
    if settings.samples is None and settings.epochs is None and settings.budget_s is not None:
        return None  # a budget is its own length: nothing to predict
    steps = length_steps(settings, recipe, steps_per_epoch)
    assert steps is not None
    scheduled = evaluations(steps, eval_interval(settings, steps, steps_per_epoch))
    whole = sizes["test"]
    curve = min(settings.eval_limit or whole, whole)
    # The curve's evaluations score eval_limit images, the last one all of them (a subset at
    # the target, which would add a whole evaluation, is not foreseen).
    scored = (scheduled - 1) * curve + whole
    elsewhere = _elsewhere(train_points, train_format, batch, run_format)
    return Prediction(
        train_samples=steps * batch,
        train_rate=train_rate,
        eval_samples=scored,
        eval_rate=eval_rate,
        rates_of="" if measured == settings.model else measured,
        rate_elsewhere=elsewhere,
        own_row=RateRow(measured, settings.device, dtype, run_format, batch) if elsewhere else None,
    )


def _measured_as(model: str, rows: list[Mapping[str, Any]]) -> str | None:
    """``model`` where the rows measured it, else a measured model with the same layers (its
    family, input shape and parameter count), else None."""
    measured: dict[Any, Any] = {}
    for row in rows:  # a model's parameter count from any training row that has one
        if row.get("mode") == "train" and measured.get(row.get("model")) is None:
            measured[row.get("model")] = row.get("params")
    if model in measured:
        return model
    card = zoo.get_card(model)
    with torch.device("meta"):  # shapes only: nothing allocated, nothing initialised
        params = sum(p.numel() for p in zoo.get_model(model).parameters())
    for other, other_params in measured.items():
        if not isinstance(other, str) or other_params != params:
            continue
        twin = zoo.get_card(other) if other in zoo.list_models() else None
        if twin and (twin.family, twin.input_shape) == (card.family, card.input_shape):
            return other
    return None
