"""Per-layer time of a training step (``bench layers MODEL --times``): each module's time goes
to the paper layer that holds it (LeNet-5's C3 groups and their join as one C3), and the layers'
sum is held against the step's own clock. No timing thresholds: the attribution is checked on
a fake clock that only the test moves by whole seconds."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from conftest import run_cli
from torch import nn

import zoo
from bench.measure.counting import count_model
from bench.measure.layer_times import time_layers

TICK = 1e-6  # what each clock reading adds: a stretch between readings is never 0


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += TICK
        return self.now


def test_lenet5_time_goes_to_the_paper_layer_that_holds_the_module() -> None:
    card = zoo.get_card("lenet5")
    counts = count_model(zoo.get_model("lenet5"), card.input_shape, card.paper_names)
    model = zoo.get_model("lenet5")
    clock = FakeClock()

    def forward_second(*_: Any) -> None:  # c3.groups.0's forward "takes" 1 s
        clock.now += 1.0

    def backward_seconds(*_: Any) -> None:  # c3.groups.1's backward "takes" 2 s
        clock.now += 2.0

    # Registered before time_layers's hooks, so they run before its readings at the exit.
    model.c3.groups[0].register_forward_hook(forward_second)
    model.c3.groups[1].register_full_backward_hook(backward_seconds)
    times = time_layers(
        model, counts.layers, input_shape=card.input_shape, num_classes=card.num_classes,
        batch_size=2, loss=zoo.criterion("lenet5"), warmup=1, steps=2, clock=clock,
    )  # fmt: skip
    names = [layer.name for layer in times.layers]
    assert names == ["C1", "S2", "C3", "S4", "C5", "F6", "OUTPUT", "(top level)"]
    by_name = {layer.name: layer for layer in times.layers}
    # C3 holds its groups' seconds (one row: c3.groups.0..2 and c3 summed), no other row any.
    assert by_name["C3"].forward_s == pytest.approx(1.0, abs=1e-3)
    assert by_name["C3"].backward_s == pytest.approx(2.0, abs=1e-3)
    others = [layer for layer in times.layers if layer.name != "C3"]
    assert all(layer.forward_s < 1e-3 and layer.backward_s < 1e-3 for layer in others)
    assert all(layer.forward_s > 0 for layer in times.layers)  # every layer ran, and was read
    c3_parts = [layer for layer in counts.layers if layer.paper_layer == "C3"]
    assert len(c3_parts) == 4 and by_name["C3"].macs == sum(p.macs for p in c3_parts)
    # The step's own clock (no hooks) saw the forward second and the backward two.
    assert times.step_s == pytest.approx(3.0, abs=1e-3)
    assert times.share_of_step == pytest.approx(times.layers_s / times.step_s)
    assert times.share_of_step == pytest.approx(1.0, abs=1e-3)


def test_in_place_relus_are_timed_without_breaking_the_backward_hooks() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(8, 3))
    counts = count_model(model, (1, 4, 4))
    times = time_layers(
        model, counts.layers, input_shape=(1, 4, 4), num_classes=3, batch_size=2, warmup=0,
        steps=1,
    )  # fmt: skip
    assert [layer.name for layer in times.layers] == ["0", "1", "2", "3", "(top level)"]
    with pytest.raises(ValueError, match="at least 1"):
        time_layers(model, counts.layers, input_shape=(1, 4, 4), num_classes=3, batch_size=2,
                    steps=0)  # fmt: skip


def test_bench_layers_times_prints_the_table_and_the_sum_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    threads = torch.get_num_threads()
    try:
        code, out, _ = run_cli(
            ["layers", "lenet5", "--times", "--steps", "1", "--batch-size", "2", "--threads", "1"],
            capsys,
        )
    finally:
        torch.set_num_threads(threads)  # --threads sets the process's
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["paper", "layer", "fwd"] and "GFLOP/s" in lines[0]
    assert sum(line.startswith("C3 ") for line in lines) == 1
    (check,) = [line for line in lines if line.startswith("sum check")]
    total_ms = float(check.split("add up to ")[1].split(" ms")[0])
    assert total_ms > 0 and "% of the step's own median" in check
