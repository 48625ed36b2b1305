"""Time to 99% MNIST test accuracy: the lab's own loop against ours, measured in one run.

Slow (several minutes on 2 cores) and needs the real MNIST (provisioned from PyPI if missing):
run with `nox -s tests -- -m slow`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from bench.training.lab_loop import lab_loop
from bench.training.loop import TrainSettings, train
from bench.training.recipes import recipe_for

pytestmark = [pytest.mark.slow, pytest.mark.benchmark(group="time-to-99")]
TARGET = 0.99


@pytest.fixture(scope="module")
def mnist_dir():
    import data

    data.provision_mnist()
    return data.mnist_dir()


def ours(model: str) -> float | None:
    import data
    import zoo

    recipe = recipe_for(model)
    splits = data.load(
        "mnist", input_shape=zoo.get_card(model).input_shape, normalisation=recipe.normalisation
    )
    settings = TrainSettings(model, target_acc=TARGET, stop_at_target=True, evals_per_epoch=2)
    return train(settings, splits, recipe).time_to_target_s


@functools.cache
def seconds_to_99(loop: str, mnist_dir: Path) -> float | None:
    """Seconds to 99% of ``"lab"`` (the lab's loop) or of a zoo model in ours; each is measured
    once a session, by whichever test asks first."""
    if loop == "lab":
        return lab_loop(mnist_dir, target_acc=TARGET).time_to_target_s
    return ours(loop)


def test_the_labs_loop(benchmark, mnist_dir):
    seconds = benchmark.pedantic(lambda: seconds_to_99("lab", mnist_dir), rounds=1)
    benchmark.extra_info["time_to_99_s"] = seconds


@pytest.mark.parametrize("model", ["lab_cnn", "lenet5_mnist"])
def test_ours(benchmark, mnist_dir, model):
    seconds = benchmark.pedantic(lambda: seconds_to_99(model, mnist_dir), rounds=1)
    benchmark.extra_info["time_to_99_s"] = seconds
    assert seconds is not None, f"{model} did not reach {TARGET:.0%}"


def test_speedups(mnist_dir):
    lab, cnn, lenet = (
        seconds_to_99(loop, mnist_dir) for loop in ("lab", "lab_cnn", "lenet5_mnist")
    )
    assert lab is not None, "the lab's loop did not reach 99% in its 3 epochs"
    assert cnn is not None and lenet is not None, "a zoo model did not reach 99%"
    assert lab / cnn >= 3, (lab, cnn)  # same network, our loop and schedule
    assert lab / lenet >= 5, (lab, lenet)  # the fastest zoo model
