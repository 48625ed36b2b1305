"""Per-layer time of a training step (``bench layers MODEL --times``): each module's time goes
to the paper layer that holds it (LeNet-5's C3 groups and their join as one C3), and the layers'
sum is held against the step's own clock. No timing thresholds: the attribution is checked on
a fake clock that only the test moves by whole seconds."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from conftest import FAKE_MACHINE, exit_code, register_test_models, run_cli
from torch import nn

import zoo
from bench.cli import SUBCOMMANDS, build_parser, build_plan
from bench.measure.counting import count_model
from bench.measure.layer_times import time_layers
from bench.measure.timing import TimerSettings
from bench.report import build_report
from bench.report.roofline import Roofs, bound, bound_sentence
from bench.schema import LAYER_TIME_COLUMNS, read_jsonl
from bench.sweep.loop import run_plan
from bench.sweep.plan import RunPlan

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
    threads = torch.get_num_threads()
    try:
        code, out, _ = run_cli(
            ["layers", "lenet5", "--times", "--steps", "1", "--batch-size", "2", "--threads", "1",
             "--mode", "infer", "--memory-format", "channels_last"],
            capsys,
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert code == 0 and "contiguous" not in out and "1 inference steps" in out
    # Inference has no backward: every layer's bwd ms column (fifth from the right) is 0.
    rows = [line.split() for line in out.splitlines()[1:9]]  # LeNet-5's eight paper layers
    assert [cells[0] for cells in rows] == ["C1", "S2", "C3", "S4", "C5", "F6", "OUTPUT", "(top"]
    assert all(float(cells[-5]) == 0 for cells in rows)


# --- the sweep's --layer-times, layer_times.jsonl and the report's "what bounds it" ----------

# TinyNet (conftest) by hand, per sample: conv 3→4, 3×3, pad 1, on 8×8: 4·8·8 outputs × 3·9
# MACs; it reads 3·8·8 and writes 4·8·8 elements, with 4·3·9 + 4 parameters. fc 4→3: 12 MACs.
CONV_MACS = 4 * 8 * 8 * 3 * 9
CONV_ELEMENTS, CONV_PARAMS = 3 * 8 * 8 + 4 * 8 * 8, 4 * 3 * 9 + 4


def _sweep_with_layer_times(out: Path, monkeypatch: pytest.MonkeyPatch, machine: Any) -> None:
    register_test_models(monkeypatch)
    plan = RunPlan(
        models=("tiny_net",), batch_sizes=(2, 4), layer_times=("infer", "train"), threads=1,
        timer=TimerSettings(warmup=1, min_steps=2, min_time_s=0.0),
    )  # fmt: skip
    run_plan(plan, out, machine=machine)


def test_layer_times_jsonl_holds_each_mode_at_its_largest_batch_with_hand_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _sweep_with_layer_times(tmp_path, monkeypatch, FAKE_MACHINE)
    lines = read_jsonl(tmp_path / "layer_times.jsonl")
    assert all(list(line) == list(LAYER_TIME_COLUMNS) for line in lines)
    assert {(line["mode"], line["batch_size"]) for line in lines} == {("infer", 4), ("train", 4)}
    layers = [line["layer"] for line in read_jsonl(tmp_path / "layers.jsonl")]
    for mode in ("infer", "train"):
        mine = [line for line in lines if line["mode"] == mode]
        assert [line["layer"] for line in mine if line["layer"] in layers] == layers
        conv = next(line for line in mine if line["layer"] == "conv")
        assert conv["macs"] == CONV_MACS and conv["flops"] == 2 * CONV_MACS * 4
        assert conv["bytes"] == (4 * CONV_ELEMENTS + CONV_PARAMS) * 4  # fp32
        assert conv["intensity"] == pytest.approx(conv["flops"] / conv["bytes"])
        assert conv["forward_gflops"] == pytest.approx(conv["flops"] / conv["forward_ms"] / 1e6)
        fc = next(line for line in mine if line["layer"] == "fc")
        assert fc["flops"] == 2 * 12 * 4
        assert conv["forward_ms"] > 0 and conv["session"] == 1
        total = sum(line["forward_ms"] + line["backward_ms"] for line in mine)
        assert mine[0]["layers_ms"] == pytest.approx(total)
        backward = [line["backward_ms"] for line in mine]
        assert all(b == 0 for b in backward) if mode == "infer" else conv["backward_ms"] > 0
    # --resume profiles nothing twice.
    plan = RunPlan(
        models=("tiny_net",), batch_sizes=(2, 4), layer_times=("infer", "train"), threads=1
    )
    run_plan(plan, tmp_path, machine=FAKE_MACHINE, resume=True)
    assert len(read_jsonl(tmp_path / "layer_times.jsonl")) == len(lines)


def test_layer_times_option_names_modes_or_none_and_all_profiles_training(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()

    def plan_of(*extra: str) -> Any:
        return build_plan(parser.parse_args(["run", "--models", "lenet5", *extra]))

    assert plan_of().layer_times == ()
    assert plan_of("--layer-times").layer_times == ("infer", "train")
    assert plan_of("--layer-times", "train").layer_times == ("train",)
    assert plan_of("--layer-times", "none").layer_times == ()
    assert plan_of("--modes", "infer", "--layer-times").layer_times == ("infer",)
    code, _, err = run_cli(["run", "--models", "lenet5", "--layer-times", "backward"], capsys)
    assert code == 2 and "--layer-times mode 'backward'" in err
    seen: list[Any] = []
    stub = dataclasses.replace(SUBCOMMANDS["run"], run=lambda args: seen.append(args) or 1)
    monkeypatch.setitem(SUBCOMMANDS, "run", stub)
    exit_code(["all", "--models", "lenet5"])
    exit_code(["all", "--models", "lenet5", "--modes", "infer"])
    assert [args.layer_times for args in seen] == [["train"], ["none"]]


ROOFS = Roofs("fp32_matmul", peak_gflops=100.0, bandwidth_gbs=10.0)  # ridge 10 FLOP/byte


def _step(*modules: tuple[str, str, float, float, int, int]) -> pd.DataFrame:
    """layer_times lines of one step: (paper layer, type, fwd ms, bwd ms, flops, bytes) each;
    the step took 10 ms with hooks and 9.5 ms without."""
    lines = [
        dict(
            run="r",
            session=1,
            model="m",
            device="cpu",
            dtype="fp32",
            memory_format="contiguous",
            threads=1,
            batch_size=8,
            mode="train",
            layer=f"l{i}",
            paper_layer=name,
            type=kind,
            forward_ms=fwd,
            backward_ms=bwd,
            flops=flops,
            bytes=moved,
            hooked_step_ms=10.0,
            step_ms=9.5,
            layers_ms=sum(m[2] + m[3] for m in modules),
        )  # fmt: skip
        for i, (name, kind, fwd, bwd, flops, moved) in enumerate(modules)
    ]
    return pd.DataFrame(lines)


def test_what_bounds_a_step_by_hand() -> None:
    step = _step(
        # 1e8 FLOPs over 1e6 bytes: intensity 100 >= 10, compute-bound; 2 ms forward.
        ("conv1", "Conv2d", 2.0, 4.0, 10**8, 10**6),
        # intensity 0.25 < 10: memory-bound; 4e6 bytes in 1 ms forward.
        ("conv1", "BatchNorm2d", 1.0, 1.0, 10**6, 4 * 10**6),
        # no FLOPs, bytes: memory-bound; 2e6 bytes in 1 ms forward.
        ("pool1", "MaxPool2d", 1.0, 0.5, 0, 2 * 10**6),
        # no bytes of its own: the step's rest.
        ("(top level)", "", 0.25, 0.0, 0, 0),
    )
    found = bound(step, ROOFS)
    assert found.compute_share == pytest.approx(6.0 / 10.0)
    assert found.memory_share == pytest.approx(3.5 / 10.0)
    assert found.rest_share == pytest.approx(0.5 / 10.0)
    assert found.compute_types == ("Conv2d",)
    assert found.memory_types == ("BatchNorm2d", "MaxPool2d")  # 2 ms against 1.5
    # 1e8 FLOPs in 2 ms: 50 GFLOP/s of 100; 6e6 bytes in 2 ms: 3 GB/s of 10.
    assert found.compute_of_peak == pytest.approx(0.5)
    assert found.memory_of_roof == pytest.approx(0.3)
    assert found.layers_of_step == pytest.approx(9.75 / 9.5)  # 6 + 3.5 + 0.25 ms
    assert found.slowest == ("conv1", "pool1", "(top level)")
    sentence = bound_sentence(step, ROOFS)
    assert sentence.startswith("m, fp32 contiguous training at batch 8 on cpu: 60% of the step")
    assert "at 50% of the fp32 peak" in sentence and "at 30% of the memory roof" in sentence
    assert "5% outside the layers" in sentence and "103% of the step timed" in sentence
    # The modules' medians can add up to more than the step's median: the rest is then none.
    longer = step.assign(hooked_step_ms=9.0)
    assert bound(longer, ROOFS).rest_share == 0.0
    assert "; 0% outside the layers" in bound_sentence(longer, ROOFS)
    # A peak not measured: no module is judged against the roofs.
    unmeasured = bound_sentence(step, Roofs(None, None, 10.0))
    assert "no fp32 compute peak measured" in unmeasured


def test_report_says_what_bounds_each_profiled_step_and_draws_the_roofline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = dataclasses.replace(
        FAKE_MACHINE, peak_bandwidth_gbs={"fp32_triad": 10.0, "bf16_triad": 10.0}
    )
    _sweep_with_layer_times(tmp_path / "run", monkeypatch, machine)
    out = build_report([tmp_path / "run"], tmp_path / "report")
    text = (out / "report.md").read_text(encoding="utf-8")
    section = text.split("## Where the time goes")[1].split("\n## ")[0]
    bullets = [line for line in section.splitlines() if line.startswith("- ")]
    assert len(bullets) == 2
    assert bullets[0].startswith("- tiny_net, fp32 contiguous inference at batch 4 on cpu:")
    assert "(ridge 0.1 FLOP/byte)" in bullets[1]  # FAKE_MACHINE: 1 GFLOP/s over 10 GB/s
    assert (out / "fig_roofline_cpu_fp32.png").is_file()
    assert "fig_roofline_cpu_fp32.png" in section
