"""Noise said out loud (IQR over median, the noisy flag) and a training step split into its
phases, on fake clocks; the analytical training-memory estimate against a hand count."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAKE_MACHINE, TinyNet, register_test_models

import zoo
from bench.cli.sweep import SweepListener, closing_line, row_line
from bench.events import RowDone
from bench.measure.counting import activation_elements_per_sample, count_model
from bench.measure.memory import ModelBytes, estimate_train_bytes
from bench.measure.timing import (
    MIN_STEPS_FOR_SPREAD,
    NOISY_IQR_REL,
    Mark,
    TimerSettings,
    summarise,
    time_phased_steps,
    time_phased_steps_cuda,
    time_steps,
)
from bench.report import build_report
from bench.schema import read_jsonl
from bench.sweep.loop import run_plan
from bench.sweep.plan import RunPlan

TEN = TimerSettings(warmup=0, min_steps=10, min_time_s=0.0)


class FakeClock:
    """A clock that stands still until ``advance`` moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_iqr_over_median_matches_numpy() -> None:
    times = [0.010, 0.012, 0.011, 0.050, 0.009, 0.010, 0.013, 0.014, 0.008, 0.011, 0.030]
    q25, q50, q75 = np.percentile(times, [25, 50, 75])
    assert summarise(times).iqr_rel == pytest.approx((q75 - q25) / q50)


def test_a_steady_run_is_not_noisy_and_a_jumpy_one_is() -> None:
    steady, jumpy = FakeClock(), FakeClock()
    durations = iter([0.010, 0.0101, 0.0099, 0.010, 0.0102, 0.0098, 0.010, 0.010, 0.0101, 0.0099])
    quiet = time_steps(lambda: steady.advance(next(durations)), TEN, clock=steady)
    assert quiet.iqr_rel is not None and quiet.iqr_rel < NOISY_IQR_REL
    assert quiet.noisy is False
    # Half the steps 10 ms, half 13 ms: quartiles 10 and 13 ms, median 11.5 ms: IQR 26%.
    pattern = iter([0.010, 0.013] * 5)
    loud = time_steps(lambda: jumpy.advance(next(pattern)), TEN, clock=jumpy)
    assert loud.iqr_rel == pytest.approx(0.003 / 0.0115)
    assert loud.noisy is True


def test_below_the_spread_threshold_there_is_no_noise_verdict() -> None:
    timing = summarise([0.010, 0.020, 0.040][: MIN_STEPS_FOR_SPREAD - 7])
    assert timing.iqr_rel is None and timing.noisy is None


def test_phases_are_timed_over_the_same_steps_as_the_whole() -> None:
    clock = FakeClock()
    # Per step: zero_grad 0.1 ms, forward 2-4 ms, backward 5-9 ms, optimizer 1 ms.
    forwards = iter([0.002, 0.004, 0.003] * 4)
    backwards = iter([0.009, 0.005, 0.007] * 4)

    def step(mark: Mark) -> None:
        clock.advance(0.0001)
        mark("optimizer")
        clock.advance(next(forwards))
        mark("forward")
        clock.advance(next(backwards))
        mark("backward")
        clock.advance(0.001)
        mark("optimizer")

    timing = time_phased_steps(step, TEN, clock=clock)
    assert timing.steps == 10
    assert timing.phases_ms is not None
    forward_times = [0.002, 0.004, 0.003] * 3 + [0.002]
    assert timing.phases_ms["forward"] == pytest.approx(np.median(forward_times) * 1e3)
    assert timing.phases_ms["optimizer"] == pytest.approx(1.1)
    # The medians of the phases need not add up to the median step exactly; within 10%.
    assert sum(timing.phases_ms.values()) == pytest.approx(timing.median_ms, rel=0.10)


def test_a_phase_a_step_skips_counts_zero_for_it() -> None:
    clock = FakeClock()
    calls = iter(range(100))

    def step(mark: Mark) -> None:
        clock.advance(0.001)
        mark("forward")
        if next(calls) % 2:
            clock.advance(0.001)
            mark("extra")

    timing = time_phased_steps(step, TEN, clock=clock)
    assert timing.phases_ms == pytest.approx({"forward": 1.0, "extra": 0.5})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_phases_are_timed_with_events() -> None:
    a = torch.randn(512, 512, device="cuda")

    def step(mark: Mark) -> None:
        a @ a
        mark("one")
        a @ a @ a
        mark("two")

    timing = time_phased_steps_cuda(step, TimerSettings(warmup=1, min_steps=10, min_time_s=0.0))
    assert timing.phases_ms is not None and set(timing.phases_ms) == {"one", "two"}
    assert all(v > 0 for v in timing.phases_ms.values())
    assert sum(timing.phases_ms.values()) <= timing.median_ms * 1.10


def test_the_training_estimate_adds_what_torchinfo_adds() -> None:
    sizes = ModelBytes(params=1000, trainable=800, buffers=24)
    estimate = estimate_train_bytes(
        model_bytes=sizes,
        momentum_buffers=1,
        activation_bytes_per_sample=400,
        activation_scale=0.5,
        input_bytes_per_sample=100,
        batch_size=3,
    )
    assert estimate == 1024 + 2 * 800 + 3 * (100 + 200)
    # 64 of the 400 bytes are max-pool's int64 indices: bf16 halves the values only.
    with_indices = estimate_train_bytes(
        model_bytes=sizes, momentum_buffers=1, activation_bytes_per_sample=400,
        activation_scale=0.5, input_bytes_per_sample=100, batch_size=3, index_bytes_per_sample=64,
    )  # fmt: skip
    assert with_indices == 1024 + 2 * 800 + 3 * (100 + (400 - 64) // 2 + 64)


def test_a_tiny_models_rows_carry_noise_phases_and_estimate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_test_models(monkeypatch)
    plan = tiny_plan()
    run_plan(plan, tmp_path, machine=FAKE_MACHINE)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert "load_average_1m_end" in meta and "load_average_1m_end" in meta["sessions"][-1]
    infer, train = read_jsonl(tmp_path / "results.jsonl")
    for row in (infer, train):
        assert row["error"] is None
        assert row["step_iqr_rel"] is None and row["noisy"] is None  # 2 steps: no spread
    assert infer["forward_ms"] is None and infer["mem_estimate_mib"] is None
    assert infer["activation_elements"] == train["activation_elements"] == 519
    phases = [train["forward_ms"], train["backward_ms"], train["optimizer_ms"]]
    assert all(isinstance(p, float) and p > 0 for p in phases)  # structure, not timing
    # By hand: TinyNet has 112 + 15 parameters (508 bytes): weights, gradients, momentum.
    # One sample: input 3x8x8 fp32 (768 B); conv and ReLU outputs 4x8x8 (1024 B each), pool 4
    # values, fc 3 values (28 B); the flatten is a view. Batch 2.
    assert train["mem_estimate_mib"] * 2**20 == pytest.approx(3 * 508 + 2 * (768 + 2076))
    assert train["mem_estimate_ratio"] == pytest.approx(
        train["peak_mem_mib"] / train["mem_estimate_mib"]
    )


def test_the_cli_marks_noisy_rows_and_counts_them(tmp_path: Path) -> None:
    row = dict(
        model="m", device="cpu", dtype="fp32", memory_format="contiguous", mode="train",
        batch_size=2, max_batch=None, error=None, step_ms_median=10.0, step_ms_p10=9.0,
        step_ms_p90=14.0, step_iqr_rel=0.25, noisy=True, steps_timed=10, samples_per_s=200.0,
        achieved_gflops=None, peak_mem_mib=5.0, forward_ms=3.0, backward_ms=6.0,
        optimizer_ms=1.0, mem_estimate_mib=4.0,
    )  # fmt: skip
    line = row_line(row, skipped=False)
    assert "IQR 25% NOISY" in line and "[fwd 3.00 + bwd 6.00 + opt 1.00 ms]" in line
    assert "NOISY" not in row_line({**row, "noisy": False, "step_iqr_rel": 0.05}, False)
    listener = SweepListener()
    listener(RowDone(row, skipped=False))
    listener(RowDone({**row, "noisy": False}, skipped=False))
    listener(RowDone(row, skipped=True))
    sessions = [{"load_average_1m": 0.5}, {"load_average_1m": 1.5, "load_average_1m_end": 2.25}]
    (tmp_path / "meta.json").write_text(json.dumps({"sessions": sessions}))
    closing = closing_line(tmp_path, 12.0, listener)
    assert "1 of 2 rows noisy" in closing and "load average 1.5/2.2 (start/end)" in closing


def test_the_report_marks_noisy_rows_and_shows_the_estimate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    register_test_models(monkeypatch)
    plan = tiny_plan()
    run_plan(plan, tmp_path / "run", machine=FAKE_MACHINE)
    results = tmp_path / "run" / "results.jsonl"
    infer, train = read_jsonl(results)
    infer.update(step_iqr_rel=0.3, noisy=True)  # as a noisy run of 10+ steps writes it
    compiled = {
        **infer, "compile": "default", "compile_s": 41.25, "compile_cache": "cold", "noisy": False
    }  # fmt: skip
    results.write_text("".join(json.dumps(r) + "\n" for r in (infer, train, compiled)))
    text = (build_report([tmp_path / "run"], tmp_path / "out") / "report.md").read_text()
    assert text.count(" noisy |") == 1
    assert text.count("compiled (default, 41.2 s to compile (cold cache))") == 1
    ratio = train["mem_estimate_ratio"]
    assert f"(×{ratio:.1f})" in text and "Analytic train MiB" in text


def test_activation_elements_are_what_the_forward_writes_per_sample() -> None:
    # conv 4x8x8 = 256, ReLU 256, pool 4, fc 3; the flatten is a view.
    assert activation_elements_per_sample(TinyNet(), (3, 8, 8)) == 519
    in_place = TinyNet()
    in_place.relu = torch.nn.ReLU(inplace=True)
    assert activation_elements_per_sample(in_place, (3, 8, 8)) == 519 - 256
    # Second method: LeNet-5 creates only fp32 tensors, so its created bytes / 4.
    card = zoo.get_card("lenet5")
    counts = count_model(zoo.get_model("lenet5"), card.input_shape)
    elements = activation_elements_per_sample(zoo.get_model("lenet5"), card.input_shape)
    assert elements == counts.activation_bytes // 4


def test_max_pool_indices_are_not_activations() -> None:
    # The tutorial LeNet-5 (in-place ReLUs) on 1x32x32, by shape arithmetic: conv 6x28x28,
    # max-pool 6x14x14, conv 16x10x10, max-pool 16x5x5, fc 120, 84, 10. Each max-pool also
    # makes as many int64 indices as it keeps values: bytes, not activations.
    values = 6 * 28 * 28 + 6 * 14 * 14 + 16 * 10 * 10 + 16 * 5 * 5 + 120 + 84 + 10
    assert values == 8_094
    card = zoo.get_card("lenet5_modern")
    model = zoo.get_model("lenet5_modern")
    assert activation_elements_per_sample(model, card.input_shape) == values
    counts = count_model(model, card.input_shape)
    assert counts.index_bytes == 8 * (6 * 14 * 14 + 16 * 5 * 5)
    assert counts.activation_bytes == 4 * values + counts.index_bytes


def test_estimate_beside_measurement_for_three_models(tmp_path: Path) -> None:
    models = ("lenet5", "lenet5_modern", "lab_cnn")
    timer = TimerSettings(warmup=1, min_steps=1, min_time_s=0.0)
    plan = RunPlan(
        models=models, batch_sizes=(2,), threads=1, timer=timer, large_timer=timer,
        modes=("train",),
    )  # fmt: skip
    run_plan(plan, tmp_path, machine=FAKE_MACHINE)
    rows = {r["model"]: r for r in read_jsonl(tmp_path / "results.jsonl")}
    for name in models:
        row, model = rows[name], zoo.get_model(name)
        card = zoo.get_card(name)
        # Second method: the counts of bench.measure.counting and the model's own tensors.
        counts = count_model(model, card.input_shape)
        # (LeNet-5's C3 connection table is int64 buffers: 8 bytes an element)
        weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
        trainable = sum(p.numel() * 4 for p in model.parameters() if p.requires_grad)
        inputs = 4 * int(np.prod(card.input_shape))
        expected = weights + 2 * trainable + 2 * (inputs + counts.activation_bytes)
        assert row["error"] is None, row["error"]
        assert row["mem_estimate_mib"] * 2**20 == pytest.approx(expected, abs=1)
        assert row["mem_estimate_ratio"] == pytest.approx(
            row["peak_mem_mib"] / row["mem_estimate_mib"]
        )


def tiny_plan() -> RunPlan:
    """tiny_net at batch 2 on one thread, timed for two steps."""
    timer = TimerSettings(warmup=1, min_steps=2, min_time_s=0.0)
    return RunPlan(
        models=("tiny_net",), batch_sizes=(2,), threads=1, timer=timer, large_timer=timer
    )
